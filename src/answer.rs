//! JSON answers: the one place an answer's body is encoded and its `Content-Type` set.

use actix_web::http::header::{CONTENT_TYPE, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;

/// `answer` with `value` as its JSON body. `HttpResponseBuilder::json` alone would make the
/// `Content-Type` from a `mime` at each answer, copying its text into a new header value; this one
/// is static.
pub fn json(mut answer: HttpResponseBuilder, value: impl Serialize) -> HttpResponse {
    const JSON: HeaderValue = HeaderValue::from_static("application/json");
    answer.insert_header((CONTENT_TYPE, JSON)).json(value)
}
