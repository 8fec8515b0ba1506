//! The answer for requests that match no route, so they get the same JSON error shape as the rest.
//! (A known path with another method is answered by `openapi::documented`'s 405.)

use actix_web::HttpResponse;

use crate::error::ApiError;

/// Any path the API does not serve.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
