//! The faults the SQLite stack must live through, each under load through real nginx
//! ([`Stack`]), each ending with the exact audit: every 200 in the ledger once, no 422 in it, and
//! the balances equal to what the ledger's answers explain.
//!
//! - the disk holding the database fills up, then space returns (a size-limited tmpfs, root
//!   only);
//! - one instance frozen (SIGSTOP) for seconds, then thawed;
//! - nginx reloaded (SIGHUP) several times;
//! - one instance stopped (SIGTERM);
//! - the database file unreadable or not a database when an instance starts.
//!
//! Each prints what the clients saw (answers by status), how long recovery took and the audit's
//! counts; docs/DEPLOYMENT.md's "Faults" section reports them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tempfile::TempDir;

use crate::helpers::{
    Api, HeldWriteLock, Samples, body, client_builder, hold_sqlite_write_lock, http_client,
};
use crate::stack::{
    Seen, Sent, Stack, alive, audit, mixed_load, mixed_load_on, signal, status_counts, text,
};

/// Whether `request` got a definite outcome: 200 (applied) or 422 (refused, not applied).
fn definite(request: &Sent) -> bool {
    matches!(
        request.seen,
        Seen::Status(StatusCode::OK | StatusCode::UNPROCESSABLE_ENTITY)
    )
}

/// At most the first ten of `lines`, for a failure message that stays readable.
fn first_ten(lines: &[String]) -> &[String] {
    &lines[..lines.len().min(10)]
}

/// One request in a line, for a failure message.
fn describe(request: &Sent) -> String {
    format!(
        "{:?} at {:?}..{:?}: {:?} {:?}",
        request.transaction, request.started, request.finished, request.seen, request.error_body
    )
}

/// The requests that got anything but a definite answer, one line each, for a failure message.
fn failures(sent: &[Sent]) -> Vec<String> {
    sent.iter()
        .filter(|request| !definite(request))
        .map(describe)
        .collect()
}

/// The slowest answer among `sent`.
fn slowest(sent: &[Sent]) -> Duration {
    sent.iter()
        .map(|request| request.finished - request.started)
        .max()
        .unwrap_or_default()
}

/// Both instances' logs (`STACK_DIR/api0N.log`).
fn instance_logs(stack: &Stack) -> String {
    ["api01", "api02"]
        .map(|name| {
            std::fs::read_to_string(stack.dir.path().join(format!("{name}.log")))
                .unwrap_or_default()
        })
        .concat()
}

// ---- the disk fills up -------------------------------------------------------------------------

/// A tmpfs of `size` mounted on a temporary directory; unmounted when dropped.
#[derive(Debug)]
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts it; the error names the reason (not root, no mount privilege in a container).
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|err| err.to_string())?;
        let mount = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|err| format!("mount: {err}"))?;
        if !mount.status.success() {
            return Err(format!("mount -t tmpfs: {}", text(&mount)));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|status| status.success());
        // Something still holds a file there (an instance that outlived its stack): detach it.
        if !unmounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Writes zeros to `path` until the file system has no space left; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut filler = std::fs::File::create(path).expect("the filler file");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match filler.write(&chunk) {
            Ok(0) => break,
            Ok(bytes) => written += bytes as u64,
            Err(err) if err.kind() == std::io::ErrorKind::StorageFull => break,
            Err(err) => panic!("filling {}: {err}", path.display()),
        }
    }
    written
}

