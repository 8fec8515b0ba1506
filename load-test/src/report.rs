//! The report model: one [`Report`], built once from a run's results, that the JSON document
//! (here), the text report ([`crate::text`]) and the `--html` page ([`crate::html`]) all render.
//!
//! The JSON document is the machine interface (CI reads it), so the model is one struct with
//! stable field names, serialized as it is; rlt's own JSON report is embedded whole under `rlt`
//! rather than printed as a second document. Every fact is computed here, in [`Report::build`],
//! and every phrase that names a fact (a verdict word, a rate, a count with its share, a failure,
//! an audit verdict, a table's columns) is worded here, below the model, as methods of the
//! model's types (those it takes from `audit`, `stats` and `runner` included), so the text and
//! the page lay out the same words and cannot disagree. The verdict — pass or fail, with every
//! reason — is computed here once and used for the report and the exit status.

use std::{collections::BTreeMap, io::Write, time::Duration};

use hdrhistogram::Histogram;
use rlt::{
    BenchReport,
    baseline::{Comparison, Verdict as BaselineVerdict},
    reporter::{BenchReporter, JsonReporter},
};
use serde::Serialize;

use crate::{
    audit::{AuditReport, ClientAudit, ClientVerdict},
    mix::RequestKind,
    profile::ValidationPhase,
    runner::{LATE_START, Pacing, per_second},
    series::{Series, Target},
    stats::{FailureSample, Recorder},
    transport::TransportSnapshot,
};

/// How the load was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Workers each waiting for their answer (rlt's model; `-r` caps the start rate).
    ClosedLoop,
    /// Requests started on a timetable (`--arrival-rate`).
    OpenModel,
    /// The official test: validation phase, then the open-model ramp (`--profile rinha`).
    RinhaProfile,
}

/// The SLA the run is judged against.
#[derive(Debug, Clone, Copy)]
pub struct SlaTarget {
    /// A response counts only if OK and faster than this.
    pub latency: Duration,
    /// The share of responses (0–1) that must count.
    pub required_share: f64,
}

/// Settings echoed in the report so that a result can be reproduced.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// The API's base URL.
    pub target: String,
    /// How the load was generated.
    pub mode: Mode,
    /// Whether connections were reused.
    pub keepalive: bool,
    /// The protocol asked for: "HTTP/1.1" or "HTTP/2" (`--http2`).
    pub protocol: &'static str,
    /// Whether the target is `https://`.
    pub tls: bool,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: f64,
    /// Whether `/reset` was posted before the run.
    pub reset: bool,
}

/// The complete report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// How the run was set up.
    pub settings: RunSettings,
    /// Seconds from the first measured request to the last answer (rlt's elapsed time).
    pub duration_secs: f64,
    /// Counts over all kinds.
    pub totals: Totals,
    /// Target versus achieved rate.
    pub rate: Pacing,
    /// Connections opened and the protocol of the answers, during the load.
    pub connections: Connections,
    /// Per-kind numbers, keyed "debit", "credit", "statement".
    pub kinds: BTreeMap<&'static str, KindReport>,
    /// Requests that were not OK, by reason.
    pub failures: Failures,
    /// Answers that broke the contract.
    pub inconsistencies: Inconsistencies,
    /// The official validation phase (`--profile rinha` only).
    pub validation_phase: Option<ValidationPhaseReport>,
    /// Final balances against accepted amounts.
    pub audit: AuditReport,
    /// The Rinha score: share of responses OK and under the latency threshold.
    pub sla: Sla,
    /// Pass or fail, and why.
    pub verdict: Verdict,
    /// The load over time, in one-second buckets (also drawn by `--html`).
    pub series: Series,
    /// rlt's own JSON report (summary, latency histogram, status distribution, baseline comparison).
    pub rlt: serde_json::Value,
}

/// Counts over all kinds.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Requests completed (measured, warm-up excluded).
    pub requests: u64,
    /// OK: expected status and valid body.
    pub ok: u64,
    /// Not OK, for any reason.
    pub failures: u64,
    /// Of the failures, answers that broke the contract.
    pub inconsistencies: u64,
    /// `ok / requests`.
    pub ok_ratio: f64,
    /// Answers per second over `duration_secs`.
    pub responses_per_sec: f64,
}

