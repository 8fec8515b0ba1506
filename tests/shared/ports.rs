//! Ports for the servers tests start, shared by the workspace's test crates (each includes this
//! file with `#[path]`).

use std::net::TcpListener;

/// A port for a server a test starts: nothing listens on it now, no other call in this process
/// returned it, and it lies below the kernel's ephemeral range. A port the kernel hands out for
/// `bind(:0)` is an ephemeral one, which any outgoing connection (another test's client, nginx
/// reaching an instance over TCP) may take before the server binds it: nginx then fails with
/// "Address already in use". Ports below the range are never taken that way. The walk starts at
/// an offset drawn from the process id so that test processes running side by side (nextest)
/// seldom meet; the bind check catches what is listening already.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768)
        .clamp(LOW + 1_000, 32_768);
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{high}");
}
