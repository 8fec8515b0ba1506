//! `GET /metrics` and the logs: the exposition is valid Prometheus text (checked by
//! `promtool check metrics`, the Prometheus project's own parser and linter), its counters move
//! by exactly the requests sent, its histogram counts every request, hostile paths make no
//! series; and the real binary's log lines are JSON objects or colourless text as asked.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Api, Samples, Xorshift, body, free_port, spawn_app, sqlite_url};

const TRANSACTIONS: &str = "/clientes/{id}/transacoes";
const STATEMENT: &str = "/clientes/{id}/extrato";
const REQUESTS: &str = "rinha_http_requests_total";
const DURATION: &str = "rinha_http_request_duration_seconds";

/// `promtool`, from Debian's `prometheus` package; `None` (the test is skipped) only outside CI.
pub fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if found {
        return Some("promtool");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool is not installed (apt-get install prometheus; .ci/run does it)"
    );
    eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus)");
    None
}

fn requests(metrics: &Samples, route: &str, status: &str) -> f64 {
    metrics.value(REQUESTS, &[("route", route), ("status", status)])
}

fn transactions(metrics: &Samples, kind: &str, outcome: &str) -> f64 {
    metrics.value(
        "rinha_transactions_total",
        &[("kind", kind), ("outcome", outcome)],
    )
}

fn durations_counted(metrics: &Samples, route: &str) -> f64 {
    metrics.value(&format!("{DURATION}_count"), &[("route", route)])
}

#[tokio::test]
async fn the_exposition_passes_promtool_check_metrics() {
    let Some(promtool) = promtool() else { return };
    let app = spawn_app().await;
    // Something in every kind of series: applied and refused transactions, a 404, a statement.
    app.transaction(1, &body(10, "c", "credit")).await;
    app.transaction(1, &body(1_000_000, "d", "refused")).await;
    app.statement(1).await;
    app.get("/no/such/route").await;
    let (status, text) = app.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("exposition written to promtool");
    let output = check.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics refused the exposition:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    for name in [
        REQUESTS,
        "rinha_transactions_total",
        "rinha_http_requests_in_flight",
        "rinha_lock_waits_total",
        "rinha_lock_wait_seconds",
        "rinha_write_batch_size",
        "rinha_wal_bytes",
        "rinha_checkpoint_duration_seconds",
        "process_start_time_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no {name} in the exposition"
        );
    }
    assert!(
        text.contains(&format!("# TYPE {DURATION} histogram")),
        "request durations are a histogram"
    );
    // Buckets from 100 µs to 1 s.
    for bound in ["0.0001", "0.001", "0.01", "0.1", "1", "+Inf"] {
        assert!(
            text.contains(&format!(
                "{DURATION}_bucket{{route=\"{TRANSACTIONS}\",le=\"{bound}\"}}"
            )),
            "no bucket le={bound}"
        );
    }
}

#[tokio::test]
async fn ten_transactions_move_the_transaction_counters_by_exactly_ten() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    // Client 2's limit is 80,000: 4 credits and 3 debits fit, then 3 debits are refused.
    let sent = [
        body(1_000, "c", "c1"),
        body(1_000, "c", "c2"),
        body(1_000, "c", "c3"),
        body(1_000, "c", "c4"),
        body(10_000, "d", "d1"),
        body(10_000, "d", "d2"),
        body(10_000, "d", "d3"),
        body(100_000, "d", "refused1"),
        body(100_000, "d", "refused2"),
        body(100_000, "d", "refused3"),
    ];
    for transaction in &sent {
        app.transaction(2, transaction).await;
    }
    let after = app.metrics().await;

    let moved =
        |kind, outcome| transactions(&after, kind, outcome) - transactions(&before, kind, outcome);
    assert_eq!(moved("credit", "applied"), 4.0);
    assert_eq!(moved("credit", "refused"), 0.0);
    assert_eq!(moved("debit", "applied"), 3.0);
    assert_eq!(moved("debit", "refused"), 3.0);
    assert_eq!(
        requests(&after, TRANSACTIONS, "200") - requests(&before, TRANSACTIONS, "200"),
        7.0
    );
    assert_eq!(
        requests(&after, TRANSACTIONS, "422") - requests(&before, TRANSACTIONS, "422"),
        3.0
    );
}

#[tokio::test]
async fn invalid_bodies_and_unknown_clients_count_as_requests_but_not_as_transactions() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    app.transaction_raw(1, "{not json", None).await;
    app.transaction(1, &body(0, "c", "zero")).await;
    app.transaction(6, &body(10, "c", "nobody")).await;
    let after = app.metrics().await;

    for (kind, outcome) in [
        ("credit", "applied"),
        ("credit", "refused"),
        ("debit", "applied"),
        ("debit", "refused"),
    ] {
        assert_eq!(
            transactions(&after, kind, outcome),
            transactions(&before, kind, outcome),
            "{kind} {outcome}"
        );
    }
    assert_eq!(requests(&after, TRANSACTIONS, "422"), 2.0);
    assert_eq!(requests(&after, TRANSACTIONS, "404"), 1.0);
}

