//! The PostgreSQL backend, chosen by `DATABASE_URL=postgres://...`: the same ledger for any number
//! of instances on any number of hosts, where the SQLite backend needs one shared file.
//!
//! The decision that shaped it: a process's waiting writes are applied by *one statement in its
//! own transaction*, one round trip ([`RECORD_BATCH`]), a group commit. A write as a statement of
//! its own cost the server a wake-up, an executor start, a snapshot and a commit per transaction,
//! and that fixed cost, not the rows, was most of the server's CPU per write; a batch pays it
//! once. PostgreSQL's own grouping of WAL flushes does not help here: with `fsync` off there is
//! no flush to share, and each commit is still a statement of its own.
//!
//! A handler queues its write and awaits the answer; the first write queued while no batch is
//! under way ([`COMMITTERS`]) starts a committer on the handler's worker, behind the requests
//! that worker has already read. It takes every write waiting (up to `DB_WRITE_BATCH_MAX`), sends
//! them as arrays, answers each from the rows the statement returns, and repeats until the queue
//! is empty. At low load a batch is one write, sent at once (as the single-row [`RECORD`], a much
//! smaller plan for the server to start); under load, the writes that arrive during a round trip
//! make the next batch.
//!
//! The rules that keep the ledger exact, across any number of instances:
//! - the statement locks its clients' rows first, *in client-id order* (`SELECT ... ORDER BY id
//!   FOR UPDATE`), so two batches (two instances) wanting the same clients queue behind each
//!   other and never deadlock; `/reset` locks them in the same order. A lock is held for that one
//!   statement and its commit, never across a round trip to the process: what a batch makes
//!   another client wait for is the server's work on the batch's other clients, tens of
//!   microseconds per transaction;
//! - at READ COMMITTED, `FOR UPDATE` returns each row as the previous holder committed it; the
//!   statement then applies each client's transactions *in the order they were queued*, one after
//!   another (a recursive CTE, one step per transaction): each is accepted if the balance the
//!   previous step left stays within `[-limite, MAX_BALANCE]`, and numbered `ultima + 1` if
//!   accepted. A refused one changes nothing and writes no row. The client's row is set to its
//!   last step's balance and number, and the accepted transactions are inserted;
//! - the process answers only after the statement's implicit transaction has committed (sqlx
//!   reads every message up to ReadyForQuery before it returns the rows), so a failed commit is
//!   an error, never a `200`;
//! - a statement that fails with a database error wrote nothing; its writes are applied again one
//!   per statement, so that one bad write fails only itself. A lock timeout fails the whole batch
//!   with 503 instead (retrying would wait again), and so does a server out of reach; a
//!   connection lost once the server may have read the whole statement fails it with 500 without
//!   a retry (whether the commit happened is unknown, and a retry could apply it twice);
//! - once [`Postgres::close`] has begun, no write is queued (503 "stopping"); the queued ones are
//!   committed and answered before the pool closes.
//!
//! Durability (`DB_DURABILITY`): `process` commits as the server is configured (the deployment's
//! `synchronous_commit=on` with `fsync=off`: a commit is in the kernel before the answer); `power`
//! sets `synchronous_commit=on` on the instance's own connections, whatever the server's default,
//! and refuses to start unless the server runs with `fsync=on` and `full_page_writes=on`
//! ([`check_durability`]), since without them a synced commit is not a promise.
//!
//! A server that restarts or cannot be reached ([`is_unreached`]) fails the writes that surely did
//! not reach it, and every read, with 503 (retry); the pool opens new connections by itself once
//! the server accepts them. A write whose connection was lost once the server may have read the
//! whole statement is the one case whose outcome is unknown: see [`StorageError::from`].
//!
//! The SQL sticks to what CockroachDB and YugabyteDB also run (see `script.postgres.sql` and the
//! docs): no sequences, triggers, advisory locks, `TRUNCATE` or PL/pgSQL. The batch uses `unnest`
//! over several arrays `WITH ORDINALITY`, a recursive CTE, `FOR UPDATE` in a CTE and
//! data-modifying CTEs, which all three document; it is not run against the other two here.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use metrics::Histogram;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use tokio::sync::{Notify, oneshot};

