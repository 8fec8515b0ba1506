//! What the load measured: one [`Completed`] record per request, folded into per-kind numbers.
//!
//! rlt keeps one latency histogram and one status distribution for the whole run; this module
//! keeps them per kind (debits, credits and statements behave very differently: a statement
//! never writes), plus what rlt has no notion of: why a request failed, which answers were
//! inconsistent, the share of requests that were OK and fast enough, and the audit ledger. Every
//! request lands here exactly once, failures included, so no error can drop out of the totals.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    audit::{Ledger, WriteEffect},
    contract::ClientId,
    mix::RequestKind,
    outcome::{Completed, Failure, Outcome, StatusKey},
    series::SeriesRecorder,
};

/// A failure kept for printing, with its request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureSample {
    /// What the request did.
    pub kind: RequestKind,
    /// Which client.
    pub client: ClientId,
    /// Its signed amount (credit +, debit -, statement 0).
    pub signed_amount: i64,
    /// The failure's reason, as in `failures.by_reason`.
    pub reason: &'static str,
    /// The status received, if any.
    pub status: Option<u16>,
    /// What exactly was wrong.
    pub detail: String,
}

impl FailureSample {
    fn new(completed: &Completed, failure: &Failure) -> Self {
        Self {
            kind: completed.kind,
            client: completed.client,
            signed_amount: completed.signed_amount,
            reason: failure.reason(),
            status: failure.status(),
            detail: match failure {
                Failure::NoAnswer { error } => error.to_string(),
                Failure::Inconsistent { problem, .. } => problem.detail.clone(),
            },
        }
    }
}

/// Numbers for one request kind.
#[derive(Debug, Clone)]
pub struct KindStats {
    /// Requests completed.
    pub count: u64,
    /// Of those, OK.
    pub ok: u64,
    /// Count per status code, plus timeouts and transport errors for requests with no answer.
    pub statuses: BTreeMap<StatusKey, u64>,
    /// Latency in microseconds, every request included (failures too: a timeout is a latency).
    pub latency_us: Histogram<u64>,
}

impl Default for KindStats {
    fn default() -> Self {
        Self {
            count: 0,
            ok: 0,
            statuses: BTreeMap::new(),
            // 1 µs to 1 h at 3 significant digits; longer values saturate at the top.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| unreachable!("the bounds are valid constants")),
        }
    }
}

/// Per-kind numbers, failures, inconsistencies, the SLA count and the ledger of a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    kinds: [KindStats; 3],
    failures_by_reason: BTreeMap<&'static str, u64>,
    inconsistencies: u64,
    samples: Vec<FailureSample>,
    inconsistency_samples: Vec<FailureSample>,
    sample_limit: usize,
    sla_latency: Duration,
    ok_within_sla: u64,
    ledger: Ledger,
    series: SeriesRecorder,
}

impl Recorder {
    /// A recorder that keeps the first `sample_limit` failures and inconsistencies for printing
    /// and counts OK answers faster than `sla_latency`.
    pub fn new(sample_limit: usize, sla_latency: Duration) -> Self {
        Self {
            kinds: Default::default(),
            failures_by_reason: BTreeMap::new(),
            inconsistencies: 0,
            samples: Vec::new(),
            inconsistency_samples: Vec::new(),
            sample_limit,
            sla_latency,
            ok_within_sla: 0,
            ledger: Ledger::default(),
            series: SeriesRecorder::default(),
        }
    }

    /// Folds one request in.
    pub fn record(&mut self, completed: &Completed) {
        if completed.kind != RequestKind::Statement {
            self.ledger.record(
                completed.client,
                completed.signed_amount,
                WriteEffect::from_status(completed.outcome.status()),
            );
        }
        if completed.warmup {
            return;
        }
        self.series.record(completed);
        let kind = &mut self.kinds[completed.kind.index()];
        kind.count += 1;
        *kind
            .statuses
            .entry(StatusKey::of(&completed.outcome))
            .or_default() += 1;
        let micros = u64::try_from(completed.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        kind.latency_us.saturating_record(micros);

        match &completed.outcome {
            Outcome::Ok { .. } => {
                kind.ok += 1;
                if completed.latency < self.sla_latency {
                    self.ok_within_sla += 1;
                }
            }
            Outcome::Failed(failure) => {
                *self.failures_by_reason.entry(failure.reason()).or_default() += 1;
                let sample = || FailureSample::new(completed, failure);
                if failure.is_inconsistency() {
                    self.inconsistencies += 1;
                    if self.inconsistency_samples.len() < self.sample_limit {
                        self.inconsistency_samples.push(sample());
                    }
                } else if self.samples.len() < self.sample_limit {
                    self.samples.push(sample());
                }
            }
        }
    }

    /// Numbers for `kind`.
    pub fn kind(&self, kind: RequestKind) -> &KindStats {
        &self.kinds[kind.index()]
    }

    /// Requests completed (warm-up excluded).
    pub fn total(&self) -> u64 {
        self.kinds.iter().map(|k| k.count).sum()
    }

    /// Requests that were OK.
    pub fn ok(&self) -> u64 {
        self.kinds.iter().map(|k| k.ok).sum()
    }

    /// Requests that failed for any reason.
    pub fn failures(&self) -> u64 {
        self.total() - self.ok()
    }

    /// Failure count per reason.
    pub fn failures_by_reason(&self) -> &BTreeMap<&'static str, u64> {
        &self.failures_by_reason
    }

    /// Answers that broke the contract.
    pub fn inconsistencies(&self) -> u64 {
        self.inconsistencies
    }

