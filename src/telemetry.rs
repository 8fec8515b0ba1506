//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`, with actix-server's own start-up chatter at `warn`).
//!
//! At `info` the service logs its start, its stop and every server error, once; nothing is
//! logged per request, because at thousands of requests a second logging would cost more than
//! the work.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