use super::rows::{StatementRow, clients_from_rows, statement_from_rows};
use super::{DatabaseSettings, Durability, StorageError};
use crate::domain::{
    Applied, Client, MAX_BALANCE, NewTransaction, Recorded, STATEMENT_LENGTH, Statement,
};
use crate::metrics::StorageMetrics;

/// The schema and the five clients; applied by every instance at start.
pub const SCHEMA: &str = include_str!("../../script.postgres.sql");

/// Records one transaction if the balance allows it, in one statement: the `UPDATE` moves the
/// balance and numbers the transaction only if the result stays within `[-limite, $3]`, and the
/// `INSERT` stores the row the `UPDATE` returned. No row back: refused, nothing written. A batch
/// of one runs this rather than [`RECORD_BATCH`]: the same rules for one row, without arrays,
/// recursion or ordering, a plan of a few nodes where the batch's has dozens (at low load nearly
/// every batch is one write, so this is what a write costs there).
///
/// The `UPDATE` takes the client's row lock; PostgreSQL re-checks the `WHERE` against the balance
/// the previous holder committed before applying it. It holds one row only, so it cannot
/// deadlock with a batch. `clock_timestamp()` is read when the row is inserted, after the lock
/// was taken (`now()` would be the statement's start, possibly before a wait for the lock).
///
/// `$1` client id, `$2` signed amount (+credit, -debit), `$3` the largest balance allowed,
/// `$4` valor, `$5` tipo, `$6` descricao.
pub const RECORD: &str = "WITH moved AS (
         UPDATE clientes SET saldo = saldo + $2, ultima = ultima + 1
         WHERE id = $1 AND saldo + $2 >= -limite AND saldo + $2 <= $3
         RETURNING id, saldo, ultima
     )
     INSERT INTO transacoes (cliente_id, numero, valor, tipo, descricao, saldo_apos, realizada_em)
     SELECT id, ultima, $4, $5, $6, saldo, clock_timestamp() FROM moved
     RETURNING saldo_apos";

/// Applies a batch of transactions in one statement and answers one row per transaction,
/// `(ord, accepted, saldo)`: `ord` its place in the arrays counting from 1, `saldo` the balance
/// right after it when accepted. Rows come in no particular order.
///
/// - `locked` locks the batch's clients' rows in id order and reads them as last committed;
/// - `steps` walks each client's transactions in queue order (`k` = 1, 2, ..., numbered by the
///   caller) from its locked row (step 0): a step is accepted if the balance it leads to stays
///   within `[-limite, $8]`, and then moves the balance and the number; a refused step carries
///   both over unchanged;
/// - `moved` sets each client's row to its last step (`last`), if that step numbered anything;
/// - `stored` inserts the accepted transactions in each client's order, so `clock_timestamp()`,
///   read per row after the client's row was locked, never goes backwards down a client's list.
///
/// `$1` client ids, `$2` each one's `k`, `$3` whether it is the client's last in the batch, `$4`
/// signed amounts (+credit, -debit), `$5` valores, `$6` tipos, `$7` descricoes (arrays of one
/// length, in queue order); `$8` the largest balance allowed.
pub const RECORD_BATCH: &str = "WITH RECURSIVE
     locked AS (
         SELECT id, limite, saldo, ultima FROM clientes
         WHERE id = ANY ($1::int8[])
         ORDER BY id
         FOR UPDATE
     ),
     batch AS (
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::bool[], $4::int8[], $5::int8[],
                              $6::text[], $7::text[])
                       WITH ORDINALITY AS b (id, k, last, delta, valor, tipo, descricao, ord)
     ),
     steps (id, k, last, ord, limite, saldo, ultima, accepted, valor, tipo, descricao) AS (
         SELECT id, 0::int8, false, 0::int8, limite, saldo, ultima, false, 0::int8, ''::text,
                ''::text
         FROM locked
         UNION ALL
         SELECT s.id, b.k, b.last, b.ord, s.limite,
                CASE WHEN s.saldo + b.delta BETWEEN -s.limite AND $8
                     THEN s.saldo + b.delta ELSE s.saldo END,
                CASE WHEN s.saldo + b.delta BETWEEN -s.limite AND $8
                     THEN s.ultima + 1 ELSE s.ultima END,
                s.saldo + b.delta BETWEEN -s.limite AND $8,
                b.valor, b.tipo, b.descricao
         FROM steps AS s
         JOIN batch AS b ON b.id = s.id AND b.k = s.k + 1
     ),
     moved AS (
         UPDATE clientes AS c SET saldo = s.saldo, ultima = s.ultima
         FROM steps AS s
         WHERE s.last AND c.id = s.id AND c.ultima < s.ultima
     ),
     stored AS (
         INSERT INTO transacoes
             (cliente_id, numero, valor, tipo, descricao, saldo_apos, realizada_em)
         SELECT id, ultima, valor, tipo, descricao, saldo, clock_timestamp()
         FROM steps
         WHERE accepted
         ORDER BY id, k
     )
     SELECT ord, accepted, saldo FROM steps WHERE k > 0";