/// Connections opened and the protocol of the answers during the load (its warm-up included;
/// not the validation phase's nor the audit's requests).
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    /// Answers by the HTTP version they came in on ("HTTP/1.1", "HTTP/2").
    pub answers_by_protocol: BTreeMap<String, u64>,
    /// Connections the client opened; over TLS each is one handshake (a full one with
    /// `--no-keepalive`, which resumes no session).
    pub opened: u64,
    /// `opened` per second of `duration_secs`: over TLS, handshakes per second.
    pub opened_per_sec: f64,
    /// Answers per connection opened; `None` when none was, every answer having come on a
    /// connection already open when the load began (e.g. the validation phase's).
    pub requests_per_connection: Option<f64>,
}

/// Numbers for one request kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// Requests completed.
    pub count: u64,
    /// Of those, OK.
    pub ok: u64,
    /// Of those, not OK.
    pub failures: u64,
    /// Count per HTTP status, plus "timeout" and "transport_error".
    pub statuses: BTreeMap<String, u64>,
    /// Latency percentiles in milliseconds; `None` when no request of this kind completed.
    pub latency_ms: Option<Percentiles>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        })
    }
}

/// Requests that were not OK.
#[derive(Debug, Clone, Serialize)]
pub struct Failures {
    /// How many.
    pub total: u64,
    /// Count per reason: timeout, transport_error, unexpected_status, invalid_body, broken_invariant.
    pub by_reason: BTreeMap<&'static str, u64>,
    /// The first few timeouts and transport errors.
    pub first: Vec<FailureSample>,
}

/// Answers that broke the contract.
#[derive(Debug, Clone, Serialize)]
pub struct Inconsistencies {
    /// How many.
    pub total: u64,
    /// The first few, with the rule broken and the values seen.
    pub first: Vec<FailureSample>,
}

/// The validation phase in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationPhaseReport {
    /// True when every check passed.
    pub passed: bool,
    /// Checks made.
    pub checks: u64,
    /// Every failed check.
    pub failures: Vec<String>,
}

/// The Rinha score.
#[derive(Debug, Clone, Serialize)]
pub struct Sla {
    /// The latency a response must beat, in milliseconds.
    pub latency_threshold_ms: f64,
    /// The share required (0–1); the challenge's is 0.98.
    pub required_share: f64,
    /// Responses that were OK and faster than the threshold.
    pub ok_within_threshold: u64,
    /// `ok_within_threshold / requests` (0 when there were no requests).
    pub share: f64,
    /// `share >= required_share`.
    pub passed: bool,
}

/// Pass or fail.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// True when no check failed.
    pub passed: bool,
    /// Every reason the run failed.
    pub reasons: Vec<String>,
}

/// Everything the report is built from.
pub struct Inputs<'a> {
    /// Settings to echo.
    pub settings: RunSettings,
    /// rlt's report.
    pub bench: &'a BenchReport,
    /// Baseline comparison, if one was asked for.
    pub comparison: Option<&'a Comparison>,
    /// Whether a regression against the baseline fails the run.
    pub fail_on_regression: bool,
    /// Our numbers.
    pub recorder: &'a Recorder,
    /// Rate kept.
    pub pacing: Pacing,
    /// Connections and protocols over the load.
    pub transport: TransportSnapshot,
    /// The validation phase, if run.
    pub validation: Option<&'a ValidationPhase>,
    /// The audit.
    pub audit: AuditReport,
    /// The SLA to judge.
    pub sla: SlaTarget,
}

