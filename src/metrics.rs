//! What each instance measures, and its Prometheus text exposition (`GET /metrics`).
//!
//! The exposition is `metrics-exporter-prometheus`'s, not ours: this module only decides what is
//! measured and registers it. The decision that shaped it: **recording must cost the hot path
//! nothing measurable**, so every series a request touches is registered once, at start (or the
//! first time a route answers a given status), and a request only bumps atomics through handles
//! it already holds: no key hashing, no lock, no allocation per request. Whatever is already
//! counted elsewhere (lock waits in `db::busy`, the writer's queue, the WAL file) is read only
//! when Prometheus scrapes.
//!
//! Each [`Metrics`] has a recorder of its own (none is installed globally), so two applications
//! in one process (the tests) count separately; only the lock-wait counters, kept by a C
//! callback in static atomics, are per process.
//!
//! Route labels are the route *patterns* (`/clientes/{id}/transacoes`), fixed at start; a
//! request that matches no route is counted under `unmatched`, so no path a client sends can
//! create a series. Statuses are the few an HTTP server can answer (at most 500 values).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::Error;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::db::{Checkpoint, Database, StorageMetrics, busy};
use crate::domain::Kind;

/// Buckets of the duration histograms, in seconds: 100 µs to 1 s, about three per decade. A
/// request served without waiting takes a few hundred microseconds; the challenge's limit is
/// 250 ms (Rinha's score counts answers under it), and one busy timeout is 5 s.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Buckets of the write batch sizes: powers of two up to the largest `DB_WRITE_BATCH_MAX`
/// worth trying (a batch submitted whole can exceed it; it lands in `+Inf`).
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const REQUESTS: &str = "rinha_http_requests_total";
const DURATION: &str = "rinha_http_request_duration_seconds";
const BATCH_SIZE: &str = "rinha_write_batch_size";
const CHECKPOINT_DURATION: &str = "rinha_checkpoint_duration_seconds";

/// Statuses this API answers, whose counters each route keeps a slot for; any other status
/// (none today) is registered when first seen.
const COMMON_STATUSES: [u16; 10] = [200, 400, 404, 405, 413, 422, 500, 502, 503, 504];

/// This instance's measurements; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// One per route pattern, then [`UNMATCHED`] last.
    routes: Vec<RouteMetrics>,
    in_flight: Gauge,
    /// `[kind][outcome]`: credit/debit × applied/refused.
    transactions: [[Counter; 2]; 2],
    storage: StorageMetrics,
    checkpoint_duration: Histogram,
    checkpoint_failures: Counter,
    wal_frames: Gauge,
    wal_bytes: Gauge,
    lock_waits: Counter,
    lock_wait_retries: Counter,
    lock_wait_seconds: Gauge,
    lock_wait_longest: Gauge,
    lock_wait_timeouts: Counter,
    batches_retried: Counter,
    largest_batch: Gauge,
    write_queue: Gauge,
}

struct RouteMetrics {
    pattern: &'static str,
    duration: Histogram,
    /// The requests counter of each of [`COMMON_STATUSES`], registered on first use so a status
    /// a route never answers makes no series.
    requests: [OnceLock<Counter>; COMMON_STATUSES.len()],
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()))
}

