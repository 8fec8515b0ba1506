//! The load over time: one-second buckets of responses by status, latency per kind, requests
//! started and requests in flight, folded in as each request completes.
//!
//! The one decision: nothing is kept per request, so recording stays as cheap at 20,000
//! requests/s as at 20 and a long run costs a few counters per second. Each completed request
//! adds to the counters of the bucket it *ended* in (responses, latency), of the bucket it was
//! *sent* in (starts), and of every bucket it spanned (its share of the in-flight mean).
//! Percentiles need a histogram, so only a short window of the newest buckets has live
//! histograms: when the window moves on, the bucket leaving it is summarised (count, p50, p99,
//! max) and its histograms are reset for reuse. Requests reach the recorder in the order they
//! ended (each task sends its record as soon as it has measured it), so the window only has to
//! absorb the reordering between tasks, which is microseconds; a record older than the window
//! (only a tester stalled for seconds could produce one) is folded into the window's oldest bucket.
//!
//! Buckets are counted from the instant the measured load began (after the warm-up), the same
//! origin as the open model's timetable, so a bucket's target and its achieved starts line up.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    mix::RequestKind,
    outcome::{Completed, Outcome, StatusKey},
};

/// The width of a bucket.
pub const BUCKET: Duration = Duration::from_secs(1);

/// Buckets with live histograms: the newest and the three before it.
const WINDOW: usize = 4;

/// Counters of one bucket while the run goes on.
#[derive(Debug, Clone, Default)]
struct Counts {
    /// Responses that ended in this bucket, per status. A handful of distinct statuses at most,
    /// so a short vector searched linearly: no allocation once a status has been seen.
    responses: Vec<(StatusKey, u64)>,
    /// Of those, OK.
    ok: u64,
    /// Requests sent in this bucket.
    started: u64,
    /// Sum over requests of the time each spent in flight within this bucket.
    busy: Duration,
    /// Per-kind latency, filled when the bucket leaves the window.
    latency: [Option<BucketLatency>; 3],
}

/// Records the series of one run; see the module documentation.
#[derive(Debug, Clone)]
pub struct SeriesRecorder {
    buckets: Vec<Counts>,
    /// `window[b % WINDOW][kind]` holds the latencies of bucket `b` while it is in the window.
    window: [[Histogram<u64>; 3]; WINDOW],
    /// The newest bucket that has live histograms.
    newest: Option<usize>,
    /// The latest answer, since the load began.
    last_answer: Duration,
}

impl Default for SeriesRecorder {
    fn default() -> Self {
        // 1 µs to 1 h at 2 significant digits: 1% is plenty for a per-second percentile, and
        // a histogram is 26 KB instead of 190 KB.
        let histogram = || {
            Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .unwrap_or_else(|_| unreachable!("the bounds are valid constants"))
        };
        Self {
            buckets: Vec::new(),
            window: std::array::from_fn(|_| std::array::from_fn(|_| histogram())),
            newest: None,
            last_answer: Duration::ZERO,
        }
    }
}