impl std::fmt::Debug for Inputs<'_> {
    // rlt's `BenchReport` has no `Debug`; show the rest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("settings", &self.settings)
            .field("recorder", &self.recorder)
            .field("pacing", &self.pacing)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl Report {
    /// Builds the report and its verdict.
    pub fn build(inputs: Inputs<'_>) -> Result<Self, crate::error::Error> {
        let Inputs {
            settings,
            bench,
            comparison,
            fail_on_regression,
            recorder,
            pacing,
            transport,
            validation,
            audit,
            sla,
        } = inputs;
        let duration_secs = bench.elapsed.as_secs_f64();
        let requests = recorder.total();
        let ratio = |part: u64| {
            if requests == 0 {
                0.0
            } else {
                part as f64 / requests as f64
            }
        };

        let kinds = RequestKind::ALL
            .iter()
            .map(|&kind| {
                let stats = recorder.kind(kind);
                let report = KindReport {
                    count: stats.count,
                    ok: stats.ok,
                    failures: stats.count - stats.ok,
                    statuses: stats
                        .statuses
                        .iter()
                        .map(|(status, count)| (status.to_string(), *count))
                        .collect(),
                    latency_ms: Percentiles::of(&stats.latency_us),
                };
                (kind.name(), report)
            })
            .collect();

        let share = ratio(recorder.ok_within_sla());
        let sla = Sla {
            latency_threshold_ms: sla.latency.as_secs_f64() * 1000.0,
            required_share: sla.required_share,
            ok_within_threshold: recorder.ok_within_sla(),
            share,
            passed: requests > 0 && share >= sla.required_share,
        };

        let validation_phase = validation.map(|phase| ValidationPhaseReport {
            passed: phase.passed(),
            checks: phase.checks,
            failures: phase.failures.clone(),
        });

        let mut reasons = Vec::new();
        if let Some(phase) = &validation_phase
            && !phase.passed
        {
            reasons.push(format!(
                "validation phase: {} of {} checks failed",
                phase.failures.len(),
                phase.checks
            ));
        }
        if recorder.inconsistencies() > 0 {
            reasons.push(format!(
                "{} answers broke the contract",
                recorder.inconsistencies()
            ));
        }
        if !audit.passed {
            reasons.push("audit: balances do not match the accepted transactions".to_owned());
        }
        if requests == 0 {
            reasons.push("no request completed".to_owned());
        } else if !sla.passed {
            reasons.push(format!(
                "SLA: {:.2}% of requests were OK and under {}, {:.2}% required",
                share * 100.0,
                humantime::format_duration(Duration::from_secs_f64(
                    sla.latency_threshold_ms / 1000.0
                )),
                sla.required_share * 100.0
            ));
        }
        if fail_on_regression
            && let Some(comparison) = comparison
            && matches!(
                comparison.verdict,
                BaselineVerdict::Regressed | BaselineVerdict::Mixed
            )
        {
            reasons.push(format!(
                "baseline {}: performance {}",
                comparison.baseline_name, comparison.verdict
            ));
        }

        let target = match (&pacing.open_model, pacing.target_per_sec) {
            (Some(_), _) => Target::Scheduled(&pacing.scheduled_per_second),
            (None, Some(per_sec)) => Target::Constant {
                per_sec,
                until: Duration::from_secs_f64(pacing.sending_secs),
            },
            (None, None) => Target::None,
        };
        let series = recorder.series().series(&target);

        let mut rlt_json = Vec::new();
        JsonReporter.print(&mut rlt_json, bench, comparison)?;

        Ok(Self {
            settings,
            duration_secs,
            totals: Totals {
                requests,
                ok: recorder.ok(),
                failures: recorder.failures(),
                inconsistencies: recorder.inconsistencies(),
                ok_ratio: ratio(recorder.ok()),
                responses_per_sec: per_second(requests, duration_secs),
            },
            rate: pacing,
            connections: Connections {
                answers_by_protocol: transport.answers_by_protocol(),
                opened: transport.connections,
                opened_per_sec: per_second(transport.connections, duration_secs),
                requests_per_connection: (transport.connections > 0)
                    .then(|| transport.answers() as f64 / transport.connections as f64),
            },
            kinds,
            failures: Failures {
                total: recorder.failures(),
                by_reason: recorder.failures_by_reason().clone(),
                first: recorder.failure_samples().to_vec(),
            },
            inconsistencies: Inconsistencies {
                total: recorder.inconsistencies(),
                first: recorder.inconsistency_samples().to_vec(),
            },
            validation_phase,
            audit,
            sla,
            verdict: Verdict {
                passed: reasons.is_empty(),
                reasons,
            },
            series,
            rlt: serde_json::from_slice(&rlt_json)?,
        })
    }

    /// Writes the report as one pretty-printed JSON document.
    pub fn write_json(&self, w: &mut dyn Write) -> Result<(), crate::error::Error> {
        serde_json::to_writer_pretty(&mut *w, self)?;
        writeln!(w)?;
        Ok(())
    }
}

