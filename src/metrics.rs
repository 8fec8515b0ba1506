//! What each instance measures, and its Prometheus text exposition (`GET /metrics`).
//!
//! The exposition is `metrics-exporter-prometheus`'s, not ours: this module only decides what is
//! measured and registers it. The decision that shaped it: **recording must cost the hot path
//! nothing measurable**, so every series a request touches is registered once, at start (or the
//! first time a route answers a given status), and a request only bumps atomics through handles
//! it already holds: no key hashing, no lock, no allocation per request. Storage records its own
//! series through the handles of [`StorageMetrics`]; what it counts elsewhere (lock waits, the
//! writer's queue, the WAL file) it reads in a hook that runs only when Prometheus scrapes.
//!
//! Every series is declared once, in the table of [`Series`] constants below: name, kind, unit
//! and help together.
//!
//! Each [`Metrics`] has a recorder of its own (none is installed globally), so two applications
//! in one process (the tests) count separately; only the lock-wait counters, kept by a C
//! callback in static atomics, are per process.
//!
//! Route labels are the route *patterns* (`/clientes/{id}/transacoes`), fixed at start; a
//! request that matches no route is counted under `unmatched`, so no path a client sends can
//! create a series. Statuses are the few an HTTP server can answer (at most 500 values).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::Error;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

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

/// One series: what Prometheus shows in its `# HELP` and `# TYPE` lines.
#[derive(Debug)]
struct Series {
    name: &'static str,
    unit: Option<Unit>,
    help: &'static str,
}

impl Series {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            unit: None,
            help,
        }
    }

    const fn with_unit(name: &'static str, unit: Unit, help: &'static str) -> Self {
        Self {
            name,
            unit: Some(unit),
            help,
        }
    }
}

// Counters.
const REQUESTS: Series = Series::new(
    "rinha_http_requests_total",
    "HTTP requests answered, by route pattern and status.",
);
const TRANSACTIONS: Series = Series::new(
    "rinha_transactions_total",
    "Valid transactions by kind (credit, debit) and outcome: applied, or refused (limit or balance ceiling).",
);
const LOCK_WAITS: Series = Series::new(
    "rinha_lock_waits_total",
    "Writes and reads that found SQLite's lock held by another connection.",
);
const LOCK_WAIT_RETRIES: Series = Series::new(
    "rinha_lock_wait_retries_total",
    "Attempts to take the lock after the first, over all waits.",
);
const LOCK_WAIT_TIMEOUTS: Series = Series::new(
    "rinha_lock_wait_timeouts_total",
    "Waits that reached DB_BUSY_TIMEOUT_MS and failed (503).",
);
const BATCHES_RETRIED: Series = Series::new(
    "rinha_write_batches_retried_total",
    "Write batches rolled back and applied again one job at a time.",
);
const CHECKPOINT_FAILURES: Series = Series::new(
    "rinha_checkpoint_failures_total",
    "Background WAL checkpoints that failed.",
);
// Gauges.
const IN_FLIGHT: Series = Series::new(
    "rinha_http_requests_in_flight",
    "Requests being served now.",
);
const LOCK_WAIT_SECONDS: Series = Series::new(
    "rinha_lock_wait_seconds",
    "Time spent waiting for the lock since start: only grows (rate() it). A gauge because counters here are integers.",
);
const LOCK_WAIT_LONGEST: Series = Series::new(
    "rinha_lock_wait_longest_seconds",
    "The longest single wait for the lock since start.",
);
const LARGEST_BATCH: Series = Series::new(
    "rinha_write_batch_largest",
    "The most transactions one write batch held since start.",
);
const WRITE_QUEUE: Series = Series::new(
    "rinha_write_queue_jobs",
    "Transactions queued for the writer and not yet taken, at scrape time.",
);
const WAL_FRAMES: Series = Series::new(
    "rinha_wal_frames",
    "Frames (pages) in the WAL after the last background checkpoint.",
);
const WAL_BYTES: Series = Series::new("rinha_wal_bytes", "Size of the WAL file at scrape time.");
const START_TIME: Series = Series::new(
    "process_start_time_seconds",
    "Start time of the process since the Unix epoch.",
);
const PROCESS_ID: Series = Series::new(
    "rinha_process_id",
    "The process id, to tell instances apart (e.g. through nginx).",
);
// Histograms.
const DURATION: Series = Series::with_unit(
    "rinha_http_request_duration_seconds",
    Unit::Seconds,
    "Time from receiving a request to its answer, by route pattern.",
);
const BATCH_SIZE: Series = Series::with_unit(
    "rinha_write_batch_size",
    Unit::Count,
    "Transactions committed per write batch (group commit).",
);
const CHECKPOINT_DURATION: Series = Series::with_unit(
    "rinha_checkpoint_duration_seconds",
    Unit::Seconds,
    "Duration of the background WAL checkpoints.",
);

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
}

/// The series storage records, and the hooks it runs at each scrape; cheap to clone.
/// `Default` records nothing (benchmarks, unit tests).
#[derive(Clone)]
pub struct StorageMetrics {
    /// Jobs in each batch the writer commits.
    pub batch_sizes: Histogram,
    pub batches_retried: Counter,
    pub largest_batch: Gauge,
    pub write_queue: Gauge,
    pub checkpoint_duration: Histogram,
    pub checkpoint_failures: Counter,
    pub wal_frames: Gauge,
    pub wal_bytes: Gauge,
    pub lock_waits: Counter,
    pub lock_wait_retries: Counter,
    pub lock_wait_seconds: Gauge,
    pub lock_wait_longest: Gauge,
    pub lock_wait_timeouts: Counter,
    hooks: Arc<Mutex<Vec<ScrapeHook>>>,
}

