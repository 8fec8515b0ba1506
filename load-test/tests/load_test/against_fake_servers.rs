//! The tester against fake servers: it must pass the correct one and catch each broken one.

use std::time::Duration;

use crate::{
    chromium::check_page,
    fake_server::{Fault, spawn},
    helpers::{
        bool_at, buckets, f64_at, load_test, load_test_without_no_color, machine_shared,
        machine_to_myself, responses_in, u64_at,
    },
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_server_passes_with_the_exact_22_11_1_mix() {
    let _machine = machine_to_myself().await;
    let server = spawn(Fault::None).await;
    let run = load_test(&[
        &server.url(),
        "-c",
        "4",
        "-n",
        "1500",
        "--reset",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(0);
    let report = run.report();

    assert_eq!(u64_at(&report, "/totals/requests"), 1500);
    // 1500 = 44 cycles of 34 + D, D, C, D.
    assert_eq!(u64_at(&report, "/kinds/debit/count"), 44 * 22 + 3);
    assert_eq!(u64_at(&report, "/kinds/credit/count"), 44 * 11 + 1);
    assert_eq!(u64_at(&report, "/kinds/statement/count"), 44);
    assert_eq!(u64_at(&report, "/totals/failures"), 0);
    assert_eq!(u64_at(&report, "/totals/inconsistencies"), 0);
    // Balances hit their limits within 1500 requests, so refusals happen, and they count as OK.
    let debits_refused = u64_at(&report, "/kinds/debit/statuses/422");
    assert!(debits_refused > 0, "{report:#}");
    assert_eq!(
        u64_at(&report, "/kinds/debit/statuses/200") + debits_refused,
        44 * 22 + 3
    );
    for kind in ["debit", "credit", "statement"] {
        let p50 = f64_at(&report, &format!("/kinds/{kind}/latency_ms/p50"));
        let max = f64_at(&report, &format!("/kinds/{kind}/latency_ms/max"));
        assert!(p50 > 0.0 && p50 <= max, "{kind}: p50 {p50} max {max}");
    }
    assert!(bool_at(&report, "/audit/passed"), "{report:#}");
    assert!(bool_at(&report, "/audit/after_reset"));
    assert!(bool_at(&report, "/sla/passed"));
    assert!(bool_at(&report, "/verdict/passed"));
    // rlt's own summary sees every request, and all of them as successes.
    assert_eq!(u64_at(&report, "/rlt/summary/iters/total"), 1500);
    assert_eq!(f64_at(&report, "/rlt/summary/success_ratio"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lets_a_balance_go_below_the_limit_is_caught() {
    let _machine = machine_shared().await;
    let server = spawn(Fault::IgnoresLimit).await;
    let run = load_test(&[
        &server.url(),
        "-c",
        "4",
        "-n",
        "2000",
        "--reset",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(1);
    let report = run.report();

    let inconsistencies = u64_at(&report, "/totals/inconsistencies");
    assert!(inconsistencies > 0, "{report:#}");
    assert_eq!(
        u64_at(&report, "/failures/by_reason/broken_invariant"),
        inconsistencies
    );
    let first = &report["inconsistencies"]["first"][0];
    assert_eq!(first["reason"], "broken_invariant");
    assert_eq!(first["status"], 200);
    let detail = first["detail"].as_str().expect("a detail");
    assert!(detail.contains("below -limite"), "{detail}");
    assert!(!bool_at(&report, "/verdict/passed"));
    // rlt's success ratio no longer hides them: they are not successes there either.
    assert!(f64_at(&report, "/rlt/summary/success_ratio") < 1.0);
    assert!(
        run.stderr.is_empty() || !run.stderr.contains("panicked"),
        "the tester must not crash: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_loses_writes_fails_the_audit_though_every_answer_looks_right() {
    let _machine = machine_shared().await;
    let server = spawn(Fault::LosesEveryNthWrite(10)).await;
    let run = load_test(&[
        &server.url(),
        "-c",
        "4",
        "-n",
        "1500",
        "--reset",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(1);
    let report = run.report();

    // Every single answer follows the rules; only the audit can see the problem.
    assert_eq!(u64_at(&report, "/totals/inconsistencies"), 0, "{report:#}");
    assert_eq!(u64_at(&report, "/totals/failures"), 0);
    assert!(!bool_at(&report, "/audit/passed"));
    let clients = report["audit"]["clients"]
        .as_array()
        .expect("per-client audit");
    assert!(
        clients
            .iter()
            .any(|c| c["verdict"] == "unexplained" && c["discrepancy"].as_i64() != Some(0)),
        "{report:#}"
    );
    let reasons = report["verdict"]["reasons"].to_string();
    assert!(reasons.contains("audit"), "{reasons}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_applied_but_unanswered_are_unknown_and_explain_the_audit_but_fail_the_sla() {
    let _machine = machine_shared().await;
    let server = spawn(Fault::AppliesThenDropsEveryNth(5)).await;
    let run = load_test(&[
        &server.url(),
        "-c",
        "2",
        "-n",
        "600",
        "--reset",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(1);
    let report = run.report();

    let dropped = u64_at(&report, "/failures/by_reason/transport_error");
    assert!(dropped > 50, "{report:#}");
    assert_eq!(u64_at(&report, "/totals/failures"), dropped);
    // No answer is not an inconsistency, but it is a failure everywhere, rlt's summary included.
    assert_eq!(u64_at(&report, "/totals/inconsistencies"), 0);
    let rlt_success = f64_at(&report, "/rlt/summary/success_ratio");
    assert!(rlt_success < 0.95, "rlt success ratio {rlt_success}");
    assert!(
        report["rlt"]["status"]["Error(-2)"]
            .as_u64()
            .is_some_and(|n| n == dropped),
        "{report:#}"
    );
    // The server applied those writes: the balances differ from the accepted amounts by exactly
    // a subset of the unknown ones, which the audit recognises.
    assert!(bool_at(&report, "/audit/passed"), "{report:#}");
    let clients = report["audit"]["clients"]
        .as_array()
        .expect("per-client audit");
    assert!(
        clients
            .iter()
            .any(|c| c["verdict"] == "explained_by_unknown"),
        "{report:#}"
    );
    assert!(!bool_at(&report, "/sla/passed"));
    assert_eq!(
        report["verdict"]["reasons"].as_array().map(Vec::len),
        Some(1),
        "only the SLA fails"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_keeps_its_timetable_and_reports_the_achieved_rate() {
    let _machine = machine_to_myself().await;
    let server = spawn(Fault::None).await;
    let run = load_test(&[
        &server.url(),
        "--arrival-rate",
        "200",
        "-d",
        "2s",
        "--reset",
        // Lax: a stall of the shared machine makes every request due during it late; the
        // timetable is what is tested.
        "--sla-latency",
        "5s",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(0);
    let report = run.report();

    assert_eq!(report["settings"]["mode"], "open_model");
    assert_eq!(u64_at(&report, "/rate/open_model/scheduled"), 400);
    assert_eq!(u64_at(&report, "/rate/started"), 400);
    assert_eq!(u64_at(&report, "/totals/requests"), 400);
    assert_eq!(f64_at(&report, "/rate/target_per_sec"), 200.0);
    // 400 started over the 2 s, or over a little more when the last starts ran late (a busy
    // machine): 170/s is the last one 350 ms late.
    let achieved = f64_at(&report, "/rate/achieved_per_sec");
    assert!((170.0..=210.0).contains(&achieved), "achieved {achieved}/s");
    assert_eq!(u64_at(&report, "/rate/open_model/not_started"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_that_the_closed_loop_hides_fails_the_open_model() {
    let _machine = machine_to_myself().await;
    // The same one-second stall, starting at the 60th request, against three runs at 100/s.
    let stall = Fault::StallsOnce {
        after: 60,
        stall: Duration::from_secs(1),
    };
    let servers = [spawn(stall).await, spawn(stall).await, spawn(stall).await];
    let (closed, open, capped) = tokio::join!(
        load_test(&[
            &servers[0].url(),
            "-c",
            "1",
            "-r",
            "100",
            "-d",
            "3s",
            "-o",
            "json"
        ]),
        load_test(&[
            &servers[1].url(),
            "--arrival-rate",
            "100",
            "-d",
            "3s",
            "-o",
            "json"
        ]),
        load_test(&[
            &servers[2].url(),
            "--arrival-rate",
            "100",
            "-d",
            "3s",
            "--max-in-flight",
            "1",
            "-o",
            "json",
        ]),
    );

    // Closed loop: the lone worker waits out the stall and simply sends less. One request is
    // slow, the rest are fast: the SLA passes and the stall is nearly invisible.
    closed.assert_exit(0);
    let closed = closed.report();
    assert!(
        f64_at(&closed, "/rate/achieved_per_sec") < 80.0,
        "{closed:#}"
    );
    assert!(bool_at(&closed, "/sla/passed"));

    // Open model: every request scheduled during the stall is sent on time and held by the
    // server, so the stall shows as ~100 slow requests.
    open.assert_exit(1);
    let open = open.report();
    assert_eq!(u64_at(&open, "/totals/failures"), 0, "slow, not failed");
    assert!(bool_at(&open, "/audit/passed"));
    assert!(!bool_at(&open, "/sla/passed"));
    assert!(slow_requests(&open) >= 50, "{open:#}");
    assert!(
        f64_at(&open, "/kinds/debit/latency_ms/p90") > 250.0,
        "{open:#}"
    );

    // Open model with room for a single request in flight: the requests due during the stall
    // cannot even start. They start late, are reported late, and their latency still counts from
    // their scheduled instant; measured from their actual start they would all look fast.
    capped.assert_exit(1);
    let capped = capped.report();
    assert!(
        u64_at(&capped, "/rate/open_model/in_flight_cap_waits") > 0,
        "{capped:#}"
    );
    assert!(
        u64_at(&capped, "/rate/open_model/late_starts") >= 50,
        "{capped:#}"
    );
    assert!(
        f64_at(&capped, "/rate/open_model/max_start_lag_ms") > 500.0,
        "{capped:#}"
    );
    assert!(slow_requests(&capped) >= 50, "{capped:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_the_series_and_on_the_page() {
    let _machine = machine_to_myself().await;
    // 100 requests/s for 5 s; the server stops answering for 2 s from its 150th request
    // (about 1.45 s in, the 5 start-balance reads included), so second 2 lies inside the stall.
    let server = spawn(Fault::StallsOnce {
        after: 150,
        stall: Duration::from_secs(2),
    })
    .await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let page = directory.path().join("stall.html");
    let run = load_test(&[
        &server.url(),
        "--arrival-rate",
        "100",
        "-d",
        "5s",
        "--timeout",
        "5s",
        "-o",
        "json",
        "--html",
        page.to_str().expect("a UTF-8 path"),
    ])
    .await;
    run.assert_exit(1);
    let report = run.report();
    let buckets = buckets(&report);
    let answered: u64 = buckets.iter().map(responses_in).sum();
    assert_eq!(answered, u64_at(&report, "/totals/requests"));

    // During the stall: no answer at all, yet the open model keeps sending on its timetable,
    // so the requests pile up in flight.
    let stalled = buckets
        .iter()
        .position(|b| responses_in(b) == 0)
        .unwrap_or_else(|| panic!("no second without an answer: {report:#}"));
    let stalled_second = &buckets[stalled];
    assert!(
        u64_at(stalled_second, "/started") >= 80,
        "{stalled_second:#}"
    );
    assert!(
        f64_at(stalled_second, "/in_flight") >= 50.0,
        "{stalled_second:#}"
    );
    // Before it, answers were fast; when it ends, the held requests all answer at once, the
    // oldest having waited the whole stall.
    assert!(stalled >= 1, "{report:#}");
    assert!(
        f64_at(&buckets[0], "/latency_ms/debit/p50") < 250.0,
        "{report:#}"
    );
    let release = &buckets[stalled + 1];
    assert!(responses_in(release) >= 150, "{release:#}");
    assert!(
        f64_at(release, "/latency_ms/debit/max") >= 1500.0,
        "{release:#}"
    );

    // The page shows the same: the status-200 line (green), the in-flight line (purple).
    check_page(&page, 6, &[[0x2e, 0x9e, 0x4f], [0x7b, 0x3f, 0xb5]]).await;
}

/// Requests that were not OK within the SLA latency.
fn slow_requests(report: &serde_json::Value) -> u64 {
    u64_at(report, "/totals/requests") - u64_at(report, "/sla/ok_within_threshold")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rinha_profile_passes_a_correct_server() {
    let _machine = machine_to_myself().await;
    let server = spawn(Fault::None).await;
    let run = load_test(&[
        &server.url(),
        "--profile",
        "rinha",
        "--time-scale",
        "0.02",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(0);
    let report = run.report();

    assert_eq!(report["settings"]["mode"], "rinha_profile");
    assert!(bool_at(&report, "/settings/reset"));
    assert!(bool_at(&report, "/validation_phase/passed"), "{report:#}");
    // Step 1: 25 debits + statement read + total, twice (54). Step 2 per client: statement and
    // its values (2), toma, devolve (2), statement and order (2), danada (1), four statements
    // and their values (8), five invalid bodies (5) = 20, five clients (100). Step 3: 404 (1).
    assert_eq!(u64_at(&report, "/validation_phase/checks"), 54 + 100 + 1);
    let scheduled = u64_at(&report, "/rate/open_model/scheduled");
    assert!(
        scheduled > 1000,
        "ramp 2.4 s + hold 2.4 s at 340/s: {scheduled}"
    );
    assert_eq!(u64_at(&report, "/rate/started"), scheduled);
    assert_eq!(f64_at(&report, "/rate/peak_target_per_sec"), 340.0);
    assert!(bool_at(&report, "/audit/passed"));
    assert!(bool_at(&report, "/verdict/passed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rinha_profile_fails_a_server_that_lists_transactions_oldest_first() {
    let _machine = machine_shared().await;
    let server = spawn(Fault::ListsOldestFirst).await;
    let run = load_test(&[
        &server.url(),
        "--profile",
        "rinha",
        "--time-scale",
        "0.001",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(1);
    let report = run.report();

    assert!(!bool_at(&report, "/validation_phase/passed"));
    let failures = report["validation_phase"]["failures"].to_string();
    assert!(failures.contains("devolve/d/1 then toma/c/1"), "{failures}");
    assert!(failures.contains("danada"), "{failures}");
    assert!(
        run.stderr.contains("validation phase FAILED"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_report_shows_rlts_summary_and_ours_and_o_writes_to_a_file() {
    let _machine = machine_to_myself().await;
    let server = spawn(Fault::None).await;
    let text = load_test(&[&server.url(), "-c", "2", "-n", "200", "--reset"]).await;
    text.assert_exit(0);
    for section in [
        "Summary",
        "Latencies",
        "Status Distribution",
        "Requests by kind",
        "Rate",
        "Failures",
        "Inconsistencies",
        "Audit",
        "Rinha score (SLA)",
        "Verdict",
    ] {
        assert!(
            text.stdout.contains(section),
            "no {section:?} section in:\n{}",
            text.stdout
        );
    }
    assert!(text.stdout.contains("PASSED"));

    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("report.json");
    let path_text = path.to_str().expect("a UTF-8 path");
    let to_file = load_test(&[
        &server.url(),
        "-c",
        "2",
        "-n",
        "200",
        "-o",
        "json",
        "-O",
        path_text,
    ])
    .await;
    to_file.assert_exit(0);
    assert!(
        to_file.stdout.is_empty(),
        "the report goes to the file only: {}",
        to_file.stdout
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the report file"))
            .expect("JSON");
    assert_eq!(u64_at(&report, "/totals/requests"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_report_to_a_pipe_has_no_colour_and_no_drawing_characters() {
    let _machine = machine_shared().await;
    let server = spawn(Fault::None).await;
    // No NO_COLOR: stdout being a pipe must be enough. The SLA's latency is made lax: this run
    // shares the machine, and what is tested is the report's characters, not the speed.
    let run =
        load_test_without_no_color(&[&server.url(), "-c", "2", "-n", "300", "--sla-latency", "1m"])
            .await;
    run.assert_exit(0);
    // rlt's sections, histogram included, are there, in plain text.
    for section in [
        "Summary",
        "Latencies",
        "Histogram",
        "Status Distribution",
        "Verdict",
    ] {
        assert!(
            run.stdout.contains(section),
            "no {section:?} in:\n{}",
            run.stdout
        );
    }
    assert!(
        !run.stdout.contains("\x1b["),
        "an escape sequence in:\n{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains('\x1b'),
        "an escape character in:\n{}",
        run.stdout
    );
    let drawing = |c: char| {
        matches!(c,
            '\u{2500}'..='\u{25FF}'       // box drawing, block elements, geometric shapes (■ ◧)
            | '\u{1F300}'..='\u{1FBFF}'   // emoji, symbols for legacy computing (🭵)
        )
    };
    let found: Vec<char> = run.stdout.chars().filter(|&c| drawing(c)).collect();
    assert!(found.is_empty(), "{found:?} in:\n{}", run.stdout);
    // The histogram is still drawn, in ASCII.
    assert!(
        run.stdout.lines().any(|line| line.contains("ms |#")),
        "no ASCII histogram bar in:\n{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_writes_the_json_report_to_a_file_and_the_text_report_to_stdout() {
    let _machine = machine_shared().await;
    let server = spawn(Fault::None).await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("report.json");
    let path_text = path.to_str().expect("a UTF-8 path");
    let run = load_test(&[
        &server.url(),
        "-c",
        "2",
        "-n",
        "200",
        "--reset",
        "--json",
        path_text,
        // Shares the machine; the files are tested, not the speed.
        "--sla-latency",
        "1m",
    ])
    .await;
    run.assert_exit(0);
    for section in ["Summary", "Requests by kind", "Audit", "Verdict", "PASSED"] {
        assert!(
            run.stdout.contains(section),
            "no {section:?} in:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stderr
            .contains(&format!("JSON report written to {path_text}")),
        "{}",
        run.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the JSON file"))
            .expect("JSON");
    // The same document as -o json: the same fields, the same run.
    assert_eq!(u64_at(&report, "/totals/requests"), 200);
    assert_eq!(u64_at(&report, "/rlt/summary/iters/total"), 200);
    assert!(bool_at(&report, "/verdict/passed"), "{report:#}");
    assert!(bool_at(&report, "/audit/passed"), "{report:#}");
    assert_eq!(report["settings"]["target"], server.url());
    assert!(report["series"]["buckets"].is_array());

    // An unwritable --json file makes the run one that could not be made.
    let run = load_test(&[
        &server.url(),
        "-n",
        "10",
        "--json",
        directory
            .path()
            .join("missing/report.json")
            .to_str()
            .expect("UTF-8"),
    ])
    .await;
    run.assert_exit(2);
    assert!(
        run.stderr.contains("cannot write the report"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_is_an_error_with_exit_status_2() {
    let _machine = machine_shared().await;
    // A port nothing listens on, which no other test is given.
    let address = format!("127.0.0.1:{}", crate::ports::free_port());
    let run = load_test(&[
        &format!("http://{address}"),
        "-n",
        "10",
        "--reset",
        "--timeout",
        "1s",
    ])
    .await;
    run.assert_exit(2);
    assert!(run.stderr.contains("POST /reset failed"), "{}", run.stderr);
}