impl SeriesRecorder {
    /// Folds one measured request in (warm-up requests are not part of the series).
    pub fn record(&mut self, completed: &Completed) {
        let sent = completed.sent_at;
        let answered = completed.answered_at.max(sent);
        let (first, last) = (bucket_of(sent), bucket_of(answered));
        if self.buckets.len() <= last {
            self.buckets.resize_with(last + 1, Counts::default);
        }
        self.last_answer = self.last_answer.max(answered);

        self.buckets[first].started += 1;
        // The request's time in flight, split over the buckets it spanned (usually one or two).
        for (index, counts) in self.buckets[first..=last].iter_mut().enumerate() {
            let start = BUCKET * u32::try_from(first + index).unwrap_or(u32::MAX);
            let overlap = answered.min(start + BUCKET).saturating_sub(sent.max(start));
            counts.busy += overlap;
        }

        let counts = &mut self.buckets[last];
        let status = StatusKey::of(&completed.outcome);
        match counts.responses.iter_mut().find(|(key, _)| *key == status) {
            Some((_, count)) => *count += 1,
            None => counts.responses.push((status, 1)),
        }
        if matches!(completed.outcome, Outcome::Ok { .. }) {
            counts.ok += 1;
        }

        let micros = u64::try_from(completed.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.live_histograms(last)[completed.kind.index()].saturating_record(micros);
    }

    /// The histograms of `bucket`, moving the window forward (and summarising the buckets that
    /// leave it) when `bucket` is newer than every bucket seen so far.
    fn live_histograms(&mut self, bucket: usize) -> &mut [Histogram<u64>; 3] {
        let newest = match self.newest {
            Some(newest) if bucket > newest => {
                // Only the buckets now in the window can hold data: at most WINDOW to close.
                for entering in (newest + 1)..=bucket.min(newest + WINDOW) {
                    if let Some(leaving) = entering.checked_sub(WINDOW) {
                        self.close(leaving);
                    }
                }
                bucket
            }
            Some(newest) => newest,
            None => bucket,
        };
        self.newest = Some(newest);
        let oldest_live = (newest + 1).saturating_sub(WINDOW);
        &mut self.window[bucket.max(oldest_live) % WINDOW]
    }

    /// Summarises `bucket`'s latencies and frees its histograms for the bucket that takes its slot.
    fn close(&mut self, bucket: usize) {
        for (kind, histogram) in self.window[bucket % WINDOW].iter_mut().enumerate() {
            if !histogram.is_empty() {
                self.buckets[bucket].latency[kind] = BucketLatency::of(histogram);
                histogram.reset();
            }
        }
    }

    /// The series so far. `target` is what the run asked for per second.
    pub fn series(&self, target: &Target<'_>) -> Series {
        let live = |bucket: usize| {
            self.newest
                .is_some_and(|newest| bucket <= newest && bucket + WINDOW > newest)
        };
        let scheduled_len = match target {
            Target::Scheduled(per_bucket) => per_bucket.len(),
            _ => 0,
        };
        let len = self.buckets.len().max(scheduled_len);
        let empty = Counts::default();
        let buckets = (0..len)
            .map(|index| {
                let counts = self.buckets.get(index).unwrap_or(&empty);
                let start = BUCKET * u32::try_from(index).unwrap_or(u32::MAX);
                // The last bucket ends with the last answer, not a full second later.
                let span = self.last_answer.saturating_sub(start).min(BUCKET);
                let latency_ms = RequestKind::ALL
                    .iter()
                    .map(|kind| {
                        let latency = if live(index) {
                            BucketLatency::of(&self.window[index % WINDOW][kind.index()])
                        } else {
                            counts.latency[kind.index()]
                        };
                        (kind.name(), latency)
                    })
                    .collect();
                let responses: u64 = counts.responses.iter().map(|(_, count)| count).sum();
                Bucket {
                    second: index as u64,
                    responses: {
                        let mut sorted = counts.responses.clone();
                        sorted.sort_unstable();
                        sorted
                            .into_iter()
                            .map(|(key, count)| (key.to_string(), count))
                            .collect()
                    },
                    ok: counts.ok,
                    failed: responses - counts.ok,
                    started: counts.started,
                    target: target.at(index, start),
                    in_flight: if span.is_zero() {
                        0.0
                    } else {
                        counts.busy.as_secs_f64() / span.as_secs_f64()
                    },
                    latency_ms,
                }
            })
            .collect();
        Series {
            bucket_secs: BUCKET.as_secs(),
            buckets,
        }
    }
}

/// What the run asked for, per second.
#[derive(Debug, Clone)]
pub enum Target<'a> {
    /// No target: a closed loop at full speed.
    None,
    /// A closed loop capped by `-r`: this rate for as long as requests were being started.
    Constant {
        /// Starts per second.
        per_sec: f64,
        /// How long requests were being started.
        until: Duration,
    },
    /// The open model's timetable: requests due in each bucket.
    Scheduled(&'a [u64]),
}

impl Target<'_> {
    fn at(&self, index: usize, start: Duration) -> Option<f64> {
        match self {
            Target::None => None,
            Target::Constant { per_sec, until } => (start < *until).then_some(*per_sec),
            Target::Scheduled(per_bucket) => {
                Some(per_bucket.get(index).copied().unwrap_or(0) as f64)
            }
        }
    }
}

/// The time series of a run (`series` in the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// The width of a bucket in seconds (1).
    pub bucket_secs: u64,
    /// One entry per second from the start of the measured load to the last answer, empty
    /// seconds included.
    pub buckets: Vec<Bucket>,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// The bucket's start, in whole seconds since the measured load began.
    pub second: u64,
    /// Responses that ended in this second, per status, keyed as in `kinds.*.statuses`
    /// ("200", "422", "timeout", "transport_error", ...).
    pub responses: BTreeMap<String, u64>,
    /// Of those, OK.
    pub ok: u64,
    /// Of those, not OK.
    pub failed: u64,
    /// Requests sent in this second (the achieved rate).
    pub started: u64,
    /// Requests the run asked to start in this second: the open model's timetable, or `-r`;
    /// `None` for an unpaced closed loop.
    pub target: Option<f64>,
    /// Mean number of requests in flight over this second (time-weighted).
    pub in_flight: f64,
    /// Latency of the responses that ended in this second, per kind; `None` when none did.
    pub latency_ms: BTreeMap<&'static str, Option<BucketLatency>>,
}

/// Latency of one kind in one second, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BucketLatency {
    /// Responses measured.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl BucketLatency {
    fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Self {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        })
    }
}

