//! The final report: rlt's summary followed by what this tester adds, as text or as one JSON document.
//!
//! The JSON document is the machine interface (CI reads it), so it is one struct with stable
//! field names; rlt's own JSON report is embedded whole under `rlt` rather than printed as a
//! second document. The text form prints rlt's summary unchanged and then the same facts as
//! the JSON, in the same order. The verdict — pass or fail, with every reason — is computed
//! here once and used for both the report and the exit status.

use std::{collections::BTreeMap, io::Write, time::Duration};

use hdrhistogram::Histogram;
use rlt::{
    BenchReport,
    baseline::{Comparison, Verdict as BaselineVerdict},
    reporter::{BenchReporter, JsonReporter, TextReporter},
};
use serde::Serialize;

use crate::{
    audit::{AuditReport, ClientVerdict},
    mix::RequestKind,
    profile::ValidationPhase,
    runner::{LATE_START, Pacing},
    series::{Series, Target},
    stats::{FailureSample, Recorder},
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
                responses_per_sec: if duration_secs > 0.0 {
                    requests as f64 / duration_secs
                } else {
                    0.0
                },
            },
            rate: pacing,
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

    /// Writes rlt's text summary, then this tester's sections.
    pub fn write_text(
        &self,
        w: &mut dyn Write,
        bench: &BenchReport,
        comparison: Option<&Comparison>,
    ) -> Result<(), crate::error::Error> {
        TextReporter.print(w, bench, comparison)?;
        writeln!(w)?;
        self.write_kinds(w)?;
        self.write_rate(w)?;
        self.write_failures(w)?;
        if let Some(phase) = &self.validation_phase {
            writeln!(w, "Validation phase")?;
            writeln!(w, "  {} ({} checks)", pass_fail(phase.passed), phase.checks)?;
            for failure in &phase.failures {
                writeln!(w, "  - {failure}")?;
            }
            writeln!(w)?;
        }
        self.write_audit(w)?;
        writeln!(w, "Rinha score (SLA)")?;
        writeln!(
            w,
            "  {:.2}% of {} requests were OK and under {:.0}ms (required {:.2}%): {}",
            self.sla.share * 100.0,
            self.totals.requests,
            self.sla.latency_threshold_ms,
            self.sla.required_share * 100.0,
            pass_fail(self.sla.passed)
        )?;
        writeln!(w)?;
        writeln!(w, "Verdict")?;
        writeln!(w, "  {}", pass_fail(self.verdict.passed))?;
        for reason in &self.verdict.reasons {
            writeln!(w, "  - {reason}")?;
        }
        Ok(())
    }

    fn write_kinds(&self, w: &mut dyn Write) -> std::io::Result<()> {
        writeln!(w, "Requests by kind (latency in ms)")?;
        writeln!(
            w,
            "  {:<10} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}  statuses",
            "kind", "count", "ok", "failed", "p50", "p90", "p99", "p99.9", "max"
        )?;
        // Report order (debit, credit, statement), not the map's alphabetical one.
        let kinds = RequestKind::ALL.iter().filter_map(|kind| {
            self.kinds
                .get(kind.name())
                .map(|report| (kind.name(), report))
        });
        for (name, kind) in kinds {
            let latency = kind.latency_ms.map_or_else(
                || format!("{:>9} {:>9} {:>9} {:>9} {:>9}", "-", "-", "-", "-", "-"),
                |p| {
                    format!(
                        "{:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                        p.p50, p.p90, p.p99, p.p99_9, p.max
                    )
                },
            );
            let statuses: Vec<String> = kind
                .statuses
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            writeln!(
                w,
                "  {:<10} {:>9} {:>9} {:>7} {latency}  {}",
                name,
                kind.count,
                kind.ok,
                kind.failures,
                statuses.join(", ")
            )?;
        }
        writeln!(w)
    }

    fn write_rate(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let rate = &self.rate;
        writeln!(w, "Rate")?;
        match (rate.target_per_sec, rate.peak_target_per_sec) {
            (Some(target), Some(peak)) if (target - peak).abs() > 1e-9 => writeln!(
                w,
                "  target {target:.2}/s on average (peak {peak:.2}/s), achieved {:.2}/s",
                rate.achieved_per_sec
            )?,
            (Some(target), _) => writeln!(
                w,
                "  target {target:.2}/s, achieved {:.2}/s",
                rate.achieved_per_sec
            )?,
            (None, _) => writeln!(
                w,
                "  no target (closed loop at full speed), achieved {:.2}/s",
                rate.achieved_per_sec
            )?,
        }
        writeln!(
            w,
            "  {} requests started in {:.2}s",
            rate.started, rate.sending_secs
        )?;
        if rate.stopped_early {
            writeln!(
                w,
                "  stopped early by the user (q or Ctrl-C): the numbers cover the part that ran"
            )?;
        }
        if let Some(open) = &rate.open_model {
            writeln!(
                w,
                "  open model: {} scheduled, {} not started, {} started more than {}ms late (max lag {:.2}ms), \
                 {} waits for the in-flight cap, peak {} in flight (cap {})",
                open.scheduled,
                open.not_started,
                open.late_starts,
                LATE_START.as_millis(),
                open.max_start_lag_ms,
                open.in_flight_cap_waits,
                open.peak_in_flight,
                open.max_in_flight
            )?;
        } else if rate
            .target_per_sec
            .is_some_and(|target| rate.achieved_per_sec < target * 0.99)
        {
            writeln!(
                w,
                "  note: a closed loop sends less when the server is slow, and those missing requests \
                 never show in the latencies; use --arrival-rate for an open model"
            )?;
        }
        writeln!(w)
    }

    fn write_failures(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let percent = if self.totals.requests == 0 {
            0.0
        } else {
            self.failures.total as f64 * 100.0 / self.totals.requests as f64
        };
        writeln!(w, "Failures")?;
        writeln!(
            w,
            "  {} of {} requests ({percent:.2}%)",
            self.failures.total, self.totals.requests
        )?;
        for (reason, count) in &self.failures.by_reason {
            writeln!(w, "  {reason}: {count}")?;
        }
        for sample in &self.failures.first {
            writeln!(w, "  e.g. {}", describe(sample))?;
        }
        writeln!(w)?;
        writeln!(w, "Inconsistencies")?;
        writeln!(w, "  {}", self.inconsistencies.total)?;
        for sample in &self.inconsistencies.first {
            writeln!(w, "  - {}", describe(sample))?;
        }
        writeln!(w)
    }

    fn write_audit(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let audit = &self.audit;
        writeln!(w, "Audit (balances against accepted transactions)")?;
        writeln!(
            w,
            "  {}{}",
            pass_fail(audit.passed),
            if audit.after_reset {
                " (start state: after /reset)"
            } else {
                " (start state: read before the load)"
            }
        )?;
        for problem in &audit.problems {
            writeln!(w, "  - {problem}")?;
        }
        writeln!(
            w,
            "  {:<6} {:>12} {:>12} {:>12} {:>12} {:>11} {:>8}  verdict",
            "client", "start", "end", "accepted Δ", "actual Δ", "discrepancy", "unknown"
        )?;
        let show = |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        for client in &audit.clients {
            let verdict = match client.verdict {
                ClientVerdict::Exact => "exact",
                ClientVerdict::ExplainedByUnknown => "explained by unknown writes",
                ClientVerdict::Unexplained => "UNEXPLAINED",
                ClientVerdict::Unreadable => "UNREADABLE",
            };
            writeln!(
                w,
                "  {:<6} {:>12} {:>12} {:>12} {:>12} {:>11} {:>8}  {verdict}",
                client.client,
                show(client.start_saldo),
                show(client.end_saldo),
                client.accepted_delta,
                show(client.actual_delta),
                show(client.discrepancy),
                client.unknown,
            )?;
        }
        writeln!(w)
    }
}

fn pass_fail(passed: bool) -> &'static str {
    if passed { "PASSED" } else { "FAILED" }
}

fn describe(sample: &FailureSample) -> String {
    let amount = match sample.kind {
        RequestKind::Statement => String::new(),
        _ => format!(" of {}", sample.signed_amount.abs()),
    };
    let status = sample
        .status
        .map(|status| format!("status {status}, "))
        .unwrap_or_default();
    format!(
        "{}{amount} on client {}: {status}{}: {}",
        sample.kind.name(),
        sample.client,
        sample.reason,
        sample.detail
    )
}
