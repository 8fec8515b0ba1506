//! A load tester for the Rinha de Backend 2024 Q1 API contract (docs/CONTRACT.md), built on rlt.
//!
//! It sends the official 22:11:1 mix of debits, credits and statements, checks every answer
//! against the contract, audits the final balances against what the server accepted, and exits
//! non-zero when anything is wrong — so a fast server that loses writes fails, loudly.
//!
//! Crate map, in the order a run uses it:
//!
//! - [`cli`]: the options, rlt's `BenchCli` flattened in, the defaults (the local stack, 14
//!   workers, 20 s), validated into a load plan.
//! - [`app`]: one run from setup to verdict.
//! - [`client`]: the HTTP calls (reqwest), keep-alive or a connection per request, HTTP/1.1 or
//!   HTTP/2, plain or TLS.
//! - [`tls`]: the TLS client: trusted certificates, ALPN, session resumption.
//! - [`transport`]: connections opened and answers by protocol, counted.
//! - [`contract`]: the clients and limits the contract fixes.
//! - [`profile`]: `--profile rinha`, the official validation phase and load shape.
//! - [`mix`]: the 22:11:1 cycle and the random client, amount and description.
//! - [`schedule`]: open-model arrival times for a constant or ramping rate.
//! - [`runner`]: closed loop or open model, feeding rlt's live view and the recorder.
//! - [`validate`]: the rules every answer must follow.
//! - [`outcome`]: how one request ended, judged against those rules: what `stats` and `series`
//!   fold in.
//! - [`stats`]: per-kind counts, statuses and latency percentiles; failures; the SLA count.
//! - [`series`]: the same over time, in one-second buckets folded in as requests complete.
//! - [`audit`]: final balances against accepted amounts, with unknown outcomes accounted for.
//! - [`report`]: the report model, built once from the results: every fact, its wording, the
//!   verdict; written as JSON as it is.
//! - [`text`]: the report as text, after rlt's summary (plain text off a terminal).
//! - [`html`]: the report as one self-contained page with charts of the series (`--html`).
//! - [`error`]: the one error type (a run that could not be made).

pub mod app;
pub mod audit;
pub mod cli;
pub mod client;
pub mod contract;
pub mod error;
pub mod html;
pub mod mix;
pub mod outcome;
pub mod profile;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod series;
pub mod stats;
pub mod text;
pub mod tls;
pub mod transport;
pub mod validate;

pub use app::{Outcome, run};
pub use cli::Options;
pub use error::Error;