/// A client's statement in one snapshot (a statement's snapshot, at READ COMMITTED): the read
/// time, the balance and limit, and up to `$2` latest transactions, newest first (one row of
/// NULLs when there is none). `clock_timestamp()` runs after the snapshot was taken, so
/// `data_extrato` is never earlier than a listed transaction.
pub const STATEMENT: &str = "SELECT clock_timestamp(), c.saldo, c.limite,
            t.valor, t.tipo, t.descricao, t.realizada_em
     FROM clientes AS c
     LEFT JOIN (
         SELECT cliente_id, numero, valor, tipo, descricao, realizada_em
         FROM transacoes
         WHERE cliente_id = $1
         ORDER BY numero DESC
         LIMIT $2
     ) AS t ON t.cliente_id = c.id
     WHERE c.id = $1
     ORDER BY t.numero DESC";

/// The reset, in one transaction. Every client's row is locked first, in id order as a batch
/// locks them (an `UPDATE` of the whole table locks in the order it finds the rows, which could
/// deadlock with a batch holding some of them); that waits for every write in flight and blocks
/// new ones until the commit, so the `DELETE` after it, which takes a new snapshot, sees every
/// transaction committed before the reset.
pub const LOCK_CLIENTS: &str = "SELECT id FROM clientes ORDER BY id FOR UPDATE";
pub const ZERO_BALANCES: &str = "UPDATE clientes SET saldo = 0, ultima = 0";
pub const DELETE_TRANSACTIONS: &str = "DELETE FROM transacoes";

/// Every client and its limit.
pub const CLIENTS: &str = "SELECT id, limite FROM clientes";

/// Whether the database answers.
pub const PING: &str = "SELECT 1";

/// How long an instance keeps trying to reach a server that refuses connections or is still
/// starting (Compose starts the API and PostgreSQL together, without health checks).
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

/// The most batches one process has under way at once. One: with two, batches were smaller (7
/// transactions on average at saturation rather than 10) and the server spent 17% more CPU per
/// write, since two batches of one process mostly wait on the same clients' row locks, and a
/// batch that waited re-reads each row the other changed (EvalPlanQual) before it goes on.
pub const COMMITTERS: usize = 1;

/// Whether `url` names a PostgreSQL database.
pub fn is_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Checks that `url` is a usable PostgreSQL URL.
pub fn check_url(url: &str) -> Result<(), String> {
    PgConnectOptions::from_str(url)
        .map(drop)
        .map_err(|err| err.to_string())
}

/// A failure of the PostgreSQL backend, classified by [`StorageError::from`].
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// The batch this write was part of failed as a whole with this error: a lock timeout, a
    /// lost connection, a closed pool.
    #[error("the write's batch failed: {0}")]
    Batch(Arc<sqlx::Error>),
    /// A read (a statement, a health check) failed with this error. It changed nothing, so a
    /// lost connection is only a reason to retry.
    #[error(transparent)]
    Read(sqlx::Error),
    /// The instance is closing and takes no more writes.
    #[error("the instance is stopping and takes no more writes")]
    Stopping,
    /// `DB_DURABILITY=power` on a server whose setting `setting` is `value`, not `on`.
    #[error(
        "DB_DURABILITY=power needs the PostgreSQL server to run with {setting}=on, and it runs \
         with {setting}={value}: start it with -c {setting}=on (or set it in postgresql.conf), \
         or run with DB_DURABILITY=process"
    )]
    NotDurable {
        setting: &'static str,
        value: String,
    },
}

