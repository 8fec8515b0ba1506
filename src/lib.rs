//! The Rinha de Backend 2024 Q1 ledger API: Actix-Web in front, one shared SQLite file (WAL)
//! behind, or a PostgreSQL server (`DATABASE_URL=postgres://...`), built so that any number of
//! processes on that database keep the ledger exact.
//!
//! - [`config`] — every setting, read from the environment once.
//! - [`startup`] — binds the listeners, wires the routes, runs until told to stop.
//! - [`routes`] — thin HTTP handlers, one file per resource.
//! - [`openapi`] — the OpenAPI document, and the route table mounted from it.
//! - [`overload`] — optional load shedding (`MAX_IN_FLIGHT`).
//! - [`answer`] — how a JSON answer is encoded.
//! - [`error`] — the one API error type and its JSON answers.
//! - [`domain`] — validated request and answer types, and the ledger's rules.
//! - [`db`] — storage, SQLite or PostgreSQL behind one face; every SQL text lives there.
//! - [`metrics`] — what each instance measures, exposed on `GET /metrics` (Prometheus).
//! - [`scheduling`] — how Linux schedules the process's threads.
//! - [`telemetry`] — logging.

pub mod answer;
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