/// The disk under the database fills up while the stack takes writes, then space returns.
/// Writes get 503 saying storage is full (never 500) and nothing of them is stored; statements
/// keep being answered; once the filler is deleted writes succeed again, and the checkpoints and
/// the WAL recover, all without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_503_and_the_stack_recovers_when_space_returns() {
    if !is_root() {
        eprintln!("SKIPPED: mounting the test's small tmpfs needs root");
        return;
    }
    let tmpfs = match Tmpfs::mount("16m") {
        Ok(tmpfs) => tmpfs,
        Err(err) => {
            assert!(std::env::var_os("CI").is_none(), "{err}");
            eprintln!("SKIPPED: {err}");
            return;
        }
    };
    let stack = Stack::up_with_database_at(&tmpfs.path().join("rinha.db"));
    let filler = tmpfs.path().join("filler");
    let (tasks, fill_at, free_at, stop_at) = (
        8,
        Duration::from_secs(1),
        Duration::from_secs(4),
        Duration::from_secs(7),
    );

    let start = Instant::now();
    let load = mixed_load(&stack.address, tasks, 100_000, start, stop_at);
    let fault = async {
        tokio::time::sleep(fill_at).await;
        let path = filler.clone();
        let filled = tokio::task::spawn_blocking(move || fill(&path))
            .await
            .expect("filler");
        let filled_at = start.elapsed();
        tokio::time::sleep(free_at.saturating_sub(filled_at)).await;
        std::fs::remove_file(&filler).expect("delete the filler");
        (filled, filled_at, start.elapsed())
    };
    let (sent, (filled, filled_at, freed_at)) = tokio::join!(load, fault);

    let counts = status_counts(&sent);
    let full: Vec<&Sent> = sent
        .iter()
        .filter(|request| matches!(request.seen, Seen::Status(StatusCode::SERVICE_UNAVAILABLE)))
        .collect();
    let first_full = full.iter().map(|request| request.started).min();
    let last_full = full.iter().map(|request| request.finished).max();
    let first_ok_after_free = sent
        .iter()
        .filter(|request| {
            request.transaction.is_some()
                && request.started >= freed_at
                && matches!(request.seen, Seen::Status(StatusCode::OK))
        })
        .map(|request| request.finished)
        .min();
    eprintln!(
        "disk filled ({filled} bytes) at {filled_at:?}, freed at {freed_at:?}; {} requests from \
         {tasks} tasks: {counts:?}; first 503 sent at {first_full:?}, last answered at \
         {last_full:?}; first write answered 200 after the freeing at {first_ok_after_free:?}",
        sent.len()
    );

    // Every answer is definite or a 503 saying the storage is full; a statement always answers.
    let storage_full = |request: &Sent| {
        request.transaction.is_some()
            && matches!(request.seen, Seen::Status(StatusCode::SERVICE_UNAVAILABLE))
            && request
                .error_body
                .as_deref()
                .is_some_and(|body| body.contains("storage is full"))
    };
    let other: Vec<String> = sent
        .iter()
        .filter(|request| !definite(request) && !storage_full(request))
        .map(describe)
        .collect();
    assert!(
        other.is_empty(),
        "{} answers were neither definite nor a storage-full 503, the first: {:#?}",
        other.len(),
        first_ten(&other)
    );
    assert!(
        !full.is_empty(),
        "no write was refused while the disk was full: the fault did not happen"
    );
    // Writes succeed again at once, without a restart.
    let recovered_by = freed_at + Duration::from_secs(1);
    assert!(
        full.iter().all(|request| request.started < recovered_by),
        "writes still refused more than 1 s after space returned: last 503 answered at {last_full:?}"
    );
    assert!(
        first_ok_after_free.is_some(),
        "no write succeeded after space returned"
    );

    // A refused write left nothing behind: a 503 here means not applied.
    let audit = audit(&stack, &sent).await;
    eprintln!("audit: {audit:?}");
    assert_eq!(audit.unknown, full.len());
    assert_eq!(audit.unknown_applied, 0, "a write answered 503 was stored");

    // Each refusal logged once, as a warning, never as a failed request.
    let logs = instance_logs(&stack);
    let warned = logs
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("storage is full"))
        .count();
    let causes: std::collections::BTreeSet<String> = logs
        .lines()
        .filter(|line| line.contains("storage is full"))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| line["cause"].as_str().map(str::to_owned))
        .collect();
    eprintln!("{warned} warnings logged, causes: {causes:#?}");
    assert_eq!(warned, full.len(), "one warning per refused write");
    assert!(!logs.contains("request failed"), "{logs}");

    // The checkpoints met the full disk too, and recover by themselves: with writes going on a
    // little, both instances' checkpoints succeed again (and fail no more) and find the WAL
    // started over. A checkpoint's duration is recorded whether it succeeds or fails.
    let checkpoints = |samples: &Samples| {
        let failed = samples.value("rinha_checkpoint_failures_total", &[]);
        let all = samples.value("rinha_checkpoint_duration_seconds_count", &[]);
        (failed, all - failed)
    };
    let mut at_end = [(0.0, 0.0); 2];
    for (instance, counts) in at_end.iter_mut().enumerate() {
        *counts = checkpoints(&stack.instance_metrics(instance).await);
    }
    let waited = Instant::now();
    let (mut later, mut wal_frames) = (at_end, [f64::MAX; 2]);
    let mut round = 0;
    // At least two checkpoint intervals (1 s each), so that each instance's task runs twice.
    while waited.elapsed() < Duration::from_millis(2500)
        || (wal_frames.iter().any(|&frames| frames > 100.0)
            && waited.elapsed() < Duration::from_secs(10))
    {
        round += 1;
        let answer = stack
            .transaction(1, &body(1, "c", &format!("wal{round}")))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
        for instance in 0..2 {
            let samples = stack.instance_metrics(instance).await;
            later[instance] = checkpoints(&samples);
            wal_frames[instance] = samples.value("rinha_wal_frames", &[]);
        }
    }
    eprintln!(
        "checkpoints per instance (failed, succeeded) when the load ended {at_end:?}, {:?} \
         later {later:?}; WAL frames after the last checkpoints {wal_frames:?}",
        waited.elapsed()
    );
    assert!(
        at_end.iter().any(|&(failed, _)| failed > 0.0),
        "no checkpoint met the full disk"
    );
    for instance in 0..2 {
        assert_eq!(
            later[instance].0,
            at_end[instance].0,
            "api0{}: checkpoints still fail with space back",
            instance + 1
        );
        assert!(
            later[instance].1 > at_end[instance].1,
            "api0{}: no checkpoint succeeded with space back",
            instance + 1
        );
    }
    assert!(
        wal_frames.iter().all(|&frames| frames <= 100.0),
        "the WAL did not start over: {wal_frames:?} frames"
    );
}

