//! Who may wipe the ledger and where the measurements are served: `POST /reset` open, behind
//! `RESET_TOKEN`, or off; `/metrics` on the API's port or only on `API_METRICS_PORT`. The server
//! runs in this process on a real port; each case checks both the answer and that a refused
//! reset changed nothing.

use reqwest::StatusCode;
use rinha_api::routes::reset::ResetAccess;

use crate::helpers::{Api, TestApp, body, free_port, spawn_app_with};

const TOKEN: &str = "a-long-random-token-0123456789";

/// `POST /reset` with `authorization` as the header's value, if any.
async fn reset(app: &TestApp, authorization: Option<&str>) -> (StatusCode, String) {
    let mut request = app.http.post(format!("{}/reset", app.address));
    if let Some(value) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    (status, response.text().await.expect("a body"))
}

/// Client 1's balance after one credit of 100, which a reset would set back to 0.
async fn credit_100(app: &TestApp) {
    let answer = app.transaction(1, &body(100, "c", "before")).await;
    assert_eq!(answer.status, StatusCode::OK);
}

async fn balance(app: &TestApp) -> i64 {
    app.statement(1).await.total()
}

#[tokio::test]
async fn with_a_reset_token_only_its_bearer_may_reset() {
    let app = spawn_app_with(|config| config.reset = ResetAccess::Token(TOKEN.into())).await;
    credit_100(&app).await;
    let wrong = [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_owned()),
        Some("Bearer ".to_owned()),
    ];
    for authorization in &wrong {
        let (status, text) = reset(&app, authorization.as_deref()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{authorization:?}: {text}");
        let error: serde_json::Value = serde_json::from_str(&text).expect("a JSON error");
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|e| e.contains("Bearer")),
            "{text}"
        );
        assert!(!text.contains(TOKEN), "the token is never echoed: {text}");
        assert_eq!(
            balance(&app).await,
            100,
            "{authorization:?} changed nothing"
        );
    }
    let (status, text) = reset(&app, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(balance(&app).await, 0, "the token's bearer resets");
}

#[tokio::test]
async fn reset_turned_off_refuses_everyone() {
    let app = spawn_app_with(|config| config.reset = ResetAccess::Off).await;
    credit_100(&app).await;
    for authorization in [None, Some("Bearer anything")] {
        let (status, text) = reset(&app, authorization).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("turned off"), "{text}");
    }
    assert_eq!(balance(&app).await, 100);
}

#[tokio::test]
async fn by_default_anyone_may_reset() {
    let app = spawn_app_with(|_| {}).await;
    credit_100(&app).await;
    let (status, text) = reset(&app, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(balance(&app).await, 0);
}

#[tokio::test]
async fn with_a_metrics_port_metrics_are_served_there_only() {
    let metrics_port = free_port();
    let app = spawn_app_with(|config| config.metrics_port = Some(metrics_port)).await;
    credit_100(&app).await;
    let on_api = app.get("/metrics").await;
    on_api.assert_error(StatusCode::NOT_FOUND, "/metrics on the API's port");
    let response = app
        .http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("the metrics port answers");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("text");
    assert!(
        text.contains("rinha_http_requests_total"),
        "the instance's series: {}",
        &text[..text.len().min(500)]
    );
    let other = app
        .http
        .get(format!(
            "http://127.0.0.1:{metrics_port}/clientes/1/extrato"
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        other.status(),
        StatusCode::NOT_FOUND,
        "the metrics port serves nothing else"
    );
}