impl Metrics {
    /// Registers every series for an application serving `routes` (their patterns).
    pub fn new(routes: &[&'static str]) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&DURATION_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &BATCH_BUCKETS)
            })
            // Only an empty bucket list is refused, and these are constants.
            .expect("histogram buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let counter = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            recorder.register_counter(&key(name, labels), &metadata())
        };
        let gauge = |name: &'static str| recorder.register_gauge(&key(name, &[]), &metadata());
        let histogram = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            recorder.register_histogram(&key(name, labels), &metadata())
        };
        let routes = routes
            .iter()
            .copied()
            .chain([UNMATCHED])
            .map(|pattern| RouteMetrics {
                pattern,
                duration: histogram(DURATION, &[("route", pattern)]),
                requests: Default::default(),
            })
            .collect();
        let transaction = |kind, outcome| {
            counter(
                "rinha_transactions_total",
                &[("kind", kind), ("outcome", outcome)],
            )
        };
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        gauge("process_start_time_seconds").set(started.as_secs_f64());
        gauge("rinha_process_id").set(f64::from(std::process::id()));
        let inner = Inner {
            routes,
            in_flight: gauge("rinha_http_requests_in_flight"),
            transactions: [
                [
                    transaction("credit", "applied"),
                    transaction("credit", "refused"),
                ],
                [
                    transaction("debit", "applied"),
                    transaction("debit", "refused"),
                ],
            ],
            storage: StorageMetrics {
                batch_sizes: histogram(BATCH_SIZE, &[]),
            },
            checkpoint_duration: histogram(CHECKPOINT_DURATION, &[]),
            checkpoint_failures: counter("rinha_checkpoint_failures_total", &[]),
            wal_frames: gauge("rinha_wal_frames"),
            wal_bytes: gauge("rinha_wal_bytes"),
            lock_waits: counter("rinha_lock_waits_total", &[]),
            lock_wait_retries: counter("rinha_lock_wait_retries_total", &[]),
            lock_wait_seconds: gauge("rinha_lock_wait_seconds"),
            lock_wait_longest: gauge("rinha_lock_wait_longest_seconds"),
            lock_wait_timeouts: counter("rinha_lock_wait_timeouts_total", &[]),
            batches_retried: counter("rinha_write_batches_retried_total", &[]),
            largest_batch: gauge("rinha_write_batch_largest"),
            write_queue: gauge("rinha_write_queue_jobs"),
            recorder,
            handle,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// What storage records (the writer's batch sizes), for [`Database::connect`].
    pub fn storage(&self) -> StorageMetrics {
        self.inner.storage.clone()
    }

    /// Counts a request as in flight until the returned guard is finished or dropped.
    pub fn start_request(&self) -> RequestTimer {
        self.inner.in_flight.increment(1.0);
        RequestTimer {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    /// Counts a transaction that storage applied (`applied`) or refused.
    pub fn transaction(&self, kind: Kind, applied: bool) {
        let kind = match kind {
            Kind::Credit => 0,
            Kind::Debit => 1,
        };
        self.inner.transactions[kind][usize::from(!applied)].increment(1);
    }

    /// Records one background checkpoint: how long it took, and the WAL it left.
    pub fn checkpoint(&self, took: Duration, result: Result<Checkpoint, ()>) {
        self.inner.checkpoint_duration.record(took.as_secs_f64());
        match result {
            Ok(checkpoint) => self.inner.wal_frames.set(checkpoint.wal_pages as f64),
            Err(()) => self.inner.checkpoint_failures.increment(1),
        }
    }

    /// Drains the histograms' pending samples into their buckets. The recorder keeps each sample
    /// until then, so this must run periodically even when nobody scrapes (see `startup`).
    pub fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// The exposition: reads what other modules count, then renders every series.
    pub fn render(&self, db: &Database) -> String {
        let inner = &self.inner;
        let waits = busy::lock_waits();
        inner.lock_waits.absolute(waits.waits);
        inner.lock_wait_retries.absolute(waits.retries);
        inner.lock_wait_seconds.set(waits.total_ms / 1e3);
        inner.lock_wait_longest.set(waits.longest_ms / 1e3);
        inner.lock_wait_timeouts.absolute(waits.timeouts);
        let batches = db.batch_stats();
        inner.batches_retried.absolute(batches.retried);
        inner.largest_batch.set(batches.largest as f64);
        inner.write_queue.set(batches.waiting as f64);
        let wal = db
            .wal_path()
            .and_then(|path| std::fs::metadata(path).ok())
            .map_or(0, |meta| meta.len());
        inner.wal_bytes.set(wal as f64);
        inner.handle.render()
    }
}

/// A request being served: counted in flight until finished (or dropped, if the client went
/// away first), then counted by route and status and its duration recorded.
#[derive(Debug)]
pub struct RequestTimer {
    metrics: Metrics,
    started: Instant,
}

impl RequestTimer {
    /// Records the request's answer (or the error that will become it).
    pub fn finish<B>(self, result: &Result<ServiceResponse<B>, Error>) {
        let took = self.started.elapsed();
        let (route, status) = match result {
            Ok(response) => (response.request().match_name(), response.status()),
            Err(err) => (None, err.as_response_error().status_code()),
        };
        let inner = &self.metrics.inner;
        let route = route
            .and_then(|name| inner.routes.iter().find(|route| route.pattern == name))
            .or(inner.routes.last())
            .expect("the unmatched route is always there");
        route.duration.record(took.as_secs_f64());
        self.metrics.requests(route, status).increment(1);
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.metrics.inner.in_flight.decrement(1.0);
    }
}

impl Metrics {
    fn requests(&self, route: &RouteMetrics, status: StatusCode) -> Counter {
        let register = || {
            self.inner.recorder.register_counter(
                &Key::from_parts(
                    REQUESTS,
                    vec![
                        Label::new("route", route.pattern),
                        Label::new("status", status.as_str().to_owned()),
                    ],
                ),
                &metadata(),
            )
        };
        match COMMON_STATUSES.iter().position(|&s| s == status.as_u16()) {
            Some(slot) => route.requests[slot].get_or_init(register).clone(),
            // Registering finds the existing series if there is one: bounded by the statuses.
            None => register(),
        }
    }
}

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|&(key, value)| Label::new(key, value))
            .collect::<Vec<_>>(),
    )
}