// ---- the database unreadable at start ------------------------------------------------------------

/// An instance whose database file is garbage, a directory, or in a directory that does not exist
/// exits at once, non-zero, saying which file and what is wrong with it.
#[test]
fn an_unusable_database_file_stops_the_instance_at_once_naming_the_file_and_the_cause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.db");
    // Not a SQLite header, and longer than one.
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, noise).expect("the garbage file");
    let directory = dir.path().join("directory.db");
    std::fs::create_dir(&directory).expect("the directory");
    let nowhere = dir.path().join("no-such-directory/rinha.db");
    let cases: [(&PathBuf, &str); 3] = [
        (&garbage, "file is not a database"),
        (&directory, "Is a directory"),
        (&nowhere, "No such file or directory"),
    ];
    for (file, cause) in cases {
        let started = Instant::now();
        let mut instance = Command::new(env!("CARGO_BIN_EXE_rinha-api"))
            .env("DATABASE_URL", format!("sqlite://{}", file.display()))
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", "0")
            .env("LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("rinha-api runs");
        // The usual patience for a start is the busy timeout, 5 s: an instance that is still
        // running after it is retrying or hanging.
        while instance.try_wait().expect("status").is_none()
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let took = started.elapsed();
        if instance.try_wait().expect("status").is_none() {
            let _ = instance.kill();
        }
        let output = instance.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "{}: exit {:?} after {took:?}: {}",
            file.display(),
            output.status.code(),
            stderr.trim()
        );
        assert!(
            took < Duration::from_secs(2),
            "{}: still running after {took:?}",
            file.display()
        );
        assert!(!output.status.success(), "{}: exited 0", file.display());
        assert!(
            stderr.contains(&file.display().to_string()) && stderr.contains(cause),
            "{}: stderr names neither the file nor '{cause}': {stderr}",
            file.display()
        );
    }
}

// ---- one instance frozen ------------------------------------------------------------------------

/// Sends SIGCONT to a process when dropped, so that a failing test never leaves an instance
/// frozen (`scripts/stack down` could not stop it).
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        if alive(self.0) {
            signal(self.0, "CONT");
        }
    }
}

