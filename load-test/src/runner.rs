//! The load generator: closed loop or open model, both feeding rlt's live view and our recorder.
//!
//! rlt 0.5 runs only a closed loop (N workers, each waiting for its answer before sending the
//! next), and its `Runner` is private to the crate, so this module drives rlt one level down:
//! it builds rlt's `BenchOpts`, `Clock` and collector (the TUI or the silent one) itself and
//! sends them one `IterReport` per request. That keeps rlt's live view, summary and baselines
//! while the two things rlt gets wrong for this job are done here:
//!
//! - every request reaches the collector as an `Ok(IterReport)`, a failure included (with a
//!   non-success [`Status`]): rlt leaves `Err` iterations out of its success ratio;
//! - the open model starts each request at its scheduled instant as its own task, whatever the
//!   server is doing, and measures its latency from that instant, so a stall is charged to every
//!   request it delayed instead of vanishing (coordinated omission).
//!
//! The closed loop is kept, `-r` included, because it is what the original commands measure:
//! maximum throughput at a given concurrency.

use std::{
    num::{NonZeroU8, NonZeroU32},
    sync::{
        Arc, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{SeedableRng, rngs::StdRng};
use rlt::{
    BenchOpts, BenchReport, IterReport, Status,
    cli::Collector,
    clock::Clock,
    collector::{ReportCollector, SilentCollector, TuiCollector},
};
use serde::Serialize;
use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;

use crate::{
    client::{Api, CallError},
    error::Error,
    mix::{self, PlannedRequest},
    outcome::{Completed, Failure, Outcome, judge},
    schedule::Schedule,
    stats::Recorder,
};

/// rlt status code for a request that timed out (shown as `Error(-1)`).
pub const TIMEOUT_STATUS_CODE: i64 = -1;
/// rlt status code for a request that failed at transport level (shown as `Error(-2)`).
pub const TRANSPORT_STATUS_CODE: i64 = -2;

/// A start later than this after its scheduled instant is counted as late (open model).
pub const LATE_START: Duration = Duration::from_millis(10);

/// How the load is generated.
#[derive(Debug, Clone)]
pub enum LoadShape {
    /// `concurrency` workers, each sending its next request when its last one is answered,
    /// optionally paced to at most `rate` starts per second overall.
    Closed {
        /// Stop starting requests after this long.
        duration: Option<Duration>,
        /// Cap on starts per second (rlt's `-r`).
        rate: Option<NonZeroU32>,
    },
    /// Requests start at the instants of `schedule`, each as its own task.
    Open {
        /// The timetable.
        schedule: Schedule,
        /// Most requests in flight at once; a due request waits for a slot (and is reported late).
        max_in_flight: usize,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Closed or open.
    pub shape: LoadShape,
    /// Workers of the closed loop and of the warm-up.
    pub concurrency: NonZeroU32,
    /// Stop after this many requests (warm-up excluded).
    pub iterations: Option<u64>,
    /// Requests sent before measuring starts; they move balances but are not reported.
    pub warmup: u64,
}

/// How rlt shows the run.
#[derive(Debug, Clone, Copy)]
pub struct DisplayOptions {
    /// TUI or silent.
    pub collector: Collector,
    /// TUI refresh rate.
    pub fps: NonZeroU8,
    /// Keep the TUI open after the run until the user quits.
    pub quit_manually: bool,
}

/// How well the tester kept to the requested rate.
#[derive(Debug, Clone, Serialize)]
pub struct Pacing {
    /// Mean requests per second asked for (`-r`, or the timetable's mean); `None` for an
    /// unpaced closed loop, which has no target.
    pub target_per_sec: Option<f64>,
    /// Highest rate asked for at any moment.
    pub peak_target_per_sec: Option<f64>,
    /// Requests started.
    pub started: u64,
    /// Seconds during which requests were being started.
    pub sending_secs: f64,
    /// `started / sending_secs`.
    pub achieved_per_sec: f64,
    /// The user stopped the run before its end (`q` in the live view, Ctrl-C).
    pub stopped_early: bool,
    /// Open-model details; `None` for a closed loop.
    pub open_model: Option<OpenModelPacing>,
    /// Open model: requests the timetable made due in each second of the load (the series'
    /// target; the JSON report has it there, not here).
    #[serde(skip)]
    pub scheduled_per_second: Vec<u64>,
}

/// How the open model kept its timetable.
#[derive(Debug, Clone, Serialize)]
pub struct OpenModelPacing {
    /// Requests the timetable asked for.
    pub scheduled: u64,
    /// Of those, never started because the run was stopped early (Ctrl-C, `q`).
    pub not_started: u64,
    /// Started more than 10 ms after their scheduled instant (tester saturated or the
    /// in-flight cap reached); their latency includes the delay.
    pub late_starts: u64,
    /// Largest delay between a scheduled instant and the actual start, in milliseconds.
    pub max_start_lag_ms: f64,
    /// Times a due request had to wait because `max_in_flight` requests were outstanding.
    pub in_flight_cap_waits: u64,
    /// Most requests in flight at once.
    pub peak_in_flight: usize,
    /// The cap.
    pub max_in_flight: usize,
}

/// Everything the load produced.
pub struct LoadResult {
    /// Per-kind numbers, failures, SLA count, ledger.
    pub recorder: Recorder,
    /// rlt's own report (summary, latency histogram, status distribution).
    pub bench: BenchReport,
    /// Target versus achieved rate.
    pub pacing: Pacing,
}

impl std::fmt::Debug for LoadResult {
    // rlt's `BenchReport` has no `Debug`; show the rest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadResult")
            .field("recorder", &self.recorder)
            .field("pacing", &self.pacing)
            .finish_non_exhaustive()
    }
}

/// Shared by every task of one run.
struct Context {
    api: Arc<Api>,
    done: mpsc::UnboundedSender<Completed>,
    /// Stops starting new requests (end of duration, Ctrl-C, `q`); in-flight ones finish.
    stop: CancellationToken,
    started: AtomicU64,
}

/// Runs the load, showing it with rlt, and returns what it measured. `recorder` receives every
/// request, warm-up included (for the ledger).
pub async fn run(
    api: Arc<Api>,
    plan: LoadPlan,
    display: DisplayOptions,
    mut recorder: Recorder,
) -> Result<LoadResult, Error> {
    let clock = Clock::new_paused();
    let (duration, rate, concurrency) = match &plan.shape {
        LoadShape::Closed { duration, rate } => (*duration, *rate, plan.concurrency.get()),
        LoadShape::Open {
            schedule,
            max_in_flight,
        } => (
            Some(schedule.duration()),
            None,
            u32::try_from(*max_in_flight).unwrap_or(u32::MAX),
        ),
    };
    let opts = BenchOpts {
        clock: clock.clone(),
        concurrency,
        iterations: plan.iterations,
        duration,
        warmups: plan.warmup,
        rate,
    };

    let (rlt_tx, rlt_rx) = mpsc::unbounded_channel();
    let (pause_tx, pause_rx) = watch::channel(false);
    let cancel = CancellationToken::new();
    let mut collector: Box<dyn ReportCollector> = match display.collector {
        Collector::Tui => Box::new(TuiCollector::new(
            opts,
            display.fps,
            rlt_rx,
            pause_tx,
            cancel.clone(),
            !display.quit_manually,
        )?),
        Collector::Silent => Box::new(SilentCollector::new(opts, rlt_rx, cancel.clone())),
    };
    let collector = tokio::spawn(async move { collector.run().await });

    // One task owns the recorder, so recording needs no lock; it forwards each measured request
    // to rlt and ends (closing rlt's channel) when every sender is gone.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completed>();
    let recording = tokio::spawn(async move {
        while let Some(completed) = done_rx.recv().await {
            if !completed.warmup {
                // The receiver is gone only if the user quit the TUI; keep recording regardless.
                let _ = rlt_tx.send(Ok(iter_report(&completed)));
            }
            recorder.record(&completed);
        }
        recorder
    });

    let context = Arc::new(Context {
        api,
        done: done_tx,
        stop: cancel.child_token(),
        started: AtomicU64::new(0),
    });

    if plan.warmup > 0 {
        run_closed(
            &context,
            plan.concurrency,
            Some(plan.warmup),
            None,
            pause_rx.clone(),
            Instant::now(),
            true,
        )
        .await?;
        context.started.store(0, Ordering::Relaxed);
    }

    // The origin of the series and of the open model's timetable.
    let load_start = Instant::now();
    clock.resume();
    let pacing = match plan.shape {
        LoadShape::Closed { duration, rate } => {
            let deadline = duration.map(|duration| {
                let (clock, stop) = (clock.clone(), context.stop.clone());
                // rlt's clock does not advance while the TUI is paused, so neither does the deadline.
                tokio::spawn(async move {
                    clock.sleep(duration).await;
                    stop.cancel();
                })
            });
            run_closed(
                &context,
                plan.concurrency,
                plan.iterations,
                rate,
                pause_rx,
                load_start,
                false,
            )
            .await?;
            if let Some(deadline) = deadline {
                deadline.abort();
            }
            let started = context.started.load(Ordering::Relaxed);
            let sending_secs = clock.elapsed().as_secs_f64();
            Pacing {
                target_per_sec: rate.map(|r| f64::from(r.get())),
                peak_target_per_sec: rate.map(|r| f64::from(r.get())),
                started,
                sending_secs,
                achieved_per_sec: per_second(started, sending_secs),
                stopped_early: false,
                open_model: None,
                scheduled_per_second: Vec::new(),
            }
        }
        LoadShape::Open {
            schedule,
            max_in_flight,
        } => {
            run_open(
                &context,
                &schedule,
                max_in_flight,
                plan.iterations,
                pause_rx,
                &clock,
                load_start,
            )
            .await
        }
    };
    // The run's own deadline cancels only the child token; the parent is cancelled by the user.
    let pacing = Pacing {
        stopped_early: cancel.is_cancelled(),
        ..pacing
    };

    // Dropping the context drops the last sender held here; in-flight tasks hold theirs until
    // they finish (bounded by the request timeout).
    drop(context);
    let recorder = recording.await?;
    let mut bench = collector.await??;
    if let Some(open) = &pacing.open_model {
        // rlt prints "with concurrency N"; in the open model the honest N is the peak reached.
        bench.concurrency = u32::try_from(open.peak_in_flight).unwrap_or(u32::MAX);
    }
    Ok(LoadResult {
        recorder,
        bench,
        pacing,
    })
}

/// `concurrency` workers in a closed loop until `stop`, `iterations` or the channel closes.
/// Send and answer times are recorded relative to `origin`.
async fn run_closed(
    context: &Arc<Context>,
    concurrency: NonZeroU32,
    iterations: Option<u64>,
    rate: Option<NonZeroU32>,
    pause: watch::Receiver<bool>,
    origin: Instant,
    warmup: bool,
) -> Result<(), Error> {
    let sequence = Arc::new(AtomicU64::new(0));
    let pacer = rate.map(|rate| Arc::new(Pacer::new(rate)));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.get() {
        let (context, sequence, pacer, mut pause) = (
            Arc::clone(context),
            Arc::clone(&sequence),
            pacer.clone(),
            pause.clone(),
        );
        workers.spawn(async move {
            let mut rng = StdRng::from_rng(&mut rand::rng());
            loop {
                tokio::select! {
                    biased;
                    () = context.stop.cancelled() => break,
                    () = wait_while_paused(&mut pause) => {}
                }
                if let Some(pacer) = &pacer {
                    tokio::select! {
                        biased;
                        () = context.stop.cancelled() => break,
                        () = pacer.wait_turn() => {}
                    }
                }
                let seq = sequence.fetch_add(1, Ordering::Relaxed);
                if iterations.is_some_and(|n| seq >= n) {
                    break;
                }
                let request = mix::plan(seq, &mut rng);
                context.started.fetch_add(1, Ordering::Relaxed);
                let completed =
                    execute(&context.api, &request, Instant::now(), origin, warmup).await;
                if context.done.send(completed).is_err() {
                    break;
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    Ok(())
}

/// Starts request `i` at `load_start + schedule.arrival(i)` whatever the server does.
///
/// Each due instant comes from the timetable, never from the previous start, so a late start
/// delays no other and latency counts from the instant the request was due. A rate limiter
/// cannot stand in for this: governor (rlt's, for `-r`) hands out no due instant, holds one rate
/// (no ramp), and with a burst of 1 every late wake-up pushes back every later start — measured
/// with its `until_ready` over 1,700 starts at 340/s, the last one is 240-389 ms late and
/// 315.5-324.4/s are sent; over 9,000 at 3,000/s, 1.06-1.62 s late and 1,948-2,214/s sent (the
/// timetable here: 147-186 µs and 119-127 µs late at the median, the rate kept) — while a
/// larger burst starts the first second's requests at once, up to a second early.
async fn run_open(
    context: &Arc<Context>,
    schedule: &Schedule,
    max_in_flight: usize,
    iterations: Option<u64>,
    mut pause: watch::Receiver<bool>,
    clock: &Clock,
    load_start: Instant,
) -> Pacing {
    let scheduled = iterations.map_or_else(
        || schedule.arrival_count(),
        |n| n.min(schedule.arrival_count()),
    );
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut origin = load_start;
    let mut scheduled_per_second: Vec<u64> = Vec::new();
    let (mut late_starts, mut max_lag, mut cap_waits, mut peak_in_flight) =
        (0, Duration::ZERO, 0, 0);
    let mut started = 0;
    let mut last_start = Duration::ZERO;

    for seq in 0..scheduled {
        let Some(offset) = schedule.arrival(seq) else {
            break;
        };
        if *pause.borrow() {
            // A TUI pause suspends the timetable: shift it by the pause instead of bursting the
            // backlog on resume.
            let paused_at = Instant::now();
            tokio::select! {
                biased;
                () = context.stop.cancelled() => break,
                () = wait_while_paused(&mut pause) => {}
            }
            origin += paused_at.elapsed();
        }
        let due = origin + offset;
        let second = usize::try_from((due - load_start).as_secs()).unwrap_or(usize::MAX);
        if scheduled_per_second.len() <= second {
            scheduled_per_second.resize(second + 1, 0);
        }
        scheduled_per_second[second] += 1;
        tokio::select! {
            biased;
            () = context.stop.cancelled() => break,
            () = sleep_precisely_until(due) => {}
        }
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                cap_waits += 1;
                tokio::select! {
                    biased;
                    () = context.stop.cancelled() => break,
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // the semaphore is never closed
                    },
                }
            }
        };
        let lag = due.elapsed();
        max_lag = max_lag.max(lag);
        if lag > LATE_START {
            late_starts += 1;
        }
        peak_in_flight = peak_in_flight.max(max_in_flight - slots.available_permits());

        let request = mix::plan(seq, &mut rng);
        let task_context = Arc::clone(context);
        tokio::spawn(async move {
            // Latency counts from `due`, not from now: time spent waiting to start is the
            // server's (or the tester's) delay, and hiding it is coordinated omission.
            let completed = execute(&task_context.api, &request, due, load_start, false).await;
            let _ = task_context.done.send(completed);
            drop(slot);
        });
        started += 1;
        last_start = origin.elapsed();
    }

    // The timetable's window ends where request `scheduled` would have been due: the end of the
    // schedule, or earlier when -n cut it short.
    let planned_end = schedule
        .arrival(scheduled)
        .unwrap_or_else(|| schedule.duration());
    let target = if planned_end == schedule.duration() {
        schedule.mean_rate()
    } else {
        per_second(scheduled, planned_end.as_secs_f64())
    };
    // A completed timetable lasted its whole window even though its last arrival is a little
    // before the end (or after it, if starts lagged); a stopped one lasted until it was stopped.
    let sending = if started == scheduled {
        planned_end.max(last_start)
    } else {
        clock.elapsed()
    };
    let sending_secs = sending.as_secs_f64();
    Pacing {
        target_per_sec: Some(target),
        peak_target_per_sec: Some(schedule.peak_rate()),
        started,
        sending_secs,
        achieved_per_sec: per_second(started, sending_secs),
        stopped_early: false,
        open_model: Some(OpenModelPacing {
            scheduled,
            not_started: scheduled - started,
            late_starts,
            max_start_lag_ms: max_lag.as_secs_f64() * 1000.0,
            in_flight_cap_waits: cap_waits,
            peak_in_flight,
            max_in_flight,
        }),
        scheduled_per_second,
    }
}

/// Sends `request` and judges the answer; latency counts from `measured_from`, and the send and
/// answer times are given relative to `origin`.
pub async fn execute(
    api: &Api,
    request: &PlannedRequest,
    measured_from: Instant,
    origin: Instant,
    warmup: bool,
) -> Completed {
    let sent = Instant::now();
    let answer = match request.body() {
        Some(body) => api.transaction(request.client, &body).await,
        None => api.statement(request.client).await,
    };
    let answered = Instant::now();
    let latency = answered.saturating_duration_since(measured_from);
    let (outcome, bytes) = match answer {
        Ok(answer) => (
            judge(request.kind, request.client, answer.status, &answer.body),
            answer.body.len() as u64,
        ),
        Err(error) => (Outcome::Failed(Failure::NoAnswer { error }), 0),
    };
    Completed {
        kind: request.kind,
        client: request.client,
        signed_amount: request.signed_amount(),
        latency,
        sent_at: sent.saturating_duration_since(origin),
        answered_at: answered.saturating_duration_since(origin),
        bytes,
        outcome,
        warmup,
    }
}

/// What rlt is told about a request. Only an OK answer is a `Success`, so rlt's success ratio
/// is the share of OK answers (a debit's 422 is an expected refusal, hence `Success(422)`).
pub fn iter_report(completed: &Completed) -> IterReport {
    let status = match &completed.outcome {
        Outcome::Ok { status } => Status::success(i64::from(*status)),
        Outcome::Failed(Failure::NoAnswer {
            error: CallError::Timeout,
        }) => Status::error(TIMEOUT_STATUS_CODE),
        Outcome::Failed(Failure::NoAnswer {
            error: CallError::Transport(_),
        }) => Status::error(TRANSPORT_STATUS_CODE),
        Outcome::Failed(Failure::Inconsistent { status, .. }) => match status {
            400..=499 => Status::client_error(i64::from(*status)),
            500..=599 => Status::server_error(i64::from(*status)),
            // An allowed status whose body broke the rules, or an odd status: a plain error.
            other => Status::error(i64::from(*other)),
        },
    };
    IterReport {
        duration: completed.latency,
        status,
        bytes: completed.bytes,
        items: 1,
    }
}

/// Closed-loop pacing with rlt's semantics (a GCRA with a burst of 1): starts are at least
/// `1/rate` apart, and a slot nobody was free to take is lost rather than made up later — which
/// is exactly why a closed loop sends less when the server stalls.
///
/// A waiter takes the next slot under the lock and sleeps once, until that slot. governor's
/// `RateLimiter`, which rlt uses for the same quota, tells every waiter when to try again: all
/// idle workers wake for each slot, all but one sleep again, and each wake-up's lateness moves
/// the schedule. Measured with 64 workers and no request time, on 2 cores: at 340/s this pacer
/// keeps 340.0/s for 45-51 µs of CPU per start, governor 308-324/s for 177-213 µs; at 3,000/s,
/// 2,999.0/s for 17-19 µs against 1,954-2,170/s for 149-174 µs.
struct Pacer {
    interval: Duration,
    next: std::sync::Mutex<Instant>,
}

impl Pacer {
    fn new(rate: NonZeroU32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.get(),
            next: std::sync::Mutex::new(Instant::now()),
        }
    }

    async fn wait_turn(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        sleep_until(slot).await;
    }
}

/// Waits until `due` to within the OS timer's slack (tens of microseconds), not tokio's 1 ms
/// ticks: tokio rounds a deadline up to its next tick, and open-model latencies count from `due`,
/// so that rounding put up to a millisecond of the tester's own lag into every one of them
/// (measured: the nginx ceiling's median at 340/s fell from 1.48-1.63 ms to 0.54-0.59 ms; see
/// BENCHMARKS.md). tokio sleeps until two ticks before; the rest is slept on a blocking-pool
/// thread. That hand-off is the wait's cost: 163-204 µs of CPU per start at 340/s and 74-101 µs
/// at 3,000/s, measured on 2 cores (tokio's own sleep: 97-133 µs and 24-35 µs).
async fn sleep_precisely_until(due: Instant) {
    const TOKIO_TICK: Duration = Duration::from_millis(1);
    if let Some(early) = due.checked_sub(2 * TOKIO_TICK)
        && early > Instant::now()
    {
        sleep_until(early).await;
    }
    let rest = due.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        // An error means the runtime is shutting down: the wait is over either way.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

async fn wait_while_paused(pause: &mut watch::Receiver<bool>) {
    while *pause.borrow_and_update() {
        if pause.changed().await.is_err() {
            return;
        }
    }
}

/// `count` a second over `secs` seconds; 0 over an empty span.
pub(crate) fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        mix::RequestKind,
        validate::{Problem, ProblemClass},
    };
    use rlt::StatusKind;

    fn completed(outcome: Outcome) -> Completed {
        Completed {
            kind: RequestKind::Debit,
            client: 1,
            signed_amount: -1,
            latency: Duration::from_millis(3),
            sent_at: Duration::ZERO,
            answered_at: Duration::from_millis(3),
            bytes: 10,
            outcome,
            warmup: false,
        }
    }

    fn inconsistent(status: u16) -> Outcome {
        Outcome::Failed(Failure::Inconsistent {
            status,
            problem: Problem {
                class: ProblemClass::BrokenInvariant,
                detail: String::new(),
            },
        })
    }

    #[test]
    fn only_ok_answers_reach_rlt_as_success() {
        let kind = |outcome| iter_report(&completed(outcome)).status.kind();
        assert_eq!(kind(Outcome::Ok { status: 200 }), StatusKind::Success);
        assert_eq!(kind(Outcome::Ok { status: 422 }), StatusKind::Success);
        assert_eq!(kind(inconsistent(200)), StatusKind::Error);
        assert_eq!(kind(inconsistent(422)), StatusKind::ClientError);
        assert_eq!(kind(inconsistent(503)), StatusKind::ServerError);
        let timeout = Outcome::Failed(Failure::NoAnswer {
            error: CallError::Timeout,
        });
        assert_eq!(
            iter_report(&completed(timeout)).status,
            Status::error(TIMEOUT_STATUS_CODE)
        );
        let refused = Outcome::Failed(Failure::NoAnswer {
            error: CallError::Transport("refused".into()),
        });
        assert_eq!(
            iter_report(&completed(refused)).status,
            Status::error(TRANSPORT_STATUS_CODE)
        );
    }

    /// Open-model latencies count from each request's due instant, so a start that is late by
    /// the tester's own timer inflates them all. tokio's `sleep_until` rounds up to its next
    /// 1 ms tick (a median lateness of 1.0-1.4 ms measured here); the open model's wait must be
    /// late by far less (110-250 µs). Both are measured interleaved, as a ratio of medians; a
    /// machine busy enough to delay every wake-up can spoil one attempt, so it has five, and the
    /// old wait (a ratio near 1) fails them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_model_starts_are_not_rounded_to_tokios_millisecond_ticks() {
        use rand::Rng as _;
        let mut rng = StdRng::seed_from_u64(7);
        let median = |late: &mut Vec<Duration>| {
            late.sort();
            late[late.len() / 2]
        };
        let mut attempts = Vec::new();
        for _ in 0..5 {
            let (mut tokio_late, mut ours_late) = (Vec::new(), Vec::new());
            for _ in 0..25 {
                for precise in [false, true] {
                    // Anywhere within a tick, a few ticks ahead.
                    let due =
                        Instant::now() + Duration::from_micros(rng.random_range(3_000..4_000));
                    if precise {
                        sleep_precisely_until(due).await;
                    } else {
                        sleep_until(due).await;
                    }
                    let late = Instant::now().saturating_duration_since(due);
                    if precise {
                        &mut ours_late
                    } else {
                        &mut tokio_late
                    }
                    .push(late);
                }
            }
            let (tokio_median, ours_median) = (median(&mut tokio_late), median(&mut ours_late));
            if ours_median * 2 < tokio_median {
                return;
            }
            attempts.push((ours_median, tokio_median));
        }
        panic!("median lateness (ours, tokio's) in every attempt: {attempts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_starts_and_drops_slots_nobody_took() {
        let pacer = Pacer::new(NonZeroU32::new(10).expect("non-zero"));
        let t0 = Instant::now();
        for _ in 0..3 {
            pacer.wait_turn().await;
        }
        assert_eq!(t0.elapsed(), Duration::from_millis(200));
        // Nobody asks for a second: those 10 slots are gone, the next start is immediate and
        // the one after it one interval later — no burst to catch up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t1 = Instant::now();
        pacer.wait_turn().await;
        pacer.wait_turn().await;
        assert_eq!(t1.elapsed(), Duration::from_millis(100));
    }
}
