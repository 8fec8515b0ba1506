//! The request body as one [`Bytes`], up to [`MAX_BODY_BYTES`], read without a buffer of its own
//! when it arrives in one piece.
//!
//! Actix-Web's `Bytes` extractor reserves 8 KiB for every body before reading it and copies the
//! body in: for a transaction's body of under 100 bytes that reservation was an allocation of the
//! size that makes glibc's `malloc` sweep its free lists (`malloc_consolidate`, about 1% of an
//! instance's CPU at saturation in `perf`). A body that arrives as one chunk (nearly every one:
//! it comes with its headers) is handed on as that chunk, a view into the connection's read
//! buffer; only a body in several chunks is gathered into a buffer of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::dev::Payload;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_core::Stream;

use crate::error::{ApiError, MAX_BODY_BYTES};

/// The whole request body. Extracting it fails with [`ApiError::PayloadTooLarge`] past
/// [`MAX_BODY_BYTES`] (at once when `Content-Length` says so), and with
/// [`ApiError::UnreadableBody`] when the body cannot be read (cut short, a malformed chunk).
#[derive(Debug)]
pub struct Body(pub Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = ReadBody;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> ReadBody {
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        ReadBody {
            payload: payload.take(),
            too_large: declared.is_some_and(|length| length > MAX_BODY_BYTES),
            first: None,
            gathered: BytesMut::new(),
        }
    }
}

/// Reads the chunks of a body until its end (see [`Body`]).
pub struct ReadBody {
    payload: Payload,
    too_large: bool,
    /// The body so far while it is one chunk.
    first: Option<Bytes>,
    /// The body so far once a second chunk came.
    gathered: BytesMut,
}

impl std::fmt::Debug for ReadBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBody")
            .field("too_large", &self.too_large)
            .field("read", &self.length())
            .finish_non_exhaustive()
    }
}

impl ReadBody {
    fn length(&self) -> usize {
        self.first.as_ref().map_or(self.gathered.len(), Bytes::len)
    }
}

impl Future for ReadBody {
    type Output = Result<Body, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.too_large {
            return Poll::Ready(Err(ApiError::body_too_large()));
        }
        loop {
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    let body = match this.first.take() {
                        Some(chunk) => chunk,
                        None => std::mem::take(&mut this.gathered).freeze(),
                    };
                    return Poll::Ready(Ok(Body(body)));
                }
                Poll::Ready(Some(Err(err))) => {
                    return Poll::Ready(Err(ApiError::from_body_error(err)));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if this.length() + chunk.len() > MAX_BODY_BYTES {
                        this.too_large = true;
                        return Poll::Ready(Err(ApiError::body_too_large()));
                    }
                    if this.length() == 0 {
                        this.first = Some(chunk);
                    } else {
                        if let Some(first) = this.first.take() {
                            this.gathered.extend_from_slice(&first);
                        }
                        this.gathered.extend_from_slice(&chunk);
                    }
                }
            }
        }
    }
}
