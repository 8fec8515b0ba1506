//! The tester against the real API (the root package), started in this process on port 0 with
//! a fresh SQLite file: a correct server must pass every check.

use rinha_api::routes::reset::ResetAccess;
use rinha_api::{config::Config, startup::Application};
use tempfile::TempDir;

use crate::{
    chromium::check_page,
    helpers::{
        bool_at, buckets, f64_at, load_test, machine_shared, machine_to_myself, responses_in,
        sum_over, u64_at,
    },
};

/// A running API; the database directory lives as long as this value.
pub(crate) struct RealApi {
    pub(crate) url: String,
    _directory: TempDir,
}

pub(crate) async fn spawn_real_api() -> RealApi {
    spawn_real_api_with(ResetAccess::Open).await
}

/// The same, with `/reset` open to whom `reset` says.
async fn spawn_real_api_with(reset: ResetAccess) -> RealApi {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        database: rinha_api::db::DatabaseSettings {
            url: format!("sqlite://{}", directory.path().join("rinha.db").display()),
            ..rinha_api::db::DatabaseSettings::default()
        },
        workers: 2,
        reset,
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
async fn the_real_api_passes_the_rinha_profile_with_a_new_connection_per_request_and_its_page_renders()
 {
    let _machine = machine_to_myself().await;
    let api = spawn_real_api().await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let page = directory.path().join("report.html");
    let run = load_test(&[
        &api.url,
        "--profile",
        "rinha",
        "--time-scale",
        "0.02",
        "--no-keepalive",
        // The SLA's latency is lax: in an open model one stall of the shared machine makes every
        // request due during it late, and what is tested here is correctness, not speed
        // (scripts/bench-stack and scripts/compose-test measure that).
        "--sla-latency",
        "5s",
        "-o",
        "json",
        "--html",
        page.to_str().expect("a UTF-8 path"),
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

    // The series accounts for every request exactly once: each answer in the second it ended,
    // each start in the second it was sent, each scheduled request in the second it was due.
    let buckets = buckets(&report);
    assert!(buckets.len() >= 5, "a 4.8 s load: {report:#}");
    let answered: u64 = buckets.iter().map(responses_in).sum();
    assert_eq!(answered, u64_at(&report, "/totals/requests"));
    assert_eq!(sum_over(buckets, "/ok"), u64_at(&report, "/totals/ok"));
    assert_eq!(
        sum_over(buckets, "/started"),
        u64_at(&report, "/rate/started")
    );
    let scheduled: f64 = buckets.iter().map(|b| f64_at(b, "/target")).sum();
    assert_eq!(
        scheduled as u64,
        u64_at(&report, "/rate/open_model/scheduled")
    );
    // The ramp: the timetable asks for more in its last full second than in its first.
    assert!(
        f64_at(&buckets[3], "/target") > f64_at(&buckets[0], "/target") * 2.0,
        "{report:#}"
    );
    let measured: u64 = buckets
        .iter()
        .filter(|b| !b["latency_ms"]["debit"].is_null())
        .map(|b| u64_at(b, "/latency_ms/debit/count"))
        .sum();
    assert_eq!(measured, u64_at(&report, "/kinds/debit/count"));

    // The page: six charts (responses, three latencies, in flight, starts), the validation
    // phase, and in Chromium the status-200 line (green) and the in-flight line (purple).
    let html = std::fs::read_to_string(&page).expect("the page was written");
    assert!(html.contains("Validation phase"), "{html}");
    assert!(html.contains("PASSED: 155 checks, 0 failed"), "{html}");
    check_page(&page, 6, &[[0x2e, 0x9e, 0x4f], [0x7b, 0x3f, 0xb5]]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_deployment_with_a_reset_token_the_tester_resets_only_with_it() {
    let _machine = machine_shared().await;
    let api = spawn_real_api_with(ResetAccess::Token("t0ken-for-the-tester".into())).await;
    let without = load_test(&[&api.url, "-n", "20", "--reset"]).await;
    without.assert_exit(2);
    assert!(
        without.stderr.contains("403") && without.stderr.contains("--reset-token"),
        "says the deployment wants a token: {}",
        without.stderr
    );
    let wrong = load_test(&[&api.url, "-n", "20", "--reset", "--reset-token", "nope"]).await;
    wrong.assert_exit(2);
    assert!(
        wrong.stderr.contains("is not the deployment's"),
        "{}",
        wrong.stderr
    );
    let with = load_test(&[
        &api.url,
        "-n",
        "20",
        "--reset",
        "--reset-token",
        "t0ken-for-the-tester",
        // What is tested is the reset, not the speed: a stall on a busy machine passes.
        "--sla-latency",
        "1m",
    ])
    .await;
    with.assert_exit(0);
}