impl PgError {
    /// The sqlx error behind this one, if any.
    fn sqlx(&self) -> Option<&sqlx::Error> {
        match self {
            Self::Sqlx(err) => Some(err),
            Self::Batch(err) => Some(err),
            Self::Read(err) => Some(err),
            Self::Stopping | Self::NotDurable { .. } => None,
        }
    }
}

/// One write waiting for its batch, and where its answer goes.
#[derive(Debug)]
struct Job {
    client: Client,
    transaction: NewTransaction,
    reply: oneshot::Sender<Result<Recorded, PgError>>,
}

/// The writes waiting for a batch, and how many committers run.
#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    committers: usize,
    closed: bool,
}

/// Counters of the group commit, since the process started (`GET /metrics`).
#[derive(Debug, Default)]
struct Counters {
    largest: AtomicU64,
    retried: AtomicU64,
}

/// What the handles and the committers share.
#[derive(Debug)]
struct Shared {
    pool: PgPool,
    queue: Mutex<Queue>,
    /// Woken each time a committer stops, for [`Postgres::close`].
    committer_stopped: Notify,
    batch_max: usize,
    busy_timeout: Duration,
    counters: Counters,
    batch_sizes: Histogram,
}

/// Locks `mutex` even if a thread panicked while holding it: the queue stays consistent between
/// statements (a panic cannot leave half a job queued).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The PostgreSQL ledger: a connection pool and the process's queue of writes.
#[derive(Debug, Clone)]
pub struct Postgres {
    shared: Arc<Shared>,
}

impl Postgres {
    /// Connects (waiting up to [`CONNECT_PATIENCE`] for a server that is still starting),
    /// applies `script.postgres.sql` and reads the clients; reports the batches to `metrics`.
    ///
    /// The start-up work runs on a connection of its own, closed before serving. The pool that
    /// serves opens each connection when a request first needs one, on the worker that runs
    /// that request: a connection answers on the thread that made it, so the worker reads the
    /// server's answer itself instead of being woken by the thread that made the connection
    /// (with one worker, the deployment's, that is every connection).
    pub async fn connect(
        settings: &DatabaseSettings,
        metrics: &StorageMetrics,
    ) -> Result<(Self, Vec<Client>), PgError> {
        let lock_timeout = settings.busy_timeout.as_millis().to_string();
        // A write waiting longer than this for a client's row fails with 503, as a SQLite write
        // waiting for the file's lock does.
        let mut session = vec![("lock_timeout", lock_timeout.as_str())];
        if settings.durability == Durability::Power {
            // Each commit waits for its WAL to be synced to disk, whatever the server's default
            // (a role, a database or postgresql.conf may set it off).
            session.push(("synchronous_commit", "on"));
        }
        let options = PgConnectOptions::from_str(&settings.url)?.options(session);
        let deadline = Instant::now() + CONNECT_PATIENCE;
        let mut startup = loop {
            match PgConnection::connect_with(&options).await {
                Ok(connection) => break connection,
                Err(err) if is_not_up_yet(&err) && Instant::now() < deadline => {
                    tracing::debug!(error = %err, "PostgreSQL not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => return Err(err.into()),
            }
        };
        check_durability(&mut startup, settings.durability).await?;
        apply_schema(&mut startup, deadline).await?;
        let rows = sqlx::query_as(CLIENTS).fetch_all(&mut startup).await?;
        startup.close().await.ok();
        let pool = PgPoolOptions::new()
            // None made ahead: the pool's own task would make it on the start-up thread.
            .min_connections(0)
            .max_connections(settings.pool_size)
            .acquire_timeout(settings.busy_timeout)
            // Each check would be one more round trip per request.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        let shared = Arc::new(Shared {
            pool,
            queue: Mutex::default(),
            committer_stopped: Notify::new(),
            batch_max: settings.write_batch_max.max(1),
            busy_timeout: settings.busy_timeout,
            counters: Counters::default(),
            batch_sizes: metrics.batch_sizes.clone(),
        });
        report_on_scrape(metrics, Arc::downgrade(&shared));
        Ok((Self { shared }, clients_from_rows(rows)))
    }

