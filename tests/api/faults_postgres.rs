//! PostgreSQL's durability and restarts, on the whole stack (`scripts/stack`, nginx, two
//! `rinha-api` processes) with a PostgreSQL server of its own (`STACK_DATABASE=postgres`).
//!
//! - `DB_DURABILITY=power` refuses a server that does not sync, and syncs the WAL about once per
//!   committed batch (read from the server's `pg_stat_wal`), where `process` never syncs;
//! - the server stopped and started again under load: while it is down every request is
//!   answered `503`, the instances reconnect by themselves, writes succeed again within seconds,
//!   and the ledger holds every `200` once and no `503`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use crate::helpers::{Api, body};
use crate::stack::{
    Seen, Sent, Stack, alive, audit, mixed_load, postgres_ledger, signal, status_counts, text,
};

/// `pg_stat_wal`'s WAL syncs and writes since the server started, as far as its processes have
/// reported them (a backend reports at most once a second while it runs, and when it exits).
async fn wal_counters(stack: &Stack) -> (i64, i64) {
    let mut connection = PgConnection::connect(&stack.postgres_url())
        .await
        .expect("connect to the stack's PostgreSQL");
    let counters = sqlx::query_as("SELECT wal_sync, wal_write FROM pg_stat_wal")
        .fetch_one(&mut connection)
        .await
        .expect("read pg_stat_wal");
    connection.close().await.ok();
    counters
}

