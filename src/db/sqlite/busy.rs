//! How a connection waits while another process holds SQLite's write lock, and how long it waited.
//!
//! Both API instances write the same file, so a write regularly finds the lock taken by the other
//! process. SQLite's default busy handler (`sqlite3_busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25,
//! ... milliseconds between attempts, while the other process holds the lock for only tens of
//! microseconds: every collision would cost at least a millisecond, straight into tail latency.
//! Here a wait retries after 20 µs, doubles its pause up to 1 ms, and gives up (the request then
//! fails with 503) after the busy timeout.
//!
//! Two kinds of waiter share these pauses and counters: the reader connections, through SQLite's
//! busy handler ([`keep_waiting`], called on their sqlx threads), and the writer's committer,
//! through a [`Wait`]. The committer runs on an Actix worker, so each of its pauses is a sleep of
//! that worker thread (it yields to the worker's ready requests once first). The counters are
//! process-wide statics, since the handler is a C callback; `GET /metrics` reports them.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The first pause after finding the lock taken.
const FIRST_PAUSE: Duration = Duration::from_micros(20);
/// The longest pause between two attempts.
const LONGEST_PAUSE: Duration = Duration::from_millis(1);

static STATS: Counters = Counters {
    waits: AtomicU64::new(0),
    retries: AtomicU64::new(0),
    waited_ns: AtomicU64::new(0),
    longest_ns: AtomicU64::new(0),
    timeouts: AtomicU64::new(0),
};

thread_local! {
    /// When the current wait of this connection's worker thread began.
    static WAIT_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

struct Counters {
    waits: AtomicU64,
    retries: AtomicU64,
    waited_ns: AtomicU64,
    longest_ns: AtomicU64,
    timeouts: AtomicU64,
}

/// How often and how long this process waited for a lock held by another connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LockWaits {
    /// Statements that found the lock taken at least once.
    pub waits: u64,
    /// Attempts after the first, summed over all waits.
    pub retries: u64,
    /// Time spent waiting, summed over all waits, in milliseconds.
    pub total_ms: f64,
    /// The longest single wait, in milliseconds.
    pub longest_ms: f64,
    /// Waits that reached the busy timeout and failed.
    pub timeouts: u64,
}

/// This process's lock-wait counters since it started.
pub fn lock_waits() -> LockWaits {
    let ms = |ns: &AtomicU64| ns.load(Relaxed) as f64 / 1e6;
    LockWaits {
        waits: STATS.waits.load(Relaxed),
        retries: STATS.retries.load(Relaxed),
        total_ms: ms(&STATS.waited_ns),
        longest_ms: ms(&STATS.longest_ns),
        timeouts: STATS.timeouts.load(Relaxed),
    }
}

/// The busy handler's decision (see `ffi::on_busy`), on the thread running the statement, each
/// time a lock is found taken: after a pause, `true` to try again; `false`, counted as a timeout,
/// once `timeout` has passed since the wait began. `attempt` counts from 0 within one wait.
pub fn keep_waiting(timeout: Duration, attempt: c_int) -> bool {
    let now = Instant::now();
    let started = WAIT_STARTED.with(|started| {
        if attempt == 0 || started.get().is_none() {
            started.set(Some(now));
        }
        started.get().unwrap_or(now)
    });
    if attempt == 0 {
        STATS.waits.fetch_add(1, Relaxed);
    } else {
        STATS.retries.fetch_add(1, Relaxed);
    }
    if now.duration_since(started) >= timeout {
        STATS.timeouts.fetch_add(1, Relaxed);
        return false;
    }
    sleep_counted(attempt, started);
    true
}

/// One wait of the writer for the write lock, counted like the busy handler's waits.
#[derive(Debug)]
pub struct Wait {
    started: Instant,
    attempt: c_int,
    timeout: Duration,
}

impl Wait {
    /// Starts a wait that gives up after `timeout`.
    pub fn start(timeout: Duration) -> Self {
        STATS.waits.fetch_add(1, Relaxed);
        Self {
            started: Instant::now(),
            attempt: 0,
            timeout,
        }
    }

    /// Sleeps before the next attempt, the first time for [`FIRST_PAUSE`], then twice as long
    /// each time up to [`LONGEST_PAUSE`]; `false` (counted as a timeout) once `timeout` has passed.
    pub fn pause(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.started) >= self.timeout {
            STATS.timeouts.fetch_add(1, Relaxed);
            return false;
        }
        if self.attempt > 0 {
            STATS.retries.fetch_add(1, Relaxed);
        }
        sleep_counted(self.attempt, self.started);
        self.attempt = self.attempt.saturating_add(1);
        true
    }
}

/// Sleeps [`pause`]`(attempt)` and counts the time slept, and the wait begun at `started`.
fn sleep_counted(attempt: c_int, started: Instant) {
    let before = Instant::now();
    std::thread::sleep(pause(attempt));
    let after = Instant::now();
    STATS
        .waited_ns
        .fetch_add(nanos(after.duration_since(before)), Relaxed);
    STATS
        .longest_ns
        .fetch_max(nanos(after.duration_since(started)), Relaxed);
}

/// The pause before attempt `attempt + 1`: doubling from [`FIRST_PAUSE`] up to [`LONGEST_PAUSE`].
fn pause(attempt: c_int) -> Duration {
    let doublings = attempt.clamp(0, 10) as u32;
    (FIRST_PAUSE * 2u32.pow(doublings)).min(LONGEST_PAUSE)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_twenty_microseconds_up_to_one_millisecond() {
        let pauses: Vec<u128> = (0..9).map(|attempt| pause(attempt).as_micros()).collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(pause(c_int::MAX), LONGEST_PAUSE);
    }
}