/// "PASSED" or "FAILED": the word for the result of any check.
pub fn pass_fail(passed: bool) -> &'static str {
    if passed { "PASSED" } else { "FAILED" }
}

/// What a run with no target rate is.
pub const NO_TARGET: &str = "closed loop at full speed";

/// Said of a run the user stopped before its end.
pub const STOPPED_EARLY: &str =
    "stopped early by the user (q or Ctrl-C): the numbers cover the part that ran";

/// Columns of the per-kind table (latencies in milliseconds).
pub const KIND_COLUMNS: [&str; 10] = [
    "kind", "count", "ok", "failed", "p50", "p90", "p99", "p99.9", "max", "statuses",
];

/// Columns of the per-client audit table.
pub const AUDIT_COLUMNS: [&str; 8] = [
    "client",
    "start",
    "end",
    "accepted Δ",
    "actual Δ",
    "discrepancy",
    "unknown",
    "verdict",
];

/// Section titles, shared by the text report and the page.
pub mod titles {
    /// The per-kind table.
    pub const KINDS: &str = "Requests by kind (latency in ms)";
    /// Target and achieved rate.
    pub const RATE: &str = "Rate";
    /// Connections and protocols.
    pub const CONNECTIONS: &str = "Connections";
    /// Requests that were not OK.
    pub const FAILURES: &str = "Failures";
    /// Answers that broke the contract.
    pub const INCONSISTENCIES: &str = "Inconsistencies";
    /// The official validation phase.
    pub const VALIDATION: &str = "Validation phase";
    /// The audit.
    pub const AUDIT: &str = "Audit (balances against accepted transactions)";
    /// The SLA.
    pub const SLA: &str = "Rinha score (SLA)";
    /// Pass or fail.
    pub const VERDICT: &str = "Verdict";
}

impl Mode {
    /// How the report names the mode.
    pub fn label(self) -> &'static str {
        match self {
            Mode::ClosedLoop => "closed loop",
            Mode::OpenModel => "open model (--arrival-rate)",
            Mode::RinhaProfile => "--profile rinha (validation phase, then the open-model ramp)",
        }
    }
}

impl KindReport {
    /// The p50, p90, p99, p99.9 and max cells, in milliseconds ("-" when nothing completed).
    pub fn latency_cells(&self) -> [String; 5] {
        match self.latency_ms {
            Some(p) => [p.p50, p.p90, p.p99, p.p99_9, p.max].map(|ms| format!("{ms:.2}")),
            None => std::array::from_fn(|_| "-".to_owned()),
        }
    }

    /// The status counts, as "200: 194, 422: 51".
    pub fn statuses_summary(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        statuses.join(", ")
    }

    /// The kind's row of the per-kind table, one cell per column of [`KIND_COLUMNS`].
    pub fn cells(&self, name: &str) -> [String; 10] {
        let [p50, p90, p99, p99_9, max] = self.latency_cells();
        [
            name.to_owned(),
            self.count.to_string(),
            self.ok.to_string(),
            self.failures.to_string(),
            p50,
            p90,
            p99,
            p99_9,
            max,
            self.statuses_summary(),
        ]
    }
}

impl ClientVerdict {
    /// How the report names the verdict; an alarming one is in capitals.
    pub fn label(self) -> &'static str {
        match self {
            ClientVerdict::Exact => "exact",
            ClientVerdict::ExplainedByUnknown => "explained by unknown writes",
            ClientVerdict::Unexplained => "UNEXPLAINED",
            ClientVerdict::Unreadable => "UNREADABLE",
        }
    }

    /// Whether the verdict fails the audit.
    pub fn is_alarming(self) -> bool {
        matches!(self, ClientVerdict::Unexplained | ClientVerdict::Unreadable)
    }
}

impl ClientAudit {
    /// The client's row of the audit table, one cell per column of [`AUDIT_COLUMNS`] but the
    /// verdict's (see [`ClientVerdict::label`]); "?" for a balance that was not read.
    pub fn cells(&self) -> [String; 7] {
        let show = |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        [
            self.client.to_string(),
            show(self.start_saldo),
            show(self.end_saldo),
            self.accepted_delta.to_string(),
            show(self.actual_delta),
            show(self.discrepancy),
            self.unknown.to_string(),
        ]
    }
}