/// Stops both instances (SIGTERM, their graceful stop) and waits until the server's backends that
/// served them have exited, each reporting its WAL counters as it does.
async fn stop_instances(stack: &Stack) {
    for name in ["api01", "api02"] {
        let pid = stack.pid(name);
        signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(Instant::now() < deadline, "{name} still runs");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut connection = PgConnection::connect(&stack.postgres_url())
        .await
        .expect("connect to the stack's PostgreSQL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut connection)
        .await
        .expect("read pg_stat_activity");
        if others == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{others} backends still run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    connection.close().await.ok();
}

/// Write batches committed by both instances (`rinha_write_batch_size_count`), read from each
/// instance's own port.
async fn batches(stack: &Stack) -> f64 {
    let mut total = 0.0;
    for instance in 0..stack.api_ports.len() {
        let samples = stack.instance_metrics(instance).await;
        total += samples.value("rinha_write_batch_size_count", &[]);
    }
    total
}

/// 300 credits at once through nginx, each its own request; panics unless every one is a 200.
async fn concurrent_writes(stack: &Stack, tag: &str) {
    let answers = stack.concurrent_credits(tag, 300).await;
    let failed: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status != StatusCode::OK)
        .map(|answer| (answer.status, answer.body.clone()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} writes failed: {failed:?}",
        failed.len()
    );
}

/// (WAL syncs, WAL writes, batches) during 300 concurrent writes on a stack with this durability
/// (`pg_settings` after the server settings it gives).
async fn syncs_for_300_writes(
    durability: &'static str,
    pg_settings: &'static str,
) -> (i64, i64, f64) {
    let stack = Stack::try_up_postgres(durability, pg_settings).unwrap_or_else(|output| {
        panic!("scripts/stack up with DB_DURABILITY={durability} failed:\n{output}")
    });
    let (syncs, writes) = wal_counters(&stack).await;
    let batches_before = batches(&stack).await;
    concurrent_writes(&stack, durability).await;
    let batches = batches(&stack).await - batches_before;
    // The instances' backends report what they counted as they exit (the few syncs of the
    // schema's transaction at start, not yet reported before, count here too).
    stop_instances(&stack).await;
    let (syncs_after, writes_after) = wal_counters(&stack).await;
    (syncs_after - syncs, writes_after - writes, batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_syncs_the_wal_about_once_per_batch_and_process_never() {
    // The power server's own default is synchronous_commit=off: the instances' setting is what
    // makes a commit wait for its sync.
    let (power_syncs, power_writes, power_batches) =
        syncs_for_300_writes("power", "synchronous_commit=off").await;
    let (process_syncs, process_writes, process_batches) =
        syncs_for_300_writes("process", "").await;
    eprintln!(
        "300 concurrent writes: power {power_syncs} WAL syncs, {power_writes} WAL writes, \
         {power_batches} batches; process {process_syncs} WAL syncs, {process_writes} WAL \
         writes, {process_batches} batches"
    );
    assert_eq!(
        process_syncs, 0,
        "process: the server never syncs (fsync=off)"
    );
    assert!(
        power_syncs >= 5 && power_syncs as f64 >= power_batches / 2.0,
        "power: {power_syncs} WAL syncs for {power_batches} batches, one per batch expected"
    );
    assert!(
        power_syncs as f64 <= power_batches * 1.5 + 10.0,
        "power: {power_syncs} WAL syncs for {power_batches} batches: more than one per batch"
    );
}

#[tokio::test]
async fn power_refuses_to_start_on_a_server_that_does_not_sync() {
    for setting in ["fsync=off", "full_page_writes=off"] {
        let output = match Stack::try_up_postgres("power", setting) {
            Ok(_) => panic!("DB_DURABILITY=power started on a server with {setting}"),
            Err(output) => output,
        };
        assert!(
            output.contains("DB_DURABILITY=power") && output.contains(setting),
            "the instance names DB_DURABILITY=power and {setting}:\n{output}"
        );
    }
}

fn is_write(request: &Sent) -> bool {
    request.transaction.is_some()
}

fn failed(request: &Sent) -> bool {
    !matches!(
        request.seen,
        Seen::Status(StatusCode::OK | StatusCode::UNPROCESSABLE_ENTITY)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_postgresql_under_load_answers_503_and_recovers_by_itself() {
    let stack = Stack::try_up_postgres("process", "").unwrap_or_else(|output| panic!("{output}"));
    let server = stack.pid("postgres");
    let (tasks, stop_at, down_for) = (8, Duration::from_secs(1), Duration::from_secs(1));

    let start = Instant::now();
    let load = mixed_load(
        &stack.address,
        tasks,
        100_000,
        start,
        Duration::from_secs(9),
    );
    let restart = async {
        tokio::time::sleep(stop_at).await;
        let stopping = start.elapsed();
        // SIGINT: PostgreSQL's fast shutdown, what `pg_ctl stop -m fast` sends.
        signal(server, "INT");
        while alive(server) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let down = start.elapsed();
        tokio::time::sleep(down_for).await;
        // `scripts/stack up` starts what is missing: the server, on the same data directory.
        let starting = start.elapsed();
        let mut script = stack.script("up");
        let up = tokio::task::spawn_blocking(move || script.output().expect("scripts/stack runs"));
        let url = stack.postgres_url();
        while PgConnection::connect(&url).await.is_err() {
            assert!(
                start.elapsed() < starting + Duration::from_secs(30),
                "the server takes no connection 30 s after `scripts/stack up`"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let accepting = start.elapsed();
        let up = up.await.expect("scripts/stack up ran");
        assert!(
            up.status.success(),
            "scripts/stack up started the server again:\n{}",
            text(&up)
        );
        (stopping, down, starting, accepting)
    };
    let (sent, (stopping, down, starting, accepting)) = tokio::join!(load, restart);
    assert_ne!(stack.pid("postgres"), server, "a new server runs");

    let counts = status_counts(&sent);
    eprintln!(
        "{} requests from {tasks} tasks: {counts:?}; SIGINT at {stopping:?}, server gone at \
         {down:?}, started again at {starting:?}, accepting connections at {accepting:?}",
        sent.len()
    );
    // Cut by the shutdown: in flight between the SIGINT and the server's exit.
    let in_flight = |request: &Sent| request.started < down && request.finished > stopping;
    let unexpected: Vec<&Sent> = sent
        .iter()
        .filter(|request| failed(request) && !in_flight(request))
        .filter(|request| !matches!(request.seen, Seen::Status(StatusCode::SERVICE_UNAVAILABLE)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "outside the shutdown's instant every failure is a 503: {unexpected:#?}"
    );
    let cut: Vec<&Sent> = sent
        .iter()
        .filter(|request| failed(request) && in_flight(request))
        .filter(|request| !matches!(request.seen, Seen::Status(StatusCode::SERVICE_UNAVAILABLE)))
        .collect();
    eprintln!("cut by the shutdown, answered other than 503: {cut:?}");
    for name in ["api01", "api02"] {
        let log = std::fs::read_to_string(stack.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        for line in log.lines().filter(|line| {
            line.contains("\"level\":\"ERROR\"") && !line.contains("database is busy")
        }) {
            eprintln!("  {name}: {line}");
        }
    }
    assert!(
        cut.iter().all(|request| is_write(request)),
        "a read is a 503 even when cut: {cut:?}"
    );

    // While the server was down, writes and statements alike were 503s.
    let while_down = |write: bool| {
        sent.iter()
            .filter(|request| is_write(request) == write)
            .filter(|request| request.started >= down && request.finished <= starting)
            .filter(|request| matches!(request.seen, Seen::Status(StatusCode::SERVICE_UNAVAILABLE)))
            .count()
    };
    let (writes_refused, reads_refused) = (while_down(true), while_down(false));
    eprintln!("while down: {writes_refused} writes and {reads_refused} statements answered 503");
    assert!(
        writes_refused > 0 && reads_refused > 0,
        "the load met the server down"
    );

    // Back by itself: how long after the server accepted connections writes failed, and when the
    // first one succeeded.
    let after = |request: &&Sent| is_write(request) && request.started >= accepting;
    let last_failure = sent
        .iter()
        .filter(after)
        .filter(|request| failed(request))
        .map(|request| request.finished.saturating_sub(accepting))
        .max()
        .unwrap_or_default();
    let first_success = sent
        .iter()
        .filter(after)
        .filter(|request| matches!(request.seen, Seen::Status(StatusCode::OK)))
        .map(|request| request.finished - accepting)
        .min()
        .expect("writes succeed after the restart");
    let succeeded_after = sent
        .iter()
        .filter(after)
        .filter(|request| !failed(request))
        .count();
    eprintln!(
        "after the server accepted connections: first 200 {first_success:?} later, last failed \
         write {last_failure:?} later, {succeeded_after} writes answered 200/422"
    );
    assert!(
        last_failure < Duration::from_secs(5),
        "writes still failed {last_failure:?} after the server accepted connections"
    );
    assert!(succeeded_after > 50, "only {succeeded_after} writes after");

    // Every 200 in the ledger once, no 422, nothing unsent, balances exact; and no 503 applied.
    let audit = audit(&stack, &sent).await;
    eprintln!("audit: {audit:?}");
    let ledger: HashSet<String> = postgres_ledger(&stack.postgres_url())
        .await
        .into_iter()
        .map(|(descricao, _, _)| descricao)
        .collect();
    let applied_503: Vec<&Sent> = sent
        .iter()
        .filter(|request| matches!(request.seen, Seen::Status(StatusCode::SERVICE_UNAVAILABLE)))
        .filter(|request| {
            request
                .transaction
                .as_ref()
                .is_some_and(|(_, _, descricao)| ledger.contains(descricao))
        })
        .collect();
    assert!(
        applied_503.is_empty(),
        "a 503 says the write was not applied: {applied_503:#?}"
    );
}

/// The server out of disk space: every write is answered `503` "storage is full" and stores
/// nothing, alone or in a batch; statements keep answering; once space is back, writes succeed
/// without a restart. The server raises `53100` (disk_full) when it cannot extend a file; here a
/// trigger on the transactions' table raises the same error on every insert, so the instances
/// meet it exactly as they would, without filling a disk under the test's server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_the_server_answers_503_storage_full_and_stores_nothing() {
    let stack = Stack::try_up_postgres("process", "")
        .unwrap_or_else(|output| panic!("scripts/stack up on PostgreSQL failed:\n{output}"));
    let mut admin = PgConnection::connect(&stack.postgres_url())
        .await
        .expect("connect to the stack's PostgreSQL");
    sqlx::raw_sql(
        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
             RAISE EXCEPTION 'could not extend file: No space left on device'
                 USING ERRCODE = 'disk_full';
         END $$;
         CREATE TRIGGER disk_full BEFORE INSERT ON transacoes
             FOR EACH ROW EXECUTE FUNCTION disk_full()",
    )
    .execute(&mut admin)
    .await
    .expect("the disk_full trigger");

    // Concurrent, so that most are refused in batches and some alone.
    let answers = stack.concurrent_credits("full", 100).await;
    for answer in &answers {
        let message =
            answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "a write on a full disk");
        assert!(message.contains("storage is full"), "{message}");
    }
    for id in 1..=5 {
        let statement = stack.statement(id).await;
        assert_eq!(
            statement.status,
            StatusCode::OK,
            "statements keep answering"
        );
        assert_eq!(
            (statement.total(), statement.entries().len()),
            (0, 0),
            "nothing of a refused write is stored"
        );
    }

    sqlx::raw_sql("DROP TRIGGER disk_full ON transacoes")
        .execute(&mut admin)
        .await
        .expect("space back");
    let answer = stack.transaction(1, &body(7, "c", "back")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(stack.statement(1).await.total(), 7);
    admin.close().await.ok();
}
