//! What the connections did: how many the client opened, and which HTTP version each answer came
//! in on. The report turns these into new connections per second (over TLS, handshakes per
//! second) and requests per connection, the cost of the connection policy made visible.
//!
//! Connections are counted by a layer around reqwest's connector (`ClientBuilder::
//! connector_layer`): the connector is called exactly when the pool has no connection to reuse,
//! and its call completes once TCP is connected and, for `https://`, the TLS handshake is done.
//! So a count is a connection that was ready to carry a request, never one taken from the pool.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use reqwest::Version;
use serde::Serialize;

/// Counters shared by the client's connector layer and its calls; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TransportCounters {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    connections: AtomicU64,
    http1_0: AtomicU64,
    http1_1: AtomicU64,
    http2: AtomicU64,
    other: AtomicU64,
}

/// A reading of the counters; two readings subtract to what happened between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransportSnapshot {
    /// Connections opened (and, over TLS, handshakes completed).
    pub connections: u64,
    /// Answers that came in on HTTP/1.0.
    pub http1_0: u64,
    /// Answers that came in on HTTP/1.1.
    pub http1_1: u64,
    /// Answers that came in on HTTP/2.
    pub http2: u64,
    /// Answers on any other version.
    pub other: u64,
}

impl TransportCounters {
    /// The layer that counts each connection the client opens.
    pub fn layer(&self) -> CountConnectionsLayer {
        CountConnectionsLayer {
            counters: self.clone(),
        }
    }

    /// Counts an answer by the HTTP version it came in on.
    pub fn answered(&self, version: Version) {
        let counter = match version {
            Version::HTTP_10 => &self.inner.http1_0,
            Version::HTTP_11 => &self.inner.http1_1,
            Version::HTTP_2 => &self.inner.http2,
            _ => &self.inner.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> TransportSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TransportSnapshot {
            connections: read(&self.inner.connections),
            http1_0: read(&self.inner.http1_0),
            http1_1: read(&self.inner.http1_1),
            http2: read(&self.inner.http2),
            other: read(&self.inner.other),
        }
    }
}

impl TransportSnapshot {
    /// What happened between `earlier` and this reading.
    pub fn since(&self, earlier: &TransportSnapshot) -> TransportSnapshot {
        TransportSnapshot {
            connections: self.connections - earlier.connections,
            http1_0: self.http1_0 - earlier.http1_0,
            http1_1: self.http1_1 - earlier.http1_1,
            http2: self.http2 - earlier.http2,
            other: self.other - earlier.other,
        }
    }

    /// Answers by protocol, named as the report names them, without the zero ones.
    pub fn answers_by_protocol(&self) -> BTreeMap<String, u64> {
        [
            ("HTTP/1.0", self.http1_0),
            ("HTTP/1.1", self.http1_1),
            ("HTTP/2", self.http2),
            ("other", self.other),
        ]
        .into_iter()
        .filter(|&(_, count)| count > 0)
        .map(|(name, count)| (name.to_owned(), count))
        .collect()
    }

    /// Every answer, whatever its protocol.
    pub fn answers(&self) -> u64 {
        self.http1_0 + self.http1_1 + self.http2 + self.other
    }
}

/// Wraps the connector in [`CountConnections`].
#[derive(Debug, Clone)]
pub struct CountConnectionsLayer {
    counters: TransportCounters,
}

impl<S> tower_layer::Layer<S> for CountConnectionsLayer {
    type Service = CountConnections<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountConnections {
            inner,
            counters: self.counters.clone(),
        }
    }
}

/// The connector, counting each connection it delivers.
#[derive(Debug, Clone)]
pub struct CountConnections<S> {
    inner: S,
    counters: TransportCounters,
}

impl<S, Request> tower_service::Service<Request> for CountConnections<S>
where
    S: tower_service::Service<Request>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let connecting = self.inner.call(request);
        let counters = self.counters.clone();
        Box::pin(async move {
            let connection = connecting.await?;
            counters.inner.connections.fetch_add(1, Ordering::Relaxed);
            Ok(connection)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_protocol_and_readings_subtract() {
        let counters = TransportCounters::default();
        counters.answered(Version::HTTP_11);
        let before = counters.snapshot();
        counters.answered(Version::HTTP_2);
        counters.answered(Version::HTTP_2);
        counters.answered(Version::HTTP_11);
        let between = counters.snapshot().since(&before);
        assert_eq!(between.answers(), 3);
        assert_eq!(
            between.answers_by_protocol(),
            BTreeMap::from([("HTTP/1.1".to_owned(), 1), ("HTTP/2".to_owned(), 2)])
        );
    }
}
