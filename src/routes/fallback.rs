//! Answers for requests that match no route, so they get the same JSON error shape as the rest.

use actix_web::HttpResponse;

use crate::error::ApiError;

/// Any path the API does not serve.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

/// A known path with a method it does not serve.
pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
