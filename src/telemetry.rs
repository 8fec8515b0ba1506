//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`, with actix-server's own
//! start-up chatter at `warn`), as text or as JSON lines (`LOG_FORMAT`).
//!
//! At `info` the service logs its start, its stop and every server error, once; nothing is
//! logged per request, because at thousands of requests a second logging would cost more than
//! the work (requests are counted in `metrics` instead).
//!
//! The format's default follows who reads it: a person at a terminal gets coloured text; a file,
//! a pipe or a container runtime (`docker logs`, a log shipper) gets one JSON object per line,
//! which tools parse without guessing at a layout. Colour codes are written only to a terminal,
//! and not even there when `NO_COLOR` is set.

use std::io::IsTerminal;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

use crate::config::{Choice, ConfigError};

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields at the top level.
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT` if set; otherwise text when stderr is a terminal, JSON when it is not.
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var("LOG_FORMAT") {
            Ok(value) => match value.parse() {
                Ok(Choice(format)) => Ok(format),
                Err(reason) => Err(ConfigError {
                    name: "LOG_FORMAT",
                    value,
                    reason: reason.to_string(),
                }),
            },
            Err(_) if std::io::stderr().is_terminal() => Ok(Self::Text),
            Err(_) => Ok(Self::Json),
        }
    }
}

/// Installs the global subscriber. Call once, first thing in `main`; an invalid `LOG_FORMAT`
/// still installs one (text) so that the error can be logged.
pub fn init() -> Result<LogFormat, ConfigError> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    let format = LogFormat::from_env();
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        Ok(LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        Ok(LogFormat::Text) | Err(_) => builder.init(),
    }
    format
}