    /// Applies `transaction` to `client` if the balance allows it, in the next batch; answers
    /// once that batch is committed.
    pub async fn record(
        &self,
        client: Client,
        transaction: NewTransaction,
    ) -> Result<Recorded, PgError> {
        let (reply, answer) = oneshot::channel();
        let start_committer = {
            let mut queue = lock(&self.shared.queue);
            if queue.closed {
                return Err(PgError::Stopping);
            }
            queue.jobs.push_back(Job {
                client,
                transaction,
                reply,
            });
            let start = queue.committers < COMMITTERS;
            queue.committers += usize::from(start);
            start
        };
        if start_committer {
            // Spawned on this worker's runtime, behind the requests it has already read, so the
            // writes that arrived with this one are queued by the time it runs.
            tokio::spawn(commit_queued(Arc::clone(&self.shared)));
        }
        answer.await.map_err(|_| PgError::Stopping)?
    }

    /// The client's statement, from one snapshot.
    pub async fn statement(&self, client: Client) -> Result<Statement, PgError> {
        let rows: Vec<StatementRow<DateTime<Utc>>> = sqlx::query_as(STATEMENT)
            .bind(client.id.0)
            .bind(i64::from(STATEMENT_LENGTH))
            .fetch_all(&self.shared.pool)
            .await
            .map_err(PgError::Read)?;
        statement_from_rows(rows, rfc3339).ok_or(PgError::Sqlx(sqlx::Error::RowNotFound))
    }

    /// Deletes every transaction and sets every balance back to 0, atomically.
    pub async fn reset(&self) -> Result<(), PgError> {
        let mut tx = self.shared.pool.begin().await?;
        sqlx::query(LOCK_CLIENTS).execute(&mut *tx).await?;
        sqlx::query(ZERO_BALANCES).execute(&mut *tx).await?;
        sqlx::query(DELETE_TRANSACTIONS).execute(&mut *tx).await?;
        Ok(tx.commit().await?)
    }

    /// Succeeds when the server answers a query.
    pub async fn ping(&self) -> Result<(), PgError> {
        sqlx::query(PING)
            .execute(&self.shared.pool)
            .await
            .map_err(PgError::Read)?;
        Ok(())
    }

    /// Stops taking writes, commits the queued ones (waiting at most the busy timeout and a
    /// second for the committers), and closes the pool: a request from then on fails as
    /// stopping.
    pub async fn close(&self) {
        lock(&self.shared.queue).closed = true;
        let committers_done = async {
            loop {
                let stopped = self.shared.committer_stopped.notified();
                tokio::pin!(stopped);
                // Registered before the check, so a stop between the two is not missed.
                stopped.as_mut().enable();
                if lock(&self.shared.queue).committers == 0 {
                    return;
                }
                stopped.await;
            }
        };
        let patience = self.shared.busy_timeout + Duration::from_secs(1);
        if tokio::time::timeout(patience, committers_done)
            .await
            .is_err()
        {
            tracing::warn!("closing the pool while a batch still runs");
        }
        self.shared.pool.close().await;
    }
}

/// A committer: takes the waiting writes (up to the batch size) and applies them in one
/// statement, until none waits.
async fn commit_queued(shared: Arc<Shared>) {
    let mut running = Committing(Some(&shared));
    loop {
        let jobs: Vec<Job> = {
            let mut queue = lock(&shared.queue);
            if queue.jobs.is_empty() {
                queue.committers -= 1;
                drop(queue);
                running.0 = None;
                shared.committer_stopped.notify_waiters();
                return;
            }
            let take = queue.jobs.len().min(shared.batch_max);
            queue.jobs.drain(..take).collect()
        };
        let size = jobs.len() as u64;
        shared.batch_sizes.record(size as f64);
        shared.counters.largest.fetch_max(size, Relaxed);
        apply(&shared, jobs).await;
    }
}