/// The `# HELP` of every series.
fn describe(recorder: &PrometheusRecorder) {
    let counters = [
        (
            REQUESTS,
            "HTTP requests answered, by route pattern and status.",
        ),
        (
            "rinha_transactions_total",
            "Valid transactions by kind (credit, debit) and outcome: applied, or refused (limit or balance ceiling).",
        ),
        (
            "rinha_lock_waits_total",
            "Writes that found SQLite's write lock held by another connection (backoff busy handler only).",
        ),
        (
            "rinha_lock_wait_retries_total",
            "Attempts to take the write lock after the first, over all waits.",
        ),
        (
            "rinha_lock_wait_timeouts_total",
            "Waits that reached DB_BUSY_TIMEOUT_MS and failed (503).",
        ),
        (
            "rinha_write_batches_retried_total",
            "Write batches rolled back and applied again one job at a time.",
        ),
        (
            "rinha_checkpoint_failures_total",
            "Background WAL checkpoints that failed.",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(KeyName::from(name), None, help.into());
    }
    let gauges = [
        (
            "rinha_http_requests_in_flight",
            "Requests being served now.",
        ),
        (
            "rinha_lock_wait_seconds",
            "Time spent waiting for the write lock since start: only grows (rate() it). A gauge because counters here are integers.",
        ),
        (
            "rinha_lock_wait_longest_seconds",
            "The longest single wait for the write lock since start.",
        ),
        (
            "rinha_write_batch_largest",
            "The most transactions one write batch held since start.",
        ),
        (
            "rinha_write_queue_jobs",
            "Transactions queued for the writer and not yet taken, at scrape time.",
        ),
        (
            "rinha_wal_frames",
            "Frames (pages) in the WAL after the last background checkpoint.",
        ),
        ("rinha_wal_bytes", "Size of the WAL file at scrape time."),
        (
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch.",
        ),
        (
            "rinha_process_id",
            "The process id, to tell instances apart (e.g. through nginx).",
        ),
    ];
    for (name, help) in gauges {
        recorder.describe_gauge(KeyName::from(name), None, help.into());
    }
    let histograms = [
        (
            DURATION,
            Some(Unit::Seconds),
            "Time from receiving a request to its answer, by route pattern.",
        ),
        (
            BATCH_SIZE,
            Some(Unit::Count),
            "Transactions committed per write batch (group commit).",
        ),
        (
            CHECKPOINT_DURATION,
            Some(Unit::Seconds),
            "Duration of the background WAL checkpoints.",
        ),
    ];
    for (name, unit, help) in histograms {
        recorder.describe_histogram(KeyName::from(name), unit, help.into());
    }
}
