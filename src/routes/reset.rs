//! `POST /reset`: back to the initial state, for every instance sharing the database.
//!
//! It deletes every transaction, so a deployment decides who may call it ([`ResetAccess`]):
//! anyone (the default, for benchmarks and the official test), only a caller presenting
//! `RESET_TOKEN` as `Authorization: Bearer <token>`, or nobody (`API_RESET=off`).

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::answer;
use crate::db::Database;
use crate::error::ApiError;

/// `POST /reset`'s answer: `{"status": "reset"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

/// `API_RESET`: whether `POST /reset` is served at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetSwitch {
    /// Served: to anyone, or, with `RESET_TOKEN` set, to a caller presenting it.
    On,
    /// Answered 403 whatever the caller presents.
    Off,
}

/// Who may call `POST /reset`; built by `config` from `API_RESET` and `RESET_TOKEN`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ResetAccess {
    /// Anyone who reaches the instance.
    #[default]
    Open,
    /// A caller sending `Authorization: Bearer <token>` with this token.
    Token(String),
    /// Nobody.
    Off,
}

impl std::fmt::Debug for ResetAccess {
    // The token never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetAccess::Open => f.write_str("Open"),
            ResetAccess::Token(_) => f.write_str("Token(***)"),
            ResetAccess::Off => f.write_str("Off"),
        }
    }
}

impl ResetAccess {
    /// Whether `request` may reset; the reason in words when not.
    pub fn check(&self, request: &HttpRequest) -> Result<(), ApiError> {
        match self {
            ResetAccess::Open => Ok(()),
            ResetAccess::Off => Err(ApiError::Forbidden(
                "POST /reset is turned off on this deployment",
            )),
            ResetAccess::Token(token) => {
                let presented = request
                    .headers()
                    .get(AUTHORIZATION)
                    .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
                match presented {
                    Some(presented) if same_secret(presented, token.as_bytes()) => Ok(()),
                    _ => Err(ApiError::Forbidden(
                        "POST /reset needs the deployment's token in Authorization: Bearer",
                    )),
                }
            }
        }
    }
}

/// Compares a presented secret with the expected one in time that depends only on their
/// lengths, not on where they first differ, so the answer's timing does not reveal the token a
/// byte at a time.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(presented.len() != expected.len());
    for (i, &byte) in expected.iter().enumerate() {
        difference |= byte ^ presented.get(i).copied().unwrap_or(!byte);
    }
    difference == 0
}

/// Deletes every transaction and sets every balance to 0.
#[utoipa::path(
    post,
    path = "/reset",
    responses(
        (status = 200, description = "Every balance 0, every transaction deleted", body = Status),
        (status = 403, description = "Not allowed here: API_RESET=off, or RESET_TOKEN is set and the request's Authorization: Bearer token is missing or wrong; nothing changed", body = crate::error::ErrorBody),
        (status = 503, description = "The database stayed busy, the instance is stopping, or it is shedding load; retry", body = crate::error::ErrorBody),
    ),
)]
pub async fn reset(
    request: HttpRequest,
    db: web::Data<Database>,
    access: web::Data<ResetAccess>,
) -> Result<HttpResponse, ApiError> {
    access.check(&request)?;
    db.reset().await?;
    Ok(answer::json(HttpResponse::Ok(), Status { status: "reset" }))
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn only_the_same_bytes_are_the_same_secret() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"), "a prefix");
        assert!(!same_secret(b"s3crett", b"s3cret"), "longer");
        assert!(!same_secret(b"", b"s3cret"));
        assert!(!same_secret(b"\xff", b"\x00"));
    }
}