/// Applies `jobs` in one statement and answers each; after a database error, applies them again
/// one per statement.
async fn apply(shared: &Shared, jobs: Vec<Job>) {
    let mut jobs = InFlight(jobs);
    let result = match &jobs.0[..] {
        [job] => record_one(&shared.pool, job)
            .await
            .map(|outcome| vec![outcome]),
        batch => record_batch(&shared.pool, batch).await,
    };
    let err = match result {
        Ok(outcomes) => {
            for (job, outcome) in jobs.take().into_iter().zip(outcomes) {
                job.reply.send(Ok(outcome)).ok();
            }
            return;
        }
        Err(err) => err,
    };
    if jobs.0.len() > 1 && wrote_nothing_alone_may_pass(&err) {
        shared.counters.retried.fetch_add(1, Relaxed);
        tracing::warn!(error = %err, jobs = jobs.0.len(), "batch failed; applying its writes one by one");
        while let Some(job) = jobs.0.first() {
            let answer = record_one(&shared.pool, job).await;
            // Out of the guard only once answered.
            let job = jobs.0.remove(0);
            job.reply.send(answer.map_err(PgError::Sqlx)).ok();
        }
        return;
    }
    let err = Arc::new(err);
    for job in jobs.take() {
        job.reply.send(Err(PgError::Batch(Arc::clone(&err)))).ok();
    }
}

/// The jobs of a batch the server may be running. If the committer's task is dropped while it
/// awaits the server (its worker's runtime shutting down), each job still held is answered as a
/// failed batch, a 500 whose outcome is unknown: the server may have committed it, and the 503
/// that a dropped job gets ("stopping", retry) would have a client apply it twice. During the
/// one-by-one retry that includes the jobs not yet sent, which is only cautious.
struct InFlight(Vec<Job>);

impl InFlight {
    /// The jobs, out of the guard, to answer.
    fn take(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let err = Arc::new(sqlx::Error::Protocol(
            "the committer stopped while the server ran the batch: its outcome is unknown".into(),
        ));
        for job in self.take() {
            job.reply.send(Err(PgError::Batch(Arc::clone(&err)))).ok();
        }
    }
}

/// Marks the committer stopped if its task is dropped before it finished (the worker's runtime
/// is shutting down), as the SQLite writer's does: the queued jobs, never sent, are dropped,
/// which answers each that the instance is stopping, and the next write starts a committer
/// again. The batch under way answers for itself ([`InFlight`]).
struct Committing<'s>(Option<&'s Shared>);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            let mut queue = lock(&shared.queue);
            queue.jobs.clear();
            queue.committers -= 1;
            drop(queue);
            shared.committer_stopped.notify_waiters();
        }
    }
}

/// Runs [`RECORD`] for one job: what became of it.
async fn record_one(pool: &PgPool, job: &Job) -> Result<Recorded, sqlx::Error> {
    let balance: Option<i64> = sqlx::query_scalar(RECORD)
        .bind(job.client.id.0)
        .bind(job.transaction.signed_amount())
        .bind(MAX_BALANCE)
        .bind(job.transaction.amount())
        .bind(job.transaction.kind().code())
        .bind(job.transaction.description())
        .fetch_optional(pool)
        .await?;
    Ok(match balance {
        Some(balance) => Recorded::Applied(Applied {
            limit: job.client.limit,
            balance,
        }),
        // The row matched no `WHERE`: the rules refused it, for the reason its kind gives.
        None => Recorded::Refused(job.transaction.refusal()),
    })
}

/// Runs [`RECORD_BATCH`] for `jobs`: what became of each, in their order.
async fn record_batch(pool: &PgPool, jobs: &[Job]) -> Result<Vec<Recorded>, sqlx::Error> {
    let mut ids = Vec::with_capacity(jobs.len());
    let mut steps = Vec::with_capacity(jobs.len());
    let mut last = Vec::with_capacity(jobs.len());
    let mut deltas = Vec::with_capacity(jobs.len());
    let mut amounts = Vec::with_capacity(jobs.len());
    let mut kinds = Vec::with_capacity(jobs.len());
    let mut descriptions = Vec::with_capacity(jobs.len());
    for (n, job) in jobs.iter().enumerate() {
        let id = job.client.id.0;
        // The client's k-th transaction in the batch, and whether a later one follows: two
        // scans of the batch per transaction, cheap at DB_WRITE_BATCH_MAX's default of 64.
        let k = 1 + ids.iter().filter(|&&other| other == id).count() as i64;
        let is_last = jobs[n + 1..].iter().all(|other| other.client.id.0 != id);
        ids.push(id);
        steps.push(k);
        last.push(is_last);
        deltas.push(job.transaction.signed_amount());
        amounts.push(job.transaction.amount());
        kinds.push(job.transaction.kind().code());
        descriptions.push(job.transaction.description());
    }
    let rows: Vec<(i64, bool, i64)> = sqlx::query_as(RECORD_BATCH)
        .bind(ids)
        .bind(steps)
        .bind(last)
        .bind(deltas)
        .bind(amounts)
        .bind(kinds)
        .bind(descriptions)
        .bind(MAX_BALANCE)
        .fetch_all(pool)
        .await?;
    let mut outcomes: Vec<Option<Recorded>> = vec![None; jobs.len()];
    for (ord, accepted, balance) in rows {
        let slot = usize::try_from(ord)
            .ok()
            .and_then(|ord| ord.checked_sub(1))
            .filter(|&n| n < jobs.len() && outcomes[n].is_none())
            .ok_or_else(|| broken(ord, jobs.len()))?;
        let job = &jobs[slot];
        outcomes[slot] = Some(if accepted {
            Recorded::Applied(Applied {
                limit: job.client.limit,
                balance,
            })
        } else {
            // The balance the previous step left did not allow it: refused, for the reason its
            // kind gives.
            Recorded::Refused(job.transaction.refusal())
        });
    }
    outcomes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| broken(0, jobs.len()))
}

