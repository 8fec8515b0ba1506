//! The integration tests: one binary that starts the real server (in-process on port 0, or as
//! real `rinha-api` processes, or the whole stack behind real nginx) on a temporary SQLite file
//! and talks HTTP to it.

mod access;
mod batches;
mod contract;
mod deployment;
mod faults;
mod faults_postgres;
mod fuzz_regressions;
mod helpers;
mod metrics;
mod openapi;
mod overload;
#[path = "../support/ports.rs"]
mod ports;
mod processes;
mod rules;
mod stack;
mod tls;
