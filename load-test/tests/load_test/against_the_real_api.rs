//! The tester against the real API (the root package), started in this process on port 0 with
//! a fresh SQLite file: a correct server must pass every check.

use rinha_api::{config::Config, startup::Application};
use tempfile::TempDir;

use crate::helpers::{bool_at, load_test, machine_to_myself, u64_at};

/// A running API; the database directory lives as long as this value.
struct RealApi {
    url: String,
    _directory: TempDir,
}

async fn spawn_real_api() -> RealApi {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        database_url: format!("sqlite://{}", directory.path().join("rinha.db").display()),
        workers: 2,
        ..Config::default()
    };
    let app = Application::build(config).await.expect("the API starts");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    RealApi {
        url,
        _directory: directory,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_api_passes_a_closed_loop_run_with_every_answer_checked() {
    let _machine = machine_to_myself().await;
    let api = spawn_real_api().await;
    let run = load_test(&[&api.url, "-c", "4", "-d", "2s", "--reset", "-o", "json"]).await;
    run.assert_exit(0);
    let report = run.report();

    assert!(u64_at(&report, "/totals/requests") > 100, "{report:#}");
    assert_eq!(u64_at(&report, "/totals/inconsistencies"), 0);
    assert_eq!(u64_at(&report, "/totals/failures"), 0);
    assert!(bool_at(&report, "/audit/passed"));
    let clients = report["audit"]["clients"]
        .as_array()
        .expect("per-client audit");
    assert!(
        clients.iter().all(|c| c["verdict"] == "exact"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_api_passes_the_rinha_profile_with_a_new_connection_per_request() {
    let _machine = machine_to_myself().await;
    let api = spawn_real_api().await;
    let run = load_test(&[
        &api.url,
        "--profile",
        "rinha",
        "--time-scale",
        "0.02",
        "--no-keepalive",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(0);
    let report = run.report();

    assert!(bool_at(&report, "/validation_phase/passed"), "{report:#}");
    assert!(!bool_at(&report, "/settings/keepalive"));
    assert_eq!(
        u64_at(&report, "/rate/started"),
        u64_at(&report, "/rate/open_model/scheduled")
    );
    assert_eq!(u64_at(&report, "/totals/inconsistencies"), 0);
    assert!(bool_at(&report, "/audit/passed"));
    assert!(bool_at(&report, "/sla/passed"));
}