impl FailureSample {
    /// The failure in one line: "debit of 4 on client 4: status 200, broken_invariant: ...".
    pub fn describe(&self) -> String {
        let amount = match self.kind {
            RequestKind::Statement => String::new(),
            _ => format!(" of {}", self.signed_amount.abs()),
        };
        let status = self
            .status
            .map(|status| format!("status {status}, "))
            .unwrap_or_default();
        format!(
            "{}{amount} on client {}: {status}{}: {}",
            self.kind.name(),
            self.client,
            self.reason,
            self.detail
        )
    }
}

/// The facts of the report as words.
impl Report {
    /// The kinds in report order (debit, credit, statement), not the map's alphabetical one.
    pub fn kinds_in_order(&self) -> impl Iterator<Item = (&'static str, &KindReport)> {
        RequestKind::ALL.iter().filter_map(|kind| {
            self.kinds
                .get(kind.name())
                .map(|report| (kind.name(), report))
        })
    }

    /// The target rate: "340.00/s", or "100.00/s on average (peak 340.00/s)"; `None` for a
    /// closed loop at full speed.
    pub fn target_rate(&self) -> Option<String> {
        match (self.rate.target_per_sec, self.rate.peak_target_per_sec) {
            (Some(target), Some(peak)) if (target - peak).abs() > 1e-9 => {
                Some(format!("{target:.2}/s on average (peak {peak:.2}/s)"))
            }
            (Some(target), _) => Some(format!("{target:.2}/s")),
            (None, _) => None,
        }
    }

    /// The achieved rate: "110.28/s".
    pub fn achieved_rate(&self) -> String {
        format!("{:.2}/s", self.rate.achieved_per_sec)
    }

    /// "397 requests started in 3.60s".
    pub fn started(&self) -> String {
        format!(
            "{} requests started in {:.2}s",
            self.rate.started, self.rate.sending_secs
        )
    }

    /// "HTTP/2 over TLS, connections reused (keep-alive)".
    pub fn transport_summary(&self) -> String {
        let settings = &self.settings;
        format!(
            "{} {}, {}",
            settings.protocol,
            if settings.tls {
                "over TLS"
            } else {
                "in plain text"
            },
            if settings.keepalive {
                "connections reused (keep-alive)"
            } else if settings.tls {
                "a new connection and a full TLS handshake per request"
            } else {
                "a new connection per request"
            }
        )
    }

    /// "answers by protocol: HTTP/2 398".
    pub fn protocols_summary(&self) -> String {
        let counts: Vec<String> = self
            .connections
            .answers_by_protocol
            .iter()
            .map(|(protocol, count)| format!("{protocol} {count}"))
            .collect();
        if counts.is_empty() {
            "answers by protocol: none".to_owned()
        } else {
            format!("answers by protocol: {}", counts.join(", "))
        }
    }

    /// "2 connections opened, 0.50/s (TLS handshakes), 199.00 requests per connection".
    pub fn connections_summary(&self) -> String {
        let connections = &self.connections;
        let per_connection = match connections.requests_per_connection {
            Some(requests) => format!("{requests:.2} requests per connection"),
            None => "every answer on a connection open before the load".to_owned(),
        };
        format!(
            "{} connections opened, {:.2}/s{}, {per_connection}",
            connections.opened,
            connections.opened_per_sec,
            if self.settings.tls {
                " (TLS handshakes)"
            } else {
                ""
            },
        )
    }

    /// How the open model kept its timetable; `None` for a closed loop.
    pub fn open_model_summary(&self) -> Option<String> {
        self.rate.open_model.as_ref().map(|open| {
            format!(
                "{} scheduled, {} not started, {} started more than {}ms late (max lag {:.2}ms), \
                 {} waits for the in-flight cap, peak {} in flight (cap {})",
                open.scheduled,
                open.not_started,
                open.late_starts,
                LATE_START.as_millis(),
                open.max_start_lag_ms,
                open.in_flight_cap_waits,
                open.peak_in_flight,
                open.max_in_flight
            )
        })
    }

