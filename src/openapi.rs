//! The API's OpenAPI 3.1 document, and the route table built from it.
//!
//! The one decision: routes are *registered from* their documentation, so the two cannot drift.
//! Each handler carries a `#[utoipa::path]` annotation (method, path, parameters, every answer);
//! [`api!`] takes the list of handlers once and produces both [`ApiDoc`] (the document served at
//! `GET /openapi.json`) and [`routes`], which mounts each handler at the path and method its
//! annotation states. A handler missing from the list is neither documented nor served; a path
//! or method changed in an annotation changes what is served. The integration test
//! `tests/api/openapi.rs` then asks the running server for every documented operation.
//!
//! Other methods on a documented path get a JSON `405` with an `Allow` header naming the
//! documented ones (RFC 9110; schemathesis checks it); unknown paths keep the JSON `404` of
//! `routes::fallback`.

use actix_web::guard::{Guard, GuardContext};
use actix_web::http::Method;
use actix_web::http::header::{ALLOW, HeaderValue};
use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, ResponseError, web};
use utoipa::OpenApi;
use utoipa::openapi::path::HttpMethod;

use crate::domain::{Applied, Kind, Statement, StatementBalance, StatementEntry};
use crate::error::{ApiError, ErrorBody};
use crate::routes::health::{self, Health};
use crate::routes::reset::{self, Status};
use crate::routes::transactions::{self, TransactionRequest};
use crate::routes::{metrics, statement};

/// Every route, by pattern: the metrics' route labels. [`routes`] names each resource by its
/// pattern, which is how the metrics middleware learns the matched pattern
/// (`HttpRequest::match_name`, no allocation); a unit test checks this list against the
/// documented paths.
pub const ROUTES: [&str; 6] = [
    "/clientes/{id}/transacoes",
    "/clientes/{id}/extrato",
    "/reset",
    "/health",
    "/metrics",
    "/openapi.json",
];

/// Declares the documented handlers once, as `module::handler / documentation type` (the
/// `__path_handler` type `#[utoipa::path]` generates: macro_rules cannot glue identifiers).
macro_rules! api {
    ($($module:ident :: $handler:ident / $doc:ident),+ $(,)?) => {
        /// The OpenAPI document of every route this service serves.
        #[derive(Debug, OpenApi)]
        #[openapi(
            info(
                title = "rinha-api",
                description = "Rinha de Backend 2024 Q1 ledger API. The contract in words: docs/CONTRACT.md.",
            ),
            paths($($module::$handler),+),
            components(schemas(
                TransactionRequest, Kind, Applied, Statement, StatementBalance, StatementEntry,
                ErrorBody, Status, Health,
            )),
        )]
        pub struct ApiDoc;

        /// Mounts every documented handler at the path and method its annotation states.
        pub fn routes(config: &mut web::ServiceConfig) {
            $(config.service(documented::<$module::$doc, _, _>($module::$handler));)+
        }
    };
}

api!(
    transactions::create / __path_create,
    statement::show / __path_show,
    reset::reset / __path_reset,
    health::check / __path_check,
    metrics::show / __path_show,
    self::serve / __path_serve,
);

/// The document as served, rendered once at start.
#[derive(Debug, Clone)]
pub struct Document(web::Bytes);

impl Document {
    /// Renders [`ApiDoc`] to JSON.
    pub fn render() -> Self {
        let mut document =
            serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        fix_link_field_names(&mut document);
        Self(web::Bytes::from(document.to_string()))
    }
}

/// utoipa 5 serializes a Link's `operationId` as `operation_id` (and `operationRef`,
/// `requestBody` likewise), which OpenAPI tools reject ("missing both operationRef and
/// operationId"); renamed here until the crate does it.
fn fix_link_field_names(document: &mut serde_json::Value) {
    let operations = document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|methods| methods.values_mut());
    for operation in operations {
        let links = operation["responses"]
            .as_object_mut()
            .into_iter()
            .flat_map(|responses| responses.values_mut())
            .filter_map(|response| response.get_mut("links")?.as_object_mut())
            .flat_map(|links| links.values_mut())
            .filter_map(serde_json::Value::as_object_mut);
        for link in links {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(from) {
                    link.insert(to.to_owned(), value);
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json")),
)]
pub async fn serve(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

/// A resource at `P`'s documented path answering `P`'s documented methods with `handler`, and
/// any other method with a JSON 405 naming the allowed ones.
fn documented<P, F, Args>(handler: F) -> Resource
where
    P: utoipa::Path,
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let methods: Vec<Method> = P::methods().into_iter().map(method).collect();
    let allow = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let allow = HeaderValue::from_str(&allow).expect("method names are valid header text");
    let path = P::path();
    // Named by its pattern: the metrics' route label (`HttpRequest::match_name`).
    let mut resource = web::resource(path.as_str()).name(&path);
    for method in methods {
        resource = resource.route(web::route().guard(OnlyMethod(method)).to(handler.clone()));
    }
    resource.default_service(web::to(move || {
        let mut answer = ApiError::MethodNotAllowed.error_response();
        answer.headers_mut().insert(ALLOW, allow.clone());
        async move { answer }
    }))
}

/// Lets a route take only requests of one method. Actix's own method guard also notes, in each
/// request's extensions, the methods it was checked against (for the 405 Actix would build
/// itself): three allocations per request, for a 405 that [`documented`] builds instead.
struct OnlyMethod(Method);

impl Guard for OnlyMethod {
    fn check(&self, ctx: &GuardContext<'_>) -> bool {
        ctx.head().method == self.0
    }
}

fn method(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_know_every_documented_route() {
        let mut documented: Vec<String> = ApiDoc::openapi().paths.paths.into_keys().collect();
        let mut measured: Vec<String> = ROUTES.map(str::to_owned).to_vec();
        documented.sort();
        measured.sort();
        assert_eq!(documented, measured);
    }
}