    /// The first failures with no answer (timeouts, transport errors).
    pub fn failure_samples(&self) -> &[FailureSample] {
        &self.samples
    }

    /// The first inconsistent answers.
    pub fn inconsistency_samples(&self) -> &[FailureSample] {
        &self.inconsistency_samples
    }

    /// OK answers faster than the SLA latency.
    pub fn ok_within_sla(&self) -> u64 {
        self.ok_within_sla
    }

    /// The SLA latency threshold.
    pub fn sla_latency(&self) -> Duration {
        self.sla_latency
    }

    /// The load over time, in one-second buckets.
    pub fn series(&self) -> &SeriesRecorder {
        &self.series
    }

    /// The audit ledger (warm-up included).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{client::CallError, outcome::judge};

    const OK: Outcome = Outcome::Ok { status: 200 };

    fn completed(kind: RequestKind, outcome: Outcome, millis: u64) -> Completed {
        Completed {
            kind,
            client: 1,
            signed_amount: match kind {
                RequestKind::Debit => -10,
                RequestKind::Credit => 10,
                RequestKind::Statement => 0,
            },
            latency: Duration::from_millis(millis),
            sent_at: Duration::ZERO,
            answered_at: Duration::from_millis(millis),
            bytes: 0,
            outcome,
            warmup: false,
        }
    }

    #[test]
    fn every_request_is_counted_once_per_kind_with_its_status() {
        let mut recorder = Recorder::new(5, Duration::from_millis(250));
        recorder.record(&completed(RequestKind::Debit, OK, 3));
        recorder.record(&completed(
            RequestKind::Debit,
            Outcome::Ok { status: 422 },
            4,
        ));
        recorder.record(&completed(RequestKind::Credit, OK, 5));
        recorder.record(&completed(
            RequestKind::Statement,
            Outcome::Failed(Failure::NoAnswer {
                error: CallError::Timeout,
            }),
            2000,
        ));
        assert_eq!(
            (recorder.total(), recorder.ok(), recorder.failures()),
            (4, 3, 1)
        );
        let debit = recorder.kind(RequestKind::Debit);
        assert_eq!(debit.count, 2);
        assert_eq!(debit.statuses.get(&StatusKey::Http(200)), Some(&1));
        assert_eq!(debit.statuses.get(&StatusKey::Http(422)), Some(&1));
        assert_eq!(
            recorder
                .kind(RequestKind::Statement)
                .statuses
                .get(&StatusKey::Timeout),
            Some(&1)
        );
        assert_eq!(recorder.failures_by_reason().get("timeout"), Some(&1));
        // A timeout is a failure, not an inconsistency: the server said nothing wrong.
        assert_eq!(recorder.inconsistencies(), 0);
        assert_eq!(recorder.failure_samples().len(), 1);
    }

    #[test]
    fn only_ok_answers_under_the_threshold_count_towards_the_sla() {
        let mut recorder = Recorder::new(5, Duration::from_millis(250));
        recorder.record(&completed(RequestKind::Debit, OK, 249));
        recorder.record(&completed(RequestKind::Debit, OK, 250));
        recorder.record(&completed(
            RequestKind::Credit,
            judge(RequestKind::Credit, 1, 500, b""),
            1,
        ));
        assert_eq!(recorder.ok_within_sla(), 1);
        assert_eq!(recorder.inconsistencies(), 1);
        assert_eq!(
            recorder.failures_by_reason().get("unexpected_status"),
            Some(&1)
        );
    }

    #[test]
    fn only_the_first_few_inconsistencies_are_kept_but_all_are_counted() {
        let mut recorder = Recorder::new(2, Duration::from_millis(250));
        for _ in 0..10 {
            let outcome = judge(
                RequestKind::Debit,
                1,
                200,
                br#"{"limite": 100000, "saldo": -100001}"#,
            );
            assert!(matches!(
                outcome,
                Outcome::Failed(Failure::Inconsistent { status: 200, .. })
            ));
            recorder.record(&completed(RequestKind::Debit, outcome, 1));
        }
        assert_eq!(recorder.inconsistencies(), 10);
        assert_eq!(recorder.inconsistency_samples().len(), 2);
    }

    #[test]
    fn warmup_requests_move_the_ledger_but_not_the_numbers() {
        let mut recorder = Recorder::new(5, Duration::from_millis(250));
        let mut warm = completed(RequestKind::Credit, OK, 1);
        warm.warmup = true;
        recorder.record(&warm);
        assert_eq!(recorder.total(), 0);
        let audit = crate::audit::audit(
            &crate::contract::client_ids().map(|c| (c, Ok(0))).collect(),
            &crate::contract::client_ids()
                .map(|c| (c, Ok(if c == 1 { 10 } else { 0 })))
                .collect(),
            recorder.ledger(),
            true,
        );
        assert!(audit.passed, "{audit:?}");
    }

    #[test]
    fn latencies_are_kept_per_kind() {
        let mut recorder = Recorder::new(5, Duration::from_millis(250));
        for millis in 1..=100 {
            recorder.record(&completed(RequestKind::Debit, OK, millis));
        }
        recorder.record(&completed(RequestKind::Statement, OK, 900));
        let debit = &recorder.kind(RequestKind::Debit).latency_us;
        let p50 = debit.value_at_quantile(0.5);
        assert!((49_900..=50_100).contains(&p50), "{p50}");
        assert!(debit.max() <= 100_100);
        assert!(recorder.kind(RequestKind::Statement).latency_us.min() >= 899_000);
    }
}
