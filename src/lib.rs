//! The Rinha de Backend 2024 Q1 ledger API: Actix-Web in front, one shared SQLite file (WAL)
//! behind, or a PostgreSQL server (`DATABASE_URL=postgres://...`), built so that any number of
//! processes on that database keep the ledger exact.
//!
//! - [`config`] — every setting, from the environment.
//! - [`startup`] — binds the listener and wires the routes; what `main` and the tests both start.
//! - [`routes`] — thin HTTP handlers.
//! - [`openapi`] — the OpenAPI document, and the route table built from it.
//! - [`overload`] — optional load shedding (`MAX_IN_FLIGHT`).
//! - [`domain`] — validated request and answer types.
//! - [`db`] — storage, SQLite or PostgreSQL; every SQL statement lives there.
//! - [`error`] — the one API error type and its JSON answers.
//! - [`metrics`] — what each instance measures, exposed on `GET /metrics` (Prometheus).
//! - [`scheduling`] — how Linux schedules the process's threads.
//! - [`telemetry`] — logging.

pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod overload;
pub mod routes;
pub mod scheduling;
pub mod startup;
pub mod telemetry;