/// api01 frozen (SIGSTOP) for 4 s under load, then thawed: nginx sends the new requests to api02
/// (least_conn: the frozen one's connections stay busy), those api01 held are answered when it
/// wakes, within nginx's 10 s read timeout, and nothing is lost. The test holds SQLite's write
/// lock around the signal, so api01 is never frozen inside a write transaction: that would stall
/// api02's writes too (the lock is shared; docs/DEPLOYMENT.md "Faults"), which is not what this
/// test is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_frozen_for_seconds_delays_only_what_it_held_and_loses_nothing() {
    let stack = Stack::up();
    let victim = stack.pid("api01");
    let _thaw = Thaw(victim);
    let (tasks, freeze_at, freeze_for, stop_at) = (
        8,
        Duration::from_secs(1),
        Duration::from_secs(4),
        Duration::from_secs(7),
    );

    let start = Instant::now();
    let load = mixed_load(&stack.address, tasks, 100_000, start, stop_at);
    let fault = async {
        tokio::time::sleep(freeze_at).await;
        let lock = sqlite_write_lock(&stack.db_path()).await;
        signal(victim, "STOP");
        let frozen_at = start.elapsed();
        lock.release().await;
        tokio::time::sleep(freeze_for).await;
        signal(victim, "CONT");
        (frozen_at, start.elapsed())
    };
    let (sent, (frozen_at, thawed_at)) = tokio::join!(load, fault);

    let counts = status_counts(&sent);
    let answered_while_frozen = sent
        .iter()
        .filter(|request| {
            request.started > frozen_at + Duration::from_millis(500)
                && request.finished < thawed_at
                && definite(request)
        })
        .count();
    let held: Vec<Duration> = sent
        .iter()
        .filter(|request| request.started < thawed_at && request.finished > thawed_at)
        .map(|request| request.finished - request.started)
        .collect();
    eprintln!(
        "api01 (pid {victim}) frozen from {frozen_at:?} to {thawed_at:?}; {} requests from {tasks} \
         tasks: {counts:?}; {answered_while_frozen} answered while it was frozen; {} answered \
         only after the thaw, slowest {:?}",
        sent.len(),
        held.len(),
        slowest(&sent)
    );
    let failed = failures(&sent);
    assert!(
        failed.is_empty(),
        "{} requests failed, the first: {:#?}\nnginx's error log:\n{}",
        failed.len(),
        first_ten(&failed),
        stack.nginx_errors()
    );
    assert!(
        answered_while_frozen > 50,
        "nginx did not route around the frozen instance: {answered_while_frozen} answers"
    );
    let audit = audit(&stack, &sent).await;
    eprintln!("audit: {audit:?}");
    assert_eq!(audit.unknown, 0);
}

// ---- nginx reloads ------------------------------------------------------------------------------

/// The pids of the worker processes of nginx's master `pid`.
fn nginx_workers(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// nginx reloaded (SIGHUP, what `nginx -s reload` sends) five times under two loads at once:
/// clients opening a new connection per request (as the challenge's load test does) and clients
/// keeping their connections alive. The first see no error at all. For the second, a reload
/// closes each idle kept-alive connection at once (the old worker's graceful stop), and a request
/// the client sent on it in that instant is lost with the connection, before nginx read it: such
/// a request fails with a transport error right after a reload, and is never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_nginx_under_load_fails_no_request_on_a_new_connection() {
    let stack = Stack::up();
    let master = stack.pid("nginx");
    let workers_before = nginx_workers(master);
    let (tasks, reloads, every, stop_at) =
        (4, 5, Duration::from_millis(700), Duration::from_secs(5));
    let pooled = http_client();
    let fresh = client_builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let start = Instant::now();
    let kept_alive = mixed_load_on(&pooled, &stack.address, 0..tasks, 100_000, start, stop_at);
    let new_connections = mixed_load_on(
        &fresh,
        &stack.address,
        tasks..2 * tasks,
        100_000,
        start,
        stop_at,
    );
    let fault = async {
        let mut at = Vec::new();
        for _ in 0..reloads {
            tokio::time::sleep(every).await;
            signal(master, "HUP");
            at.push(start.elapsed());
        }
        at
    };
    let (kept_alive, new_connections, reloaded_at) =
        tokio::join!(kept_alive, new_connections, fault);
    let workers_after = nginx_workers(master);

    eprintln!(
        "nginx (pid {master}) reloaded at {reloaded_at:?}, workers {workers_before:?} -> \
         {workers_after:?}; {tasks} tasks on new connections: {} requests, {:?}, slowest {:?}; \
         {tasks} tasks on kept-alive connections: {} requests, {:?}, slowest {:?}",
        new_connections.len(),
        status_counts(&new_connections),
        slowest(&new_connections),
        kept_alive.len(),
        status_counts(&kept_alive),
        slowest(&kept_alive),
    );
    assert!(alive(master), "nginx's master still runs");
    assert!(
        !workers_after.is_empty()
            && workers_after
                .iter()
                .all(|pid| !workers_before.contains(pid)),
        "the reloads replaced nginx's workers: {workers_before:?} -> {workers_after:?}"
    );
    let failed = failures(&new_connections);
    assert!(
        failed.is_empty(),
        "{} requests on new connections failed across the reloads, the first: {:#?}\n\
         nginx's error log:\n{}",
        failed.len(),
        first_ten(&failed),
        stack.nginx_errors()
    );
    // On kept-alive connections: only transport errors, each soon after a reload (within a
    // second: the old worker closes its idle connections when the master gets to it).
    let lost: Vec<&Sent> = kept_alive
        .iter()
        .filter(|request| !definite(request))
        .collect();
    for request in &lost {
        assert!(
            matches!(request.seen, Seen::Transport(_))
                && reloaded_at.iter().any(|&at| {
                    request.finished >= at && request.started <= at + Duration::from_secs(1)
                }),
            "a kept-alive request failed otherwise than by a reload's close: {request:?}"
        );
    }
    let lost_writes = lost
        .iter()
        .filter(|request| request.transaction.is_some())
        .count();
    let sent: Vec<Sent> = new_connections.into_iter().chain(kept_alive).collect();
    let audit = audit(&stack, &sent).await;
    eprintln!("audit: {audit:?}");
    assert_eq!(audit.unknown, lost_writes);
    assert_eq!(
        audit.unknown_applied, 0,
        "a request lost with a closed connection was applied"
    );
}