type ScrapeHook = Box<dyn Fn(&StorageMetrics) + Send + Sync>;

impl std::fmt::Debug for StorageMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageMetrics").finish_non_exhaustive()
    }
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self {
            batch_sizes: Histogram::noop(),
            batches_retried: Counter::noop(),
            largest_batch: Gauge::noop(),
            write_queue: Gauge::noop(),
            checkpoint_duration: Histogram::noop(),
            checkpoint_failures: Counter::noop(),
            wal_frames: Gauge::noop(),
            wal_bytes: Gauge::noop(),
            lock_waits: Counter::noop(),
            lock_wait_retries: Counter::noop(),
            lock_wait_seconds: Gauge::noop(),
            lock_wait_longest: Gauge::noop(),
            lock_wait_timeouts: Counter::noop(),
            hooks: Arc::default(),
        }
    }
}

impl StorageMetrics {
    /// Runs `hook` before each scrape is rendered, to set the series storage reads rather than
    /// counts. It is handed these metrics at each call, so it never holds them (a hook holding
    /// them would hold itself, and never be freed).
    pub fn on_scrape(&self, hook: impl Fn(&StorageMetrics) + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(hook));
    }

    fn scraped(&self) {
        for hook in self
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            hook(self);
        }
    }
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
                builder
                    .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.name.into()), &BATCH_BUCKETS)
            })
            // Only an empty bucket list is refused, and these are constants.
            .expect("histogram buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let register = Register(&recorder);
        let routes = routes
            .iter()
            .copied()
            .chain([UNMATCHED])
            .map(|pattern| RouteMetrics {
                pattern,
                duration: register.histogram(&DURATION, &[("route", pattern)]),
                requests: Default::default(),
            })
            .collect();
        let transaction = |kind, outcome| {
            register.counter(&TRANSACTIONS, &[("kind", kind), ("outcome", outcome)])
        };
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        register.gauge(&START_TIME).set(started.as_secs_f64());
        register
            .gauge(&PROCESS_ID)
            .set(f64::from(std::process::id()));
        let storage = StorageMetrics {
            batch_sizes: register.histogram(&BATCH_SIZE, &[]),
            batches_retried: register.counter(&BATCHES_RETRIED, &[]),
            largest_batch: register.gauge(&LARGEST_BATCH),
            write_queue: register.gauge(&WRITE_QUEUE),
            checkpoint_duration: register.histogram(&CHECKPOINT_DURATION, &[]),
            checkpoint_failures: register.counter(&CHECKPOINT_FAILURES, &[]),
            wal_frames: register.gauge(&WAL_FRAMES),
            wal_bytes: register.gauge(&WAL_BYTES),
            lock_waits: register.counter(&LOCK_WAITS, &[]),
            lock_wait_retries: register.counter(&LOCK_WAIT_RETRIES, &[]),
            lock_wait_seconds: register.gauge(&LOCK_WAIT_SECONDS),
            lock_wait_longest: register.gauge(&LOCK_WAIT_LONGEST),
            lock_wait_timeouts: register.counter(&LOCK_WAIT_TIMEOUTS, &[]),
            hooks: Arc::default(),
        };
        register.describe_counter(&REQUESTS);
        let inner = Inner {
            routes,
            in_flight: register.gauge(&IN_FLIGHT),
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
            storage,
            recorder,
            handle,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The series storage records, for `Database::connect`.
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

    /// Drains the histograms' pending samples into their buckets. The recorder keeps each sample
    /// until then, so this must run periodically even when nobody scrapes (see `startup`).
    pub fn upkeep(&self) {
        self.inner.handle.run_upkeep();
    }

    /// The exposition: runs storage's scrape hooks, then renders every series.
    pub fn render(&self) -> String {
        self.inner.storage.scraped();
        self.inner.handle.render()
    }
}

/// Registers series on a recorder, each described from its [`Series`] entry.
struct Register<'r>(&'r PrometheusRecorder);

impl Register<'_> {
    /// Describes a counter registered later, label by label.
    fn describe_counter(&self, series: &Series) {
        self.0
            .describe_counter(KeyName::from(series.name), series.unit, series.help.into());
    }

    fn counter(&self, series: &Series, labels: &[(&'static str, &'static str)]) -> Counter {
        self.describe_counter(series);
        self.0
            .register_counter(&key(series.name, labels), &metadata())
    }

    fn gauge(&self, series: &Series) -> Gauge {
        self.0
            .describe_gauge(series.name.into(), series.unit, series.help.into());
        self.0.register_gauge(&key(series.name, &[]), &metadata())
    }

    fn histogram(&self, series: &Series, labels: &[(&'static str, &'static str)]) -> Histogram {
        self.0
            .describe_histogram(series.name.into(), series.unit, series.help.into());
        self.0
            .register_histogram(&key(series.name, labels), &metadata())
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
                    REQUESTS.name,
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