/// The batch statement did not answer exactly one row per transaction (`ord` is the first
/// it got wrong, or 0 for one missing): a bug, answered 500. Its transaction has committed, so
/// nothing is retried.
fn broken(ord: i64, jobs: usize) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "the batch statement's rows do not match its {jobs} transactions (ord {ord})"
    ))
}

/// Whether a batch that failed with `err` wrote nothing and its writes may pass one by one: a
/// database error (the server rolled the statement back) that is not a wait, a conflict or a
/// full disk (each would recur) and not a closed pool.
fn wrote_nothing_alone_may_pass(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some() && !is_busy(err) && !is_disk_full(err)
}

/// The server could not extend a file (`53100`, disk_full): it rolled the statement back.
fn is_disk_full(err: &sqlx::Error) -> bool {
    sqlstate(err).is_some_and(|code| code == "53100")
}

/// At each scrape, sets the batch series read rather than counted. The hook holds the queue
/// weakly: the metrics outlive a closed backend.
fn report_on_scrape(metrics: &StorageMetrics, shared: std::sync::Weak<Shared>) {
    metrics.on_scrape(move |series| {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        series
            .batches_retried
            .absolute(shared.counters.retried.load(Relaxed));
        series
            .largest_batch
            .set(shared.counters.largest.load(Relaxed) as f64);
        series
            .write_queue
            .set(lock(&shared.queue).jobs.len() as f64);
    });
}