// ---- one instance stopped ------------------------------------------------------------------------

/// SIGTERM to api01 under load: each write in flight is either answered 200 and committed, or not
/// committed, whatever its answer. Stricter than the audit: no error answer hides an applied
/// write. So that writes are surely in flight at the signal, the test holds SQLite's write lock
/// from its own connection around it: both instances' writes queue behind it, and api01's queued
/// ones must be committed and answered 200 once the lock is free, before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_instance_under_load_applies_no_write_it_did_not_answer_200() {
    let stack = Stack::up();
    let victim = stack.pid("api01");
    let (tasks, signal_at, load_until) = (8, Duration::from_secs(1), Duration::from_secs(4));
    let (queue_for, held_after) = (Duration::from_millis(200), Duration::from_millis(300));

    let start = Instant::now();
    let load = mixed_load(&stack.address, tasks, 100_000, start, load_until);
    let fault = async {
        tokio::time::sleep(signal_at - queue_for).await;
        let lock = sqlite_write_lock(&stack.db_path()).await;
        tokio::time::sleep(queue_for).await;
        signal(victim, "TERM");
        let signalled_at = start.elapsed();
        tokio::time::sleep(held_after).await;
        lock.release().await;
        while alive(victim) && start.elapsed() < signalled_at + Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (signalled_at, start.elapsed())
    };
    let (sent, (signalled_at, exited_at)) = tokio::join!(load, fault);

    let counts = status_counts(&sent);
    let mut errors = BTreeMap::<String, usize>::new();
    for request in sent.iter().filter(|request| !definite(request)) {
        let what = match (&request.seen, &request.error_body) {
            (Seen::Status(status), Some(body)) => format!("{} {body}", status.as_u16()),
            (seen, _) => format!("{seen:?}"),
        };
        *errors.entry(what).or_default() += 1;
    }
    eprintln!(
        "SIGTERM to api01 (pid {victim}) at {signalled_at:?}, exited by {exited_at:?}; {} requests \
         from {tasks} tasks: {counts:?}; errors: {errors:#?}",
        sent.len()
    );
    assert!(!alive(victim), "api01 still runs 10 s after SIGTERM");
    let audit = audit(&stack, &sent).await;
    eprintln!("audit: {audit:?}");
    assert_eq!(
        audit.unknown_applied, 0,
        "a write answered with an error was committed: {errors:?}"
    );
}

/// SQLite's write lock on `db` ([`hold_sqlite_write_lock`]). The busy timeout is long because
/// the instances retry far more often than SQLite's busy handler, which sleeps up to 100 ms
/// between tries, so the test may wait behind many of their transactions.
async fn sqlite_write_lock(db: &Path) -> HeldWriteLock {
    hold_sqlite_write_lock(db, Duration::from_secs(30)).await
}