fn bucket_of(offset: Duration) -> usize {
    usize::try_from(offset.as_secs() / BUCKET.as_secs()).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        client::CallError,
        outcome::{Failure, Outcome},
    };

    fn request(kind: RequestKind, sent_ms: u64, latency_ms: u64, outcome: Outcome) -> Completed {
        Completed {
            kind,
            client: 1,
            signed_amount: 0,
            latency: Duration::from_millis(latency_ms),
            sent_at: Duration::from_millis(sent_ms),
            answered_at: Duration::from_millis(sent_ms + latency_ms),
            bytes: 0,
            outcome,
            warmup: false,
        }
    }

    const OK: Outcome = Outcome::Ok { status: 200 };

    #[test]
    fn requests_land_in_the_bucket_they_ended_in_and_starts_in_the_one_they_were_sent_in() {
        let mut recorder = SeriesRecorder::default();
        recorder.record(&request(RequestKind::Debit, 100, 10, OK));
        recorder.record(&request(RequestKind::Debit, 900, 1_200, OK));
        recorder.record(&request(
            RequestKind::Credit,
            2_500,
            2_000,
            Outcome::Failed(Failure::NoAnswer {
                error: CallError::Timeout,
            }),
        ));
        let series = recorder.series(&Target::None);
        let buckets = &series.buckets;
        assert_eq!(buckets.len(), 5, "{series:#?}");
        assert_eq!(
            buckets.iter().map(|b| b.started).collect::<Vec<_>>(),
            [2, 0, 1, 0, 0]
        );
        assert_eq!(buckets[0].responses.get("200"), Some(&1));
        assert_eq!(buckets[2].responses.get("200"), Some(&1));
        assert_eq!(buckets[4].responses.get("timeout"), Some(&1));
        assert_eq!((buckets[4].ok, buckets[4].failed), (0, 1));
        assert!(buckets[1].responses.is_empty());
        let slow = buckets[2].latency_ms["debit"].expect("a debit ended in second 2");
        assert_eq!(slow.count, 1);
        assert!((1_190.0..=1_210.0).contains(&slow.max), "{slow:?}");
        assert_eq!(buckets[2].latency_ms["credit"], None);
        // In flight: second 0 holds 10 ms of the first debit and 100 ms of the second, which
        // covers second 1 entirely; the timeout covers second 3, and second 4 up to the last
        // answer (4.5 s), so it was in flight for all of that shorter bucket.
        assert!((buckets[1].in_flight - 1.0).abs() < 1e-9, "{series:#?}");
        assert!((buckets[0].in_flight - 0.11).abs() < 1e-9, "{series:#?}");
        assert!((buckets[3].in_flight - 1.0).abs() < 1e-9, "{series:#?}");
        assert!((buckets[4].in_flight - 1.0).abs() < 1e-9, "{series:#?}");
    }

    #[test]
    fn buckets_that_leave_the_window_keep_their_percentiles() {
        let mut recorder = SeriesRecorder::default();
        for second in 0..20u64 {
            for i in 1..=100 {
                // Second s: latencies 1..=100 ms scaled by (s + 1).
                let latency = i * (second + 1);
                recorder.record(&request(
                    RequestKind::Statement,
                    second * 1000 + 999 - latency.min(999),
                    latency.min(999),
                    OK,
                ));
            }
        }
        let series = recorder.series(&Target::None);
        for (second, bucket) in series.buckets.iter().enumerate() {
            let latency = bucket.latency_ms["statement"].expect("statements every second");
            assert_eq!(latency.count, 100, "second {second}");
            let expected_p50 = (50 * (second as u64 + 1)).min(999) as f64;
            assert!(
                (latency.p50 - expected_p50).abs() <= expected_p50 * 0.01 + 0.01,
                "second {second}: p50 {} expected {expected_p50}",
                latency.p50
            );
        }
    }

    #[test]
    fn a_record_older_than_the_window_is_folded_into_its_oldest_bucket_not_lost() {
        let mut recorder = SeriesRecorder::default();
        recorder.record(&request(RequestKind::Debit, 9_000, 5, OK));
        recorder.record(&request(RequestKind::Debit, 1_000, 5, OK));
        let series = recorder.series(&Target::None);
        let measured: u64 = series
            .buckets
            .iter()
            .filter_map(|b| b.latency_ms["debit"])
            .map(|l| l.count)
            .sum();
        assert_eq!(measured, 2);
        // Its counters still land in its own second.
        assert_eq!(series.buckets[1].responses.get("200"), Some(&1));
    }

    #[test]
    fn the_target_follows_the_timetable_or_the_rate_cap() {
        let mut recorder = SeriesRecorder::default();
        recorder.record(&request(RequestKind::Debit, 100, 5, OK));
        let scheduled = [3, 5, 7];
        let series = recorder.series(&Target::Scheduled(&scheduled));
        assert_eq!(
            series.buckets.iter().map(|b| b.target).collect::<Vec<_>>(),
            [Some(3.0), Some(5.0), Some(7.0)],
            "the timetable's seconds appear even with no answer in them"
        );
        let series = recorder.series(&Target::Constant {
            per_sec: 340.0,
            until: Duration::from_millis(500),
        });
        assert_eq!(series.buckets[0].target, Some(340.0));
        assert_eq!(recorder.series(&Target::None).buckets[0].target, None);
    }
}
