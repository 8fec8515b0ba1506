//! Running the built binary and reading its report.

use std::{process::Stdio, time::Duration};

use serde_json::Value;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Runs of the binary share a 2-core machine. Tests whose verdict depends on latency (the SLA)
/// take this lock exclusively so that no other run steals their CPU; the others share it.
static MACHINE: RwLock<()> = RwLock::const_new(());

/// For a test whose assertions depend on latency: no other run of the binary meanwhile.
pub async fn machine_to_myself() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// For a test whose assertions do not depend on latency: may run beside other such tests.
pub async fn machine_shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// The exit status (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON report on stdout (the run must have used `-o json`).
    pub fn report(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not a JSON report ({error})\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit status, showing the output when it differs.
    pub fn assert_exit(&self, expected: i32) {
        assert_eq!(
            self.code,
            Some(expected),
            "unexpected exit status\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `load-test` with `args`, without a TUI and with `NO_COLOR=1`, and waits for it (at most
/// a minute). The arguments are copied first, so runs can be joined without keeping them alive.
pub fn load_test(args: &[&str]) -> impl Future<Output = Run> + use<> {
    let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
    run(args, Colour::NoColor)
}

/// As [`load_test`], but with `NO_COLOR` removed from the environment: only the pipe on stdout
/// tells the binary that no terminal reads it.
pub fn load_test_without_no_color(args: &[&str]) -> impl Future<Output = Run> + use<> {
    let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
    run(args, Colour::Unset)
}

/// What the binary's environment says about colour.
enum Colour {
    /// `NO_COLOR=1`.
    NoColor,
    /// No `NO_COLOR` at all.
    Unset,
}

async fn run(args: Vec<String>, colour: Colour) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_load-test"));
    match colour {
        Colour::NoColor => command.env("NO_COLOR", "1"),
        Colour::Unset => command.env_remove("NO_COLOR"),
    };
    let child = command
        .args(&args)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the load-test binary");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("load-test finished within a minute")
        .expect("load-test output");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `report[path...]` as an u64, failing clearly when absent.
pub fn u64_at(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not an unsigned integer in {report:#}"))
}

/// `report[path...]` as an f64, failing clearly when absent.
pub fn f64_at(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {report:#}"))
}

/// `report[path...]` as a bool, failing clearly when absent.
pub fn bool_at(report: &Value, pointer: &str) -> bool {
    report
        .pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or_else(|| panic!("{pointer} is not a boolean in {report:#}"))
}

/// The report's one-second buckets (`series.buckets`).
pub fn buckets(report: &Value) -> &[Value] {
    report
        .pointer("/series/buckets")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no series.buckets in {report:#}"))
}

/// `bucket[field]` summed over the buckets.
pub fn sum_over(buckets: &[Value], field: &str) -> u64 {
    buckets.iter().map(|bucket| u64_at(bucket, field)).sum()
}

/// Responses in one bucket, over every status.
pub fn responses_in(bucket: &Value) -> u64 {
    bucket["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("no responses in {bucket:#}"))
        .values()
        .map(|count| count.as_u64().expect("a count"))
        .sum()
}
