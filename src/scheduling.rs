//! How Linux schedules the process's threads (`API_SCHED_POLICY`).
//!
//! An instance behind nginx on a small machine wakes for every few requests: nginx writes a
//! request, the instance's worker wakes, answers, and sleeps again. Under Linux's default policy
//! a thread that wakes may preempt the one running, which on the challenge's machine is mostly
//! nginx in the middle of its own work; each preemption is a pair of context switches, paid by
//! both. `SCHED_BATCH` tells the kernel these threads are throughput work: a woken thread waits
//! for the running one to sleep or use up its slice, so each wake-up finds more requests waiting
//! and both sides switch less (on a 2-core machine, 13-15% less CPU per request in the instances
//! and 8% less in the front nginx: BENCHMARKS.md). A thread
//! under `SCHED_BATCH` still gets its fair share of the CPU; only wake-up preemption goes.
//!
//! [`apply`] sets the policy of the calling thread, and Linux gives every thread the policy of
//! the thread that created it: `main` calls it before any other thread starts, so the Actix
//! workers and sqlx's connection threads all run under it. Lowering a
//! thread to `SCHED_BATCH` needs no privilege (containers included).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How Linux schedules the process's threads, named as `API_SCHED_POLICY` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedPolicy {
    /// `SCHED_BATCH`: a woken thread does not preempt the running one (Linux only).
    Batch,
    /// Linux's default policy, `SCHED_OTHER`.
    Normal,
}

impl Default for SchedPolicy {
    /// `batch` on Linux, `normal` elsewhere.
    fn default() -> Self {
        if cfg!(target_os = "linux") {
            Self::Batch
        } else {
            Self::Normal
        }
    }
}

impl fmt::Display for SchedPolicy {
    /// The name `API_SCHED_POLICY` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

/// Puts the calling thread, and every thread it creates from now on, under `policy`.
#[cfg(target_os = "linux")]
pub fn apply(policy: SchedPolicy) -> std::io::Result<()> {
    let linux_policy = match policy {
        SchedPolicy::Batch => libc::SCHED_BATCH,
        SchedPolicy::Normal => libc::SCHED_OTHER,
    };
    // SAFETY: an all-zero `sched_param` is valid (priority 0, the only one these policies
    // take; musl's has more fields than glibc's); pid 0 names the calling thread.
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: `param` lives for the duration of the call.
    if unsafe { libc::sched_setscheduler(0, linux_policy, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Only `normal` exists outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn apply(policy: SchedPolicy) -> std::io::Result<()> {
    match policy {
        SchedPolicy::Normal => Ok(()),
        SchedPolicy::Batch => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "SCHED_BATCH exists only on Linux",
        )),
    }
}