/// The same text SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')` gives: RFC 3339, UTC, milliseconds.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Runs `script.postgres.sql` in one transaction, again while it fails because another instance
/// is creating the same objects at the same moment.
///
/// `CREATE TABLE IF NOT EXISTS` checks for the table before it creates it; two instances starting
/// together both find none, the second then waits on the first's uncommitted catalog row and fails
/// with a unique violation once the first commits. Its transaction is rolled back whole, and the
/// retry finds everything in place. This needs no advisory lock, which CockroachDB and older
/// YugabyteDB do not have.
async fn apply_schema(connection: &mut PgConnection, deadline: Instant) -> Result<(), PgError> {
    let mut attempt = 0_u64;
    loop {
        let result = async {
            let mut tx = connection.begin().await?;
            sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(err) if is_concurrent_creation(&err) && Instant::now() < deadline => {
                attempt += 1;
                tracing::debug!(error = %err, attempt, "schema created concurrently; retrying");
                tokio::time::sleep(Duration::from_millis(5 * attempt.min(20))).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// The SQLSTATE of a database error, if `err` is one.
fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|db| db.code())
        .map(|code| code.into_owned())
}

/// An error another instance creating the schema at the same moment can cause: unique violation
/// (a catalog row), duplicate table or object, serialization failure, deadlock.
fn is_concurrent_creation(err: &sqlx::Error) -> bool {
    sqlstate(err).is_some_and(|code| {
        matches!(
            code.as_str(),
            "23505" | "42P07" | "42710" | "40001" | "40P01"
        )
    })
}

/// The server refuses connections or says it is starting or recovering.
fn is_not_up_yet(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        || sqlstate(err).is_some_and(|code| code == "57P03")
}

/// Waiting too long (for a row lock, a connection or a busy server), a conflict worth retrying
/// (serialization failure, deadlock, lock timeout, query canceled by statement_timeout, too many
/// connections, cannot connect now), or a server out of reach ([`is_unreached`]).
fn is_busy(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::PoolTimedOut)
        || sqlstate(err).is_some_and(|code| {
            matches!(
                code.as_str(),
                "40001" | "40P01" | "55P03" | "57014" | "53300" | "57P03"
            )
        })
        || is_unreached(err)
}

/// The server is down, restarting or ended the session, and the statement surely changed nothing
/// (so a write failing so is a 503, worth sending again):
///
/// - no connection: refused, or no socket file (a server that is down removes its Unix socket),
///   or `57P03` (starting up, shutting down);
/// - `57P01` (admin_shutdown: a fast shutdown or `pg_terminate_backend`): the server ends the
///   session from its interrupt handler and rolls back the transaction under way. It holds that
///   interrupt during a commit and next checks it when it waits for the next command, after the
///   commit's answer has gone out; on an idle connection the statement never ran;
/// - a broken pipe or a reset: the server's end closed with our bytes unread. The server
///   commits a statement's implicit transaction only once it has read its last message (Sync),
///   and between a statement and its answer the instance sends nothing else, so unread bytes
///   are that statement's end. (A pipe breaks when the other end is gone before the write; the
///   kernel resets a connection, TCP or Unix, whose end closes with data still unread.)
///
/// Not here: a connection closed cleanly (end of stream) or lost while the answer was awaited
/// (`57P02` after a crash of another server process, a time-out), where the server may have read
/// the whole statement and committed it before it went.
fn is_unreached(err: &sqlx::Error) -> bool {
    use std::io::ErrorKind;
    match err {
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::NotFound
                | ErrorKind::BrokenPipe
                | ErrorKind::ConnectionReset
        ),
        _ => sqlstate(err).is_some_and(|code| matches!(code.as_str(), "57P01" | "57P03")),
    }
}

/// The connection failed under a statement (I/O, protocol, a session the server ended): for a
/// read, nothing changed whatever the cause.
fn is_connection_failure(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
        || sqlstate(err).is_some_and(|code| code.starts_with("57P") || code.starts_with("08"))
}

/// With `DB_DURABILITY=power`, checks that the server syncs its WAL (`fsync`) and protects pages
/// from torn writes (`full_page_writes`): with either off, a power cut can lose or corrupt what a
/// synced commit wrote. `process` asks nothing of the server.
async fn check_durability(
    connection: &mut PgConnection,
    durability: Durability,
) -> Result<(), PgError> {
    if durability == Durability::Process {
        return Ok(());
    }
    for setting in ["fsync", "full_page_writes"] {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(setting)
            .fetch_one(&mut *connection)
            .await?;
        if value != "on" {
            return Err(PgError::NotDurable { setting, value });
        }
    }
    Ok(())
}

impl From<PgError> for StorageError {
    /// A wait too long, a conflict or a server out of reach ([`is_busy`]) is
    /// [`StorageError::Busy`] (503), and so is any connection failure under a read; a full disk on
    /// the server, [`StorageError::Full`] (503); a closed pool or a closing queue,
    /// [`StorageError::Stopping`]; the rest [`StorageError::Other`] (500).
    ///
    /// That rest includes a write whose connection was lost after the server may have read the
    /// whole statement (an end of stream, `57P02`, a time-out): the commit may or may not have
    /// happened, and nothing tells which. It is answered 500 ("failed, outcome unknown") and not
    /// retried: a 503 tells the client to send it again, which applies it twice if it did
    /// commit, and a retry here would do the same. The client learns the outcome from the
    /// statement (`GET .../extrato`).
    fn from(err: PgError) -> Self {
        match (&err, err.sqlx()) {
            (PgError::Stopping, _) | (_, Some(sqlx::Error::PoolClosed)) => StorageError::Stopping,
            (_, Some(inner)) if is_busy(inner) => StorageError::Busy(err.into()),
            (_, Some(inner)) if is_disk_full(inner) => StorageError::Full(err.into()),
            (PgError::Read(inner), _) if is_connection_failure(inner) => {
                StorageError::Busy(err.into())
            }
            _ => StorageError::Other(err.into()),
        }
    }
}
