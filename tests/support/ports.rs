//! Ports for the servers tests start, shared by the workspace's test crates (each includes this
//! file with `#[path]`).
//!
//! A port the kernel hands out for `bind(:0)` is an ephemeral one, which any outgoing connection
//! (another test's client, nginx reaching an instance over TCP) may take before the server binds
//! it: nginx then fails with "Address already in use". So the ports here lie below the kernel's
//! ephemeral range, where no outgoing connection is ever given one, and each is handed out once
//! per process. The walk starts at an offset drawn from the process id so that test processes
//! running side by side (nextest) seldom meet; a bind check skips what is listening already.

#![allow(dead_code)] // each test crate uses part of it

use std::net::TcpListener;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The first port handed out is at least this.
const LOW: u32 = 20_000;

/// A port for a server a test starts: nothing listens on it now, no other call in this process
/// returned it, and it lies below the ephemeral range.
pub fn free_port() -> u16 {
    free_ports_in_a_row(1)
}

/// The first of `count` consecutive ports, each as [`free_port`] promises: for a server that
/// derives ports from its first one (`scripts/stack`'s STACK_PORT+3 and +6).
pub fn free_ports_in_a_row(count: u32) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let high = ephemeral_low();
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let first = LOW + (start + NEXT.fetch_add(count, Ordering::Relaxed)) % span;
        let ports = first..first + count;
        if ports.end <= high
            && ports
                .clone()
                .all(|port| TcpListener::bind(("127.0.0.1", port as u16)).is_ok())
        {
            return first as u16;
        }
    }
    panic!("no {count} free ports in a row in {LOW}..{high}");
}

/// The bottom of the kernel's ephemeral range, read once. A range starting within 1,000 ports of
/// [`LOW`] leaves no room below it, and the tests stop there rather than race.
fn ephemeral_low() -> u32 {
    static LOW_END: OnceLock<u32> = OnceLock::new();
    let low = *LOW_END.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32_768)
    });
    assert!(
        low >= LOW + 1_000,
        "the ephemeral port range starts at {low}: the tests need free ports below it, from {LOW}"
    );
    low
}