#[tokio::test]
async fn the_duration_histogram_counts_every_request_by_route_pattern() {
    let app = spawn_app().await;
    let before = app.metrics().await;
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut posts, mut statements, mut unmatched) = (0, 0, 0);
    for _ in 0..60 {
        match random.below(3) {
            0 => {
                app.transaction(1 + random.below(5), &body(1, "c", "hist"))
                    .await;
                posts += 1;
            }
            1 => {
                app.statement(1 + random.below(5)).await;
                statements += 1;
            }
            _ => {
                app.get(&format!("/x/{}", random.below(1_000_000))).await;
                unmatched += 1;
            }
        }
    }
    // A known path with another method answers 405 and counts under its route.
    let wrong_method = app.request(reqwest::Method::DELETE, "/reset").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    let after = app.metrics().await;

    let counted = |route| durations_counted(&after, route) - durations_counted(&before, route);
    assert_eq!(counted(TRANSACTIONS), f64::from(posts));
    assert_eq!(counted(STATEMENT), f64::from(statements));
    assert_eq!(counted("unmatched"), f64::from(unmatched));
    assert_eq!(counted("/reset"), 1.0);
    assert_eq!(requests(&after, "/reset", "405"), 1.0);
    // Each histogram is whole: +Inf holds every request, buckets never decrease.
    for route in [TRANSACTIONS, STATEMENT, "unmatched"] {
        let buckets: Vec<f64> = after
            .0
            .iter()
            .filter(|(name, labels, _)| {
                name == &format!("{DURATION}_bucket")
                    && labels.iter().any(|(k, v)| k == "route" && v == route)
            })
            .map(|(_, _, value)| *value)
            .collect();
        assert_eq!(buckets.len(), 14, "{route}: 13 bounds and +Inf");
        assert!(buckets.windows(2).all(|pair| pair[0] <= pair[1]), "{route}");
        assert_eq!(
            buckets.last().copied(),
            Some(durations_counted(&after, route))
        );
    }
}

#[tokio::test]
async fn hostile_paths_create_no_series() {
    let app = spawn_app().await;
    app.get("/warm-up").await;
    app.metrics().await;
    let before = app.metrics().await;
    let mut random = Xorshift(42);
    for i in 0..100 {
        let path = match i % 4 {
            0 => format!("/clientes/{}/transacoes", random.below(u64::MAX)),
            1 => format!("/clientes/{}/extrato/x", random.below(1_000)),
            2 => format!("/{}", "a".repeat(1 + random.below(200) as usize)),
            _ => format!("/metrics/{i}?route=evil"),
        };
        app.get(&path).await;
    }
    let after = app.metrics().await;

    let series = |samples: &Samples| samples.0.len();
    assert_eq!(
        series(&after),
        series(&before) + 1,
        "only the 405 series of the transactions route is new"
    );
    let routes = after.label_values(REQUESTS, "route");
    let known = [
        "/clientes/{id}/transacoes",
        "/clientes/{id}/extrato",
        "/metrics",
        "unmatched",
    ];
    assert!(
        routes.iter().all(|route| known.contains(&route.as_str())),
        "route labels are patterns: {routes:?}"
    );
}

/// Runs the real binary with `env` (and `RUST_LOG=info`, so actix's own start-up lines come
/// too), stderr to a pipe, until it has logged that it listens; returns the lines up to that one.
fn start_up_log(env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_rinha-api"));
    command
        .env_remove("LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", free_port().to_string())
        .env("DATABASE_URL", sqlite_url(&dir.path().join("rinha.db")))
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("rinha-api starts");
    // The start is logged at once (or the process exits, closing the pipe).
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("a log line");
        let done = line.contains("listening on");
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().ok();
    child.wait().ok();
    assert!(
        lines
            .last()
            .is_some_and(|line| line.contains("listening on")),
        "never logged that it listens: {lines:?}"
    );
    lines
}

#[test]
fn log_format_json_makes_each_log_line_a_json_object() {
    let lines = start_up_log(&[("LOG_FORMAT", "json")]);
    assert!(lines.len() >= 2, "actix's lines and ours: {lines:?}");
    for line in &lines {
        let object: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(object[field].is_string(), "no {field} in {line}");
        }
        assert_eq!(object["level"], "INFO");
    }
    let last: Value = serde_json::from_str(&lines[lines.len() - 1]).expect("JSON");
    assert_eq!(last["target"], "rinha_api");
    // Fields sit at the top level beside the message, not nested under "fields".
    assert!(last.get("fields").is_none(), "{last}");
}

#[test]
fn logs_to_a_pipe_are_json_by_default_and_text_carries_no_colour_codes() {
    for line in start_up_log(&[]) {
        assert!(
            serde_json::from_str::<Value>(&line).is_ok_and(|value| value.is_object()),
            "not JSON by default on a pipe: {line}"
        );
    }
    for line in start_up_log(&[("LOG_FORMAT", "text")]) {
        assert!(line.contains("INFO"), "{line}");
        assert!(
            !line.contains('\u{1b}'),
            "ANSI escape in a piped log: {line:?}"
        );
    }
}

#[test]
fn an_unknown_log_format_stops_the_process_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_rinha-api"))
        .env("LOG_FORMAT", "xml")
        .env("API_PORT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("rinha-api runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LOG_FORMAT"), "{stderr}");
}
