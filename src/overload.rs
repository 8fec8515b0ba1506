//! Load shedding: at most `MAX_IN_FLIGHT` requests in flight per instance, at most `MAX_QUEUED`
//! waiting for a slot, and a JSON `503` with `Retry-After` for the rest. Off by default.
//!
//! The one decision: shedding is off unless asked for. The challenge scores a shed request as a
//! failure, while a queued one still passes if it is answered within 250 ms; the challenge's load
//! is far below the stack's capacity, and at 2x and 5x of a CPU-bound stack shedding here shed
//! almost nothing and kept nothing fast (docs/DESIGN.md, BENCHMARKS.md); so by default every
//! request queues (in the kernel's backlog, nginx and Actix). Turn it on where a late answer is
//! worth less than a quick refusal the client can retry (docs/DESIGN.md says when).
//!
//! One [`Limiter`] is shared by all of an instance's Actix workers. A shed request is not logged:
//! under overload that would add a write per refused request to the overload.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::RETRY_AFTER;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;
use tokio::sync::Semaphore;

/// The shedding settings (`MAX_IN_FLIGHT`, `MAX_QUEUED`, `RETRY_AFTER_S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadSettings {
    /// `MAX_IN_FLIGHT`: requests served at once by this instance; 0 (default) turns shedding off.
    pub max_in_flight: usize,
    /// `MAX_QUEUED`: requests that may wait for a slot; past it, `503`. Default: `MAX_IN_FLIGHT`.
    pub max_queued: usize,
    /// `RETRY_AFTER_S`: the `Retry-After` a shed request is given, in seconds (default 1).
    pub retry_after_s: u32,
}

impl Default for OverloadSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 0,
            max_queued: 0,
            retry_after_s: 1,
        }
    }
}

impl OverloadSettings {
    /// Whether requests are bounded at all.
    pub fn enabled(&self) -> bool {
        self.max_in_flight > 0
    }
}

/// The shared state: free slots and how many requests wait for one.
#[derive(Debug)]
pub struct Limiter {
    slots: Semaphore,
    waiting: AtomicUsize,
    max_queued: usize,
    retry_after: String,
}

impl Limiter {
    /// The bounds of `settings` (unused when they are off: the middleware is not mounted).
    pub fn new(settings: OverloadSettings) -> Self {
        Self {
            slots: Semaphore::new(settings.max_in_flight),
            waiting: AtomicUsize::new(0),
            max_queued: settings.max_queued,
            retry_after: settings.retry_after_s.to_string(),
        }
    }

    fn shed(&self) -> HttpResponse {
        HttpResponse::ServiceUnavailable()
            .insert_header((RETRY_AFTER, self.retry_after.as_str()))
            .json(json!({"error": "the server is overloaded; retry after the Retry-After seconds"}))
    }
}

/// The middleware (`actix_web::middleware::from_fn`): takes a slot, waiting for one if fewer
/// than `max_queued` already wait, or answers `503` at once.
pub async fn limit(
    limiter: web::Data<Limiter>,
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let permit = match limiter.slots.try_acquire() {
        Ok(permit) => permit,
        Err(_) => {
            if limiter.waiting.fetch_add(1, Ordering::Relaxed) >= limiter.max_queued {
                limiter.waiting.fetch_sub(1, Ordering::Relaxed);
                let (request, _) = request.into_parts();
                return Ok(ServiceResponse::new(request, limiter.shed()).map_into_right_body());
            }
            let permit = limiter.slots.acquire().await;
            limiter.waiting.fetch_sub(1, Ordering::Relaxed);
            permit.expect("the semaphore is never closed")
        }
    };
    let response = next.call(request).await?;
    drop(permit);
    Ok(response.map_into_left_body())
}
