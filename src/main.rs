//! The `rinha-api` binary: configuration, logging, build, serve until stopped.

use std::process::ExitCode;

use rinha_api::config::Config;
use rinha_api::startup::Application;
use rinha_api::telemetry;

// The Actix workers run their own runtimes; this one only starts the server, runs storage's
// background task and waits for the stop signal, so one thread is enough.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if let Err(err) = telemetry::init() {
        tracing::error!("configuration: {err}");
        return ExitCode::FAILURE;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!("configuration: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Before any other thread starts, so that each inherits the policy.
    let scheduling = match rinha_api::scheduling::apply(config.sched_policy) {
        Ok(()) => config.sched_policy.to_string(),
        Err(err) => {
            tracing::warn!(
                "cannot set the scheduling policy {} (API_SCHED_POLICY): {err}",
                config.sched_policy
            );
            "unchanged".to_owned()
        }
    };
    let (host, database, workers) = (
        config.host.clone(),
        config.database.redacted_url(),
        config.workers,
    );
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "listening on http://{host}:{port} with {workers} workers (scheduling {scheduling}), \
         database {database}",
        port = app.port()
    );
    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!("server failed: {err}");
            ExitCode::FAILURE
        }
    }
}
