//! What recording one completed request costs: the whole recorder, and the time series alone,
//! in nanoseconds and heap allocations per request (BENCHMARKS.md has the numbers).
//!
//! `cargo run --release -p load-test --example record_cost`

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use load_test::{
    mix::RequestKind,
    outcome::{Completed, Outcome},
    series::SeriesRecorder,
    stats::Recorder,
};

/// Counts heap allocations, so "no allocation per request" is measured, not assumed.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A minute of traffic at 20,000 requests/s, the official mix, 200s and a few 422s.
const REQUESTS: u64 = 1_200_000;

fn requests() -> Vec<Completed> {
    (0..REQUESTS)
        .map(|i| {
            let sent = Duration::from_micros(i * 50);
            let latency = Duration::from_micros(500 + (i * 7919) % 20_000);
            Completed {
                kind: load_test::mix::kind_at(i),
                client: 1 + (i % 5) as u32,
                signed_amount: if load_test::mix::kind_at(i) == RequestKind::Credit {
                    10
                } else {
                    -10
                },
                latency,
                sent_at: sent,
                answered_at: sent + latency,
                bytes: 30,
                outcome: Outcome::Ok {
                    status: if i % 3 == 0 { 422 } else { 200 },
                },
                warmup: false,
            }
        })
        .collect()
}

fn measure(name: &str, completed: &[Completed], mut record: impl FnMut(&Completed)) {
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    for request in completed {
        record(black_box(request));
    }
    let took = start.elapsed();
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    println!(
        "{name}: {:.1} ns/request, {allocated} allocations for {} requests ({} s of series)",
        took.as_nanos() as f64 / completed.len() as f64,
        completed.len(),
        REQUESTS * 50 / 1_000_000
    );
}

fn main() {
    let completed = requests();
    for _ in 0..3 {
        let mut series = SeriesRecorder::default();
        measure("series alone   ", &completed, |c| series.record(c));
        black_box(&series);
        let mut recorder = Recorder::new(5, Duration::from_millis(250));
        measure("whole recorder ", &completed, |c| recorder.record(c));
        black_box(&recorder);
    }
}
