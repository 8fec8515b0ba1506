//! `GET /openapi.json` against the routes the server actually answers: every documented
//! operation is served, every other method on a documented path is a JSON 405 naming the allowed
//! ones, and the document lists exactly the routes of the README's API table.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Api, spawn_app};

/// The README's API table: every route and its method.
const ROUTES: [(&str, &str); 6] = [
    ("/clientes/{id}/transacoes", "post"),
    ("/clientes/{id}/extrato", "get"),
    ("/reset", "post"),
    ("/health", "get"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
];

async fn document(app: &impl Api) -> Value {
    let answer = app.get("/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    answer.body
}

fn operations(document: &Value) -> Vec<(String, String)> {
    let mut operations: Vec<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, methods)| {
            let methods = methods.as_object().expect("methods").keys();
            methods.map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    operations.sort();
    operations
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_of_the_api() {
    let app = spawn_app().await;
    let document = document(&app).await;
    assert_eq!(document["openapi"], "3.1.0");
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(path, method)| ((*path).to_owned(), (*method).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(operations(&document), expected);
    let ids: Vec<&Value> = operations(&document)
        .iter()
        .map(|(path, method)| &document["paths"][path][method]["operationId"])
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let mut unique: Vec<&str> = ids.iter().filter_map(|id| id.as_str()).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ROUTES.len(), "operationIds must be unique");
}

#[tokio::test]
async fn every_documented_operation_is_served_and_answers_a_documented_status() {
    let app = spawn_app().await;
    let document = document(&app).await;
    for (path, method) in operations(&document) {
        let url = format!("{}{}", app.address, path.replace("{id}", "1"));
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let response = app
            .http
            .request(method.clone(), url)
            .json(&json!({"valor": 1, "tipo": "c", "descricao": "openapi"}))
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let documented = &document["paths"][&path][method.as_str().to_lowercase()]["responses"];
        assert!(
            documented.get(status.as_str()).is_some(),
            "{method} {path} answered {status}, which its document does not list"
        );
        assert!(status.is_success(), "{method} {path} answered {status}");
    }
}

#[tokio::test]
async fn other_methods_on_a_documented_path_get_a_json_405_naming_the_allowed_ones() {
    let app = spawn_app().await;
    let document = document(&app).await;
    for (path, documented) in ROUTES {
        let concrete = path.replace("{id}", "1");
        let allowed = documented.to_uppercase();
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            if method.as_str() == allowed {
                continue;
            }
            let response = app
                .http
                .request(method.clone(), format!("{}{concrete}", app.address))
                .send()
                .await
                .expect("request sent");
            let allow = response.headers().get("allow").cloned();
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(
                allow.as_ref().and_then(|v| v.to_str().ok()),
                Some(allowed.as_str())
            );
            let body: Value = response.json().await.expect("a JSON body");
            assert!(body["error"].is_string(), "{method} {path}: {body}");
        }
    }
    assert!(document["paths"].get("/nope").is_none());
    let unknown = app.get("/nope").await;
    unknown.assert_error(StatusCode::NOT_FOUND, "an unknown path");
}