    /// Why a closed loop that sent less than 99% of its target rate cannot be trusted on
    /// latency; `None` when it kept its target, or had none, or for the open model.
    pub fn closed_loop_shortfall(&self) -> Option<&'static str> {
        let rate = &self.rate;
        let short = rate.open_model.is_none()
            && rate
                .target_per_sec
                .is_some_and(|target| rate.achieved_per_sec < target * 0.99);
        short.then_some(
            "a closed loop sends less when the server is slow, and those missing requests never \
             show in the latencies; use --arrival-rate for an open model",
        )
    }

    /// "26 of 397 requests (6.55%)".
    pub fn failure_count(&self) -> String {
        let percent = if self.totals.requests == 0 {
            0.0
        } else {
            self.failures.total as f64 * 100.0 / self.totals.requests as f64
        };
        format!(
            "{} of {} requests ({percent:.2}%)",
            self.failures.total, self.totals.requests
        )
    }

    /// "PASSED: 155 checks, 0 failed"; `None` without a validation phase.
    pub fn validation_summary(&self) -> Option<String> {
        self.validation_phase.as_ref().map(|phase| {
            format!(
                "{}: {} checks, {} failed",
                pass_fail(phase.passed),
                phase.checks,
                phase.failures.len()
            )
        })
    }

    /// "PASSED (start state: after /reset)".
    pub fn audit_summary(&self) -> String {
        format!(
            "{} (start state: {})",
            pass_fail(self.audit.passed),
            if self.audit.after_reset {
                "after /reset"
            } else {
                "read before the load"
            }
        )
    }

    /// "99.50% of 397 requests were OK and under 250ms (required 98.00%): PASSED".
    pub fn sla_summary(&self) -> String {
        format!(
            "{:.2}% of {} requests were OK and under {:.0}ms (required {:.2}%): {}",
            self.sla.share * 100.0,
            self.totals.requests,
            self.sla.latency_threshold_ms,
            self.sla.required_share * 100.0,
            pass_fail(self.sla.passed)
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        audit::ClientAudit, runner::OpenModelPacing, series::Series, stats::FailureSample,
    };

    /// A failed open-model run with one of everything: a timeout, an inconsistency, a failed
    /// validation check, an unexplained client. No series: nothing to chart.
    pub(crate) fn sample() -> Report {
        let sample = |reason, status, detail: &str| FailureSample {
            kind: RequestKind::Debit,
            client: 3,
            signed_amount: -8,
            reason,
            status,
            detail: detail.to_owned(),
        };
        let kind = |count, ok| KindReport {
            count,
            ok,
            failures: count - ok,
            statuses: BTreeMap::from([("200".to_owned(), ok), ("timeout".to_owned(), count - ok)]),
            latency_ms: (count > 0).then_some(Percentiles {
                p50: 1.5,
                p90: 2.0,
                p99: 3.25,
                p99_9: 4.0,
                max: 5.0,
                mean: 1.75,
            }),
        };
        Report {
            settings: RunSettings {
                target: "http://localhost:9999".into(),
                mode: Mode::RinhaProfile,
                keepalive: true,
                protocol: "HTTP/2",
                tls: true,
                timeout_ms: 2000.0,
                reset: true,
            },
            duration_secs: 4.0,
            totals: Totals {
                requests: 400,
                ok: 398,
                failures: 2,
                inconsistencies: 1,
                ok_ratio: 0.995,
                responses_per_sec: 100.0,
            },
            rate: Pacing {
                target_per_sec: Some(100.0),
                peak_target_per_sec: Some(340.0),
                started: 400,
                sending_secs: 4.0,
                achieved_per_sec: 100.0,
                stopped_early: true,
                open_model: Some(OpenModelPacing {
                    scheduled: 400,
                    not_started: 0,
                    late_starts: 1,
                    max_start_lag_ms: 12.5,
                    in_flight_cap_waits: 0,
                    peak_in_flight: 7,
                    max_in_flight: 1000,
                }),
                scheduled_per_second: Vec::new(),
            },
            connections: Connections {
                answers_by_protocol: BTreeMap::from([("HTTP/2".to_owned(), 398)]),
                opened: 2,
                opened_per_sec: 0.5,
                requests_per_connection: Some(199.0),
            },
            kinds: BTreeMap::from([
                ("debit", kind(300, 298)),
                ("credit", kind(100, 100)),
                ("statement", kind(0, 0)),
            ]),
            failures: Failures {
                total: 2,
                by_reason: BTreeMap::from([("broken_invariant", 1), ("timeout", 1)]),
                first: vec![sample("timeout", None, "timed out")],
            },
            inconsistencies: Inconsistencies {
                total: 1,
                first: vec![sample("broken_invariant", Some(200), "saldo <-100001>")],
            },
            validation_phase: Some(ValidationPhaseReport {
                passed: false,
                checks: 155,
                failures: vec!["step 2: danada".into()],
            }),
            audit: AuditReport {
                passed: false,
                after_reset: true,
                problems: Vec::new(),
                clients: vec![ClientAudit {
                    client: 3,
                    start_saldo: Some(0),
                    end_saldo: None,
                    accepted_delta: -8,
                    accepted: 1,
                    refused: 0,
                    actual_delta: None,
                    discrepancy: None,
                    unknown: 1,
                    verdict: ClientVerdict::Unreadable,
                }],
            },
            sla: Sla {
                latency_threshold_ms: 250.0,
                required_share: 0.98,
                ok_within_threshold: 398,
                share: 0.995,
                passed: true,
            },
            verdict: Verdict {
                passed: false,
                reasons: vec!["audit: balances do not match the accepted transactions".into()],
            },
            series: Series {
                bucket_secs: 1,
                buckets: Vec::new(),
            },
            rlt: serde_json::Value::Null,
        }
    }

    #[test]
    fn facts_are_worded_once_here() {
        let mut report = sample();
        assert_eq!(
            report.target_rate().as_deref(),
            Some("100.00/s on average (peak 340.00/s)")
        );
        assert_eq!(report.started(), "400 requests started in 4.00s");
        assert_eq!(
            report.transport_summary(),
            "HTTP/2 over TLS, connections reused (keep-alive)"
        );
        assert_eq!(
            report.protocols_summary(),
            "answers by protocol: HTTP/2 398"
        );
        assert_eq!(
            report.connections_summary(),
            "2 connections opened, 0.50/s (TLS handshakes), 199.00 requests per connection"
        );
        let mut reused = report.clone();
        reused.connections.opened = 0;
        reused.connections.requests_per_connection = None;
        reused.settings.tls = false;
        assert_eq!(
            reused.connections_summary(),
            "0 connections opened, 0.50/s, every answer on a connection open before the load"
        );
        assert_eq!(report.failure_count(), "2 of 400 requests (0.50%)");
        assert_eq!(
            report.validation_summary().as_deref(),
            Some("FAILED: 155 checks, 1 failed")
        );
        assert_eq!(report.audit_summary(), "FAILED (start state: after /reset)");
        assert_eq!(
            report.sla_summary(),
            "99.50% of 400 requests were OK and under 250ms (required 98.00%): PASSED"
        );
        assert_eq!(
            report.inconsistencies.first[0].describe(),
            "debit of 8 on client 3: status 200, broken_invariant: saldo <-100001>"
        );
        assert_eq!(
            report
                .kinds_in_order()
                .map(|(name, _)| name)
                .collect::<Vec<_>>(),
            ["debit", "credit", "statement"]
        );
        assert_eq!(
            report.kinds["statement"].latency_cells(),
            ["-", "-", "-", "-", "-"]
        );
        assert_eq!(
            report.kinds["debit"].statuses_summary(),
            "200: 298, timeout: 2"
        );

        assert_eq!(report.closed_loop_shortfall(), None, "an open model");
        report.rate.open_model = None;
        report.rate.achieved_per_sec = 98.9;
        assert!(report.closed_loop_shortfall().is_some());
        report.rate.achieved_per_sec = 99.0;
        assert_eq!(report.closed_loop_shortfall(), None);

        report.rate.peak_target_per_sec = Some(100.0);
        assert_eq!(report.target_rate().as_deref(), Some("100.00/s"));
        report.rate.target_per_sec = None;
        report.rate.peak_target_per_sec = None;
        assert_eq!(report.target_rate(), None);
    }
}
