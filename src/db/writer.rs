//! The write path: group commit, run by the Actix worker that has writes waiting, on one
//! connection per process.
//!
//! A handler puts a [`Job`] on the process's queue and awaits its answer. The first job queued
//! while no commit is under way starts a *committer*: a task on the same worker, queued behind
//! the requests that worker has already read. So by the time it runs, every request that arrived
//! with the first one has queued its job too, and the committer takes them all (up to
//! `batch_max`) and applies them in order inside one `BEGIN IMMEDIATE ... COMMIT`: one lock
//! acquisition, one commit for the whole group. It repeats until the queue is empty, then stops;
//! there is at most one committer per process at a time.
//!
//! The decision that shaped it: the commit runs on the thread that read the requests. A writer
//! thread of its own cost two thread wake-ups per batch (worker to writer, writer back to the
//! worker), and on this project's 2-core VM a wake-up costs more than the SQLite work of a
//! write: with one Actix worker per instance (the compose layout) a write now crosses no thread
//! at all. The worker is never blocked waiting for the other process: the connection fails at
//! once when the lock is taken, and the committer waits for its turn in short pauses
//! ([`busy::Wait`]), letting the worker read and answer other requests between attempts; their
//! writes queue for the next batch, so batches grow when the lock is contended.
//!
//! Inside the transaction the committer holds SQLite's write lock, so no other process can change
//! an account until its `COMMIT`: it reads each client's account the first time the batch
//! touches it, checks every transaction against the balance as the batch has left it
//! (`domain::balance_after`), appends each accepted one with a plain `INSERT`, and writes each
//! changed account back once, just before `COMMIT`. Balances chain inside the batch, a refused
//! debit refuses only itself.
//!
//! The rules that keep the ledger exact:
//! - an answer is sent only after the `COMMIT` that contains it returned OK;
//! - if any statement of a batch fails, or its `COMMIT` does, the batch is rolled back (nothing
//!   of it was written) and each of its jobs is applied again in a transaction of its own, so
//!   one bad job fails only itself; a batch that found the lock busy for the whole busy timeout
//!   fails every job with [`StorageError::Busy`] (503) instead, since retrying would wait again;
//! - a process killed mid-batch loses the batch's uncommitted jobs, none of which was answered.
//!
//! The connection is opened by sqlx, and an *owner* thread holds sqlx's lock on its raw handle
//! for as long as the writer lives (sqlx's own thread for it then makes no call on it); the
//! committers run their statements on that handle, one at a time ([`Session`]).

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, TryLockError};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use metrics::Histogram;
use serde::Serialize;
use sqlx::{Connection as _, SqliteConnection};
use tokio::sync::oneshot;

use super::raw::{Connection, Row, SqliteFailure, Statement};
use super::{StorageError, busy, sql};
use crate::domain::{
    self, ClientId, Kind, NewTransaction, StatementBalance, StatementEntry, balance_after,
};

/// What a job asks of the ledger.
#[derive(Debug)]
pub enum Work {
    /// Apply a valid transaction if the balance allows it.
    Record {
        client: ClientId,
        transaction: NewTransaction,
    },
    /// Delete every transaction and set every balance to 0.
    Reset,
}

/// What became of a job's work once its batch committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The transaction was applied; the client's balance right after it.
    Applied { balance: i64 },
    /// The transaction would have crossed the limit or the ceiling; nothing changed.
    Refused,
    /// The ledger was reset.
    Reset,
}

/// One pending write and where its answer goes.
#[derive(Debug)]
pub struct Job {
    pub work: Work,
    reply: oneshot::Sender<Result<Outcome, StorageError>>,
}

/// How the writer takes turns with the other processes writing the same file.
#[derive(Debug)]
pub enum WriteLock {
    /// SQLite's own lock only: a writer that finds it taken tries again after a pause.
    SqliteOnly,
    /// An exclusive `flock` on this file (the database's path + `-writer.lock`) around every
    /// batch, taken before SQLite's lock (tried, then paused for like SQLite's); the OS releases
    /// it if the holder dies.
    Flock(File),
}

/// How the writer waits for its turn and how much it commits at once.
#[derive(Debug)]
pub struct WriterSettings {
    /// The most jobs in one transaction (a group queued together is never split).
    pub batch_max: usize,
    /// How the processes sharing the file take turns.
    pub lock: WriteLock,
    /// How long a batch waits for the lock before its jobs fail with [`StorageError::Busy`].
    pub busy_timeout: Duration,
    /// Receives the size of every batch committed (`GET /metrics`).
    pub batch_sizes: Histogram,
}

/// Counters of the group commit, since the process started.
#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    batches: AtomicU64,
    jobs: AtomicU64,
    largest: AtomicU64,
    retried: AtomicU64,
}

/// How the writer grouped the jobs it committed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BatchStats {
    /// Transactions committed (each may hold many jobs).
    pub batches: u64,
    /// Jobs applied, refused or failed.
    pub jobs: u64,
    /// The most jobs one batch held.
    pub largest: u64,
    /// Batches that failed and were applied again one job at a time.
    pub retried: u64,
    /// Jobs queued and not yet taken by a committer, at the moment of asking.
    pub waiting: u64,
}

/// The jobs waiting for a commit, in groups queued together, and whether a committer runs.
#[derive(Debug, Default)]
struct Queue {
    groups: VecDeque<Group>,
    committing: bool,
    closed: bool,
}

/// The write connection's raw handle and its prepared statements.
///
/// Its lifetimes are `'static` because it is shared between threads, but the handle is only
/// borrowed: from the owner thread, which holds sqlx's lock on it until this session has been
/// dropped (see [`Writer::start`]; `Shared` drops it before it lets the owner go).
struct Session {
    // Declared first, so finalized before the handle is given back.
    statements: Statements<'static>,
    connection: Connection<'static>,
}

// SAFETY: a SQLite connection (the bundled build is thread-safe) may be used from any thread,
// one at a time; the `Mutex` around the session is what makes it one at a time.
unsafe impl Send for Session {}

/// Jobs queued together, so committed in one batch. A lone job (every request's) is kept as it
/// is: a vector of one for each of them was an allocation per write.
#[derive(Debug)]
enum Group {
    One(Job),
    Many(Vec<Job>),
}

impl Group {
    fn len(&self) -> usize {
        match self {
            Group::One(_) => 1,
            Group::Many(jobs) => jobs.len(),
        }
    }
}

/// What the handles, the committers and the owner thread share.
struct Shared {
    queue: Mutex<Queue>,
    // Dropped before `release`, so the owner thread never gives the handle back while the
    // session's statements exist.
    session: Mutex<Option<Session>>,
    /// Tells the owner thread to give the handle back and close the connection (and, when it
    /// has, answers on the sender it carries); dropping it does the same, answering nobody.
    release: Mutex<Option<mpsc::Sender<oneshot::Sender<()>>>>,
    batch_max: usize,
    lock: WriteLock,
    busy_timeout: Duration,
    counters: Counters,
    batch_sizes: Histogram,
}

/// The handle through which handlers reach the writer; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Locks `mutex` even if a thread panicked while holding it: every state it guards stays
/// consistent between statements (a panic cannot leave half a job queued).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writer {
    /// Starts the owner thread of `connection` (opened, with its busy handler and the schema in
    /// place) and waits until the write statements are prepared.
    pub async fn start(
        connection: SqliteConnection,
        settings: WriterSettings,
    ) -> Result<Self, StorageError> {
        let (ready, started) = oneshot::channel();
        let (release, released) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || own(connection, ready, released))
            .map_err(|err| StorageError::other(format!("cannot start the writer thread: {err}")))?;
        let session = started
            .await
            .map_err(|_| StorageError::other("the writer thread stopped while starting"))??;
        Ok(Self {
            shared: Arc::new(Shared {
                queue: Mutex::default(),
                session: Mutex::new(Some(session)),
                release: Mutex::new(Some(release)),
                batch_max: settings.batch_max.max(1),
                lock: settings.lock,
                busy_timeout: settings.busy_timeout,
                counters: Counters::default(),
                batch_sizes: settings.batch_sizes,
            }),
        })
    }

    /// Queues `work` and waits for the commit that applies it.
    pub async fn submit(&self, work: Work) -> Result<Outcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Group::One(Job { work, reply }));
        answer.await.map_err(|_| StorageError::stopped())?
    }

    /// Queues every work of `works` at once, so that they are committed in one transaction (with
    /// whatever else is waiting), and waits for that commit. Answers are in the order of `works`.
    pub async fn submit_all(&self, works: Vec<Work>) -> Vec<Result<Outcome, StorageError>> {
        let (jobs, answers): (Vec<Job>, Vec<_>) = works
            .into_iter()
            .map(|work| {
                let (reply, answer) = oneshot::channel();
                (Job { work, reply }, answer)
            })
            .unzip();
        self.queue(Group::Many(jobs));
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(
                answer
                    .await
                    .unwrap_or_else(|_| Err(StorageError::stopped())),
            );
        }
        results
    }

    /// Puts `group` on the queue and starts a committer if none runs. Once the writer is closed
    /// the group is dropped, which answers each of its jobs that the writer has stopped.
    fn queue(&self, group: Group) {
        let jobs = group.len() as u64;
        let start_committer = {
            let mut queue = lock(&self.shared.queue);
            if queue.closed {
                return;
            }
            queue.groups.push_back(group);
            !std::mem::replace(&mut queue.committing, true)
        };
        self.shared.counters.submitted.fetch_add(jobs, Relaxed);
        if start_committer {
            // Spawned on this worker's runtime, behind the requests it has already read.
            tokio::spawn(commit_queued(Arc::clone(&self.shared)));
        }
    }

    /// Commits what is queued, stops taking jobs, and gives the connection back to be closed.
    pub async fn close(&self) {
        lock(&self.shared.queue).closed = true;
        // A committer still running empties the queue first (bounded by the busy timeout).
        let deadline =
            std::time::Instant::now() + self.shared.busy_timeout + Duration::from_secs(1);
        while lock(&self.shared.queue).committing && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(mut session) = lock(&self.shared.session).take() {
            // If this connection closes last, SQLite checkpoints through it: with its syncs.
            if let Err(failure) = session.statements.sync_normal.run() {
                tracing::warn!(error = %failure, "cannot restore synchronous=NORMAL before closing");
            }
        }
        let release = lock(&self.shared.release).take();
        if let Some(release) = release {
            let (done, closed) = oneshot::channel();
            if release.send(done).is_ok() {
                closed.await.ok();
            }
        }
    }

    /// Reads `client`'s statement (at most `length` transactions, newest first) on the write
    /// connection, on the caller's thread, between commits, where a reader connection costs two
    /// thread hand-offs (sqlx runs each on a thread of its own: with them, statements, 3% of the
    /// requests, took 13% of an instance's CPU). One read transaction, so one snapshot: the
    /// account, then its list walked back from `ultima_id` by primary key, one lookup per listed
    /// transaction ([`sql::TRANSACTION_BY_ID`]); `sql::STATEMENT` does the same walk in one
    /// recursive query, but SQLite's plan for it looks every row up twice, builds two temporary
    /// tables and sorts: about 6,500 fewer instructions a request (7%) on the 22:11:1 mix this way
    /// (`scripts/bench-instructions`). A read needs no write lock, so it never waits for the
    /// other process. `None` when the writer is closed, or if SQLite answers busy (it can while
    /// another connection recovers the WAL): the caller then reads through the reader pool.
    pub fn statement(&self, client: ClientId, length: u32) -> Option<domain::Statement> {
        let mut session = lock(&self.shared.session);
        let Session {
            statements,
            connection,
        } = session.as_mut()?;
        let read = statements.read_statement(client, length);
        // Ended on every path, so the next batch's `BEGIN IMMEDIATE` finds no transaction open.
        // By `ROLLBACK`, which ends a read as `COMMIT` would, and can never write: if a failed
        // batch's own rollback had failed, its transaction is what is open here (and
        // `BEGIN DEFERRED` failed), and its jobs were answered with errors.
        if connection.in_transaction()
            && let Err(failure) = statements.rollback.run()
        {
            tracing::warn!(error = %failure, "cannot end a statement's read transaction");
            return None;
        }
        match read {
            Ok(statement) => Some(statement),
            Err(failure) => {
                tracing::debug!(error = %failure, "statement on the write connection failed; using a reader");
                None
            }
        }
    }

    /// The group commit's counters so far.
    pub fn stats(&self) -> BatchStats {
        let counters = &self.shared.counters;
        BatchStats {
            batches: counters.batches.load(Relaxed),
            jobs: counters.jobs.load(Relaxed),
            largest: counters.largest.load(Relaxed),
            retried: counters.retried.load(Relaxed),
            waiting: counters
                .submitted
                .load(Relaxed)
                .saturating_sub(counters.jobs.load(Relaxed)),
        }
    }
}

/// The owner thread: locks the raw handle of its sqlx connection, hands a [`Session`] on it to
/// the writer through `ready`, and holds the lock until told (or until the writer is gone); then
/// gives the handle back and closes the connection.
fn own(
    mut connection: SqliteConnection,
    ready: oneshot::Sender<Result<Session, StorageError>>,
    released: mpsc::Receiver<oneshot::Sender<()>>,
) {
    // sqlx's calls (locking the handle, closing) are async; nothing else runs on this runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            ready
                .send(Err(StorageError::other(format!("writer runtime: {err}"))))
                .ok();
            return;
        }
    };
    runtime.block_on(async move {
        let closed = match connection.lock_handle().await {
            Ok(mut handle) => {
                // SAFETY: while `handle` is held, sqlx's worker thread makes no call on the
                // connection and cannot close it. It is held until `released` answers, which
                // `Shared` does only after dropping the session (and so its statements).
                let connection = unsafe { Connection::new(handle.as_raw_handle()) };
                match Session::open(connection) {
                    Ok(session) => {
                        if ready.send(Ok(session)).is_ok() {
                            released.recv().ok()
                        } else {
                            None
                        }
                    }
                    Err(failure) => {
                        ready.send(Err(failure.into())).ok();
                        None
                    }
                }
            }
            Err(err) => {
                ready.send(Err(err.into())).ok();
                None
            }
        };
        if let Err(err) = connection.close().await {
            tracing::warn!(error = %err, "closing the write connection failed");
        }
        if let Some(done) = closed {
            done.send(()).ok();
        }
    });
}

impl Session {
    /// Prepares the write statements on `connection` and makes it fail at once when the lock is
    /// taken (the committer waits itself, between attempts).
    fn open(connection: Connection<'static>) -> Result<Self, SqliteFailure> {
        connection.fail_when_busy()?;
        Ok(Self {
            statements: Statements::prepare(&connection)?,
            connection,
        })
    }
}

/// A committer: takes the queued jobs, a batch at a time, and commits each, until the queue is
/// empty.
async fn commit_queued(shared: Arc<Shared>) {
    let mut running = Committing(Some(&shared));
    while let Some(batch) = shared.next_batch() {
        shared.commit(batch).await;
    }
    running.0 = None;
}

/// Marks the committer stopped if its task is dropped before it finished (the runtime is shutting
/// down): the queued jobs are dropped, which answers them that the writer has stopped.
struct Committing<'s>(Option<&'s Shared>);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            let mut queue = lock(&shared.queue);
            queue.groups.clear();
            queue.committing = false;
        }
    }
}

/// Takes whole groups from the front of `groups`, up to `batch_max` jobs (a longer group alone),
/// into one batch, allocated once at its size; `None` when `groups` is empty.
fn take_batch(groups: &mut VecDeque<Group>, batch_max: usize) -> Option<Vec<Job>> {
    let (mut taken, mut jobs) = (1, groups.front()?.len());
    for next in groups.iter().skip(1) {
        if jobs + next.len() > batch_max {
            break;
        }
        (taken, jobs) = (taken + 1, jobs + next.len());
    }
    let mut batch = Vec::with_capacity(jobs);
    for group in groups.drain(..taken) {
        match group {
            Group::One(job) => batch.push(job),
            Group::Many(group) => batch.extend(group),
        }
    }
    Some(batch)
}

/// Why one attempt at a transaction did not commit.
enum Attempt {
    /// Another process holds the lock: nothing was done; try again.
    Busy,
    /// The writer is closed: nothing was done.
    Closed,
    /// A statement or the `COMMIT` failed; the transaction was rolled back.
    Failed(SqliteFailure),
}

impl Shared {
    /// The next batch ([`take_batch`]); `None`, and the committer marked stopped, when the queue
    /// is empty.
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut queue = lock(&self.queue);
        let batch = take_batch(&mut queue.groups, self.batch_max);
        if batch.is_none() {
            queue.committing = false;
        }
        batch
    }

    /// Applies `batch` in one transaction and answers every job in it.
    async fn commit(&self, batch: Vec<Job>) {
        let size = batch.len() as u64;
        self.counters.batches.fetch_add(1, Relaxed);
        self.counters.jobs.fetch_add(size, Relaxed);
        self.counters.largest.fetch_max(size, Relaxed);
        self.batch_sizes.record(size as f64);
        match self.transaction(&batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    job.reply.send(Ok(outcome)).ok();
                }
            }
            Err(failure) if failure.is_busy() || batch.len() == 1 => {
                for job in batch {
                    job.reply.send(Err(failure.clone().into())).ok();
                }
            }
            Err(failure) => {
                tracing::warn!(error = %failure, jobs = batch.len(), "batch rolled back; applying its jobs one by one");
                self.counters.retried.fetch_add(1, Relaxed);
                for job in batch {
                    let answer = self
                        .transaction(std::slice::from_ref(&job))
                        .await
                        .map(|mut outcomes| outcomes.remove(0))
                        .map_err(StorageError::from);
                    job.reply.send(answer).ok();
                }
            }
        }
    }

    /// Runs the work of `jobs` in one `BEGIN IMMEDIATE ... COMMIT`, waiting for the lock in
    /// pauses while another process holds it (up to the busy timeout). On any failure the
    /// transaction is rolled back and nothing of it is written.
    async fn transaction(&self, jobs: &[Job]) -> Result<Vec<Outcome>, SqliteFailure> {
        let mut wait: Option<busy::Wait> = None;
        loop {
            match self.attempt(jobs) {
                Ok(outcomes) => return Ok(outcomes),
                Err(Attempt::Failed(failure)) => return Err(failure),
                Err(Attempt::Closed) => return Err(closed()),
                Err(Attempt::Busy) => {
                    // Let this worker read and answer other requests first (their writes queue
                    // for the next batch), then pause before trying again.
                    tokio::task::yield_now().await;
                    let wait = wait.get_or_insert_with(|| busy::Wait::start(self.busy_timeout));
                    if !wait.pause() {
                        return Err(SqliteFailure {
                            code: libsqlite3_sys::SQLITE_BUSY,
                            message: format!(
                                "the write lock stayed taken for {} ms",
                                self.busy_timeout.as_millis()
                            ),
                        });
                    }
                }
            }
        }
    }

    /// One try at committing the work of `jobs`, without waiting for anyone.
    fn attempt(&self, jobs: &[Job]) -> Result<Vec<Outcome>, Attempt> {
        let mut session = lock(&self.session);
        let Some(Session {
            statements,
            connection,
        }) = session.as_mut()
        else {
            return Err(Attempt::Closed);
        };
        let _turn = match self.take_turn() {
            Ok(Some(turn)) => Some(turn),
            Ok(None) => None,
            Err(failure) if failure.is_busy() => return Err(Attempt::Busy),
            Err(failure) => return Err(Attempt::Failed(failure)),
        };
        match statements.begin.run() {
            Ok(()) => {}
            Err(failure) if failure.is_busy() && !connection.in_transaction() => {
                return Err(Attempt::Busy);
            }
            Err(failure) => {
                return Err(Attempt::Failed(rolled_back(
                    connection, statements, failure,
                )));
            }
        }
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut pending = Pending::default();
        let applied = jobs
            .iter()
            .try_for_each(|job| {
                statements
                    .apply(connection, &mut pending, &job.work)
                    .map(|outcome| outcomes.push(outcome))
            })
            .and_then(|()| statements.write_back(&pending))
            .and_then(|()| statements.commit.run());
        match applied {
            Ok(()) => Ok(outcomes),
            Err(failure) => Err(Attempt::Failed(rolled_back(
                connection, statements, failure,
            ))),
        }
    }

    /// Takes this process's turn by `flock`, if the writers take turns that way; a busy failure
    /// when another process has it.
    fn take_turn(&self) -> Result<Option<Turn<'_>>, SqliteFailure> {
        match &self.lock {
            WriteLock::SqliteOnly => Ok(None),
            WriteLock::Flock(file) => match file.try_lock() {
                Ok(()) => Ok(Some(Turn(file))),
                Err(TryLockError::WouldBlock) => Err(SqliteFailure {
                    code: libsqlite3_sys::SQLITE_BUSY,
                    message: "another process holds the writer lock file".into(),
                }),
                Err(TryLockError::Error(err)) => Err(SqliteFailure {
                    code: libsqlite3_sys::SQLITE_IOERR,
                    message: format!("cannot lock the writer lock file: {err}"),
                }),
            },
        }
    }
}

/// Rolls back the open transaction, if any, and passes on why.
fn rolled_back(
    connection: &Connection<'_>,
    statements: &mut Statements<'_>,
    failure: SqliteFailure,
) -> SqliteFailure {
    if connection.in_transaction()
        && let Err(rollback) = statements.rollback.run()
    {
        tracing::error!(error = %rollback, "rollback failed");
    }
    failure
}

/// A row of [`sql::TRANSACTION_BY_ID`] as a statement lists it; `None` if a column is missing.
fn listed_entry(row: &Row<'_>) -> Option<StatementEntry> {
    Some(StatementEntry {
        valor: row.i64(0)?,
        tipo: Kind::from_code(row.text(1)?.as_str())?,
        descricao: row.text(2)?,
        realizada_em: row.text(3)?,
    })
}

/// The time now, as the ledger writes it: RFC 3339, UTC, milliseconds, `2024-01-17T02:34:41.217Z`
/// (chrono's fixed formatter: no format string parsed on every call, as `format` would).
fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The failure of a job that reached the writer after it closed.
fn closed() -> SqliteFailure {
    SqliteFailure {
        code: libsqlite3_sys::SQLITE_BUSY,
        message: "the writer has stopped; the server is shutting down".into(),
    }
}

/// Holds the `flock`; releases it when dropped, on every path.
struct Turn<'f>(&'f File);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.0.unlock() {
            tracing::error!(error = %err, "cannot release the writer lock file");
        }
    }
}

/// The prepared statements of the write path (transaction control too: parsing `COMMIT` for
/// every batch showed in profiles).
struct Statements<'c> {
    begin: Statement<'c>,
    commit: Statement<'c>,
    rollback: Statement<'c>,
    account: Statement<'c>,
    insert_transaction: Statement<'c>,
    update_account: Statement<'c>,
    delete_transactions: Statement<'c>,
    zero_balances: Statement<'c>,
    sync_normal: Statement<'c>,
    /// Not writes: a client's statement, read on this connection (see [`Writer::statement`]).
    begin_read: Statement<'c>,
    transaction_by_id: Statement<'c>,
}

/// A client's account as the open transaction has it so far.
#[derive(Debug, Clone, Copy)]
struct Account {
    client: ClientId,
    balance: i64,
    limit: i64,
    /// The client's newest transaction, the head of its list.
    newest: Option<i64>,
    /// Whether the batch changed it, so it must be written back before `COMMIT`.
    changed: bool,
}

/// What one open transaction has read and not yet written back: the accounts it touched (a
/// handful: a linear search beats hashing) and its commit time.
#[derive(Debug, Default)]
struct Pending {
    accounts: Vec<Account>,
    committed_at: Option<String>,
}

impl<'c> Statements<'c> {
    fn prepare(connection: &Connection<'c>) -> Result<Self, SqliteFailure> {
        Ok(Self {
            begin: connection.prepare(sql::BEGIN_WRITE)?,
            commit: connection.prepare(sql::COMMIT)?,
            rollback: connection.prepare(sql::ROLLBACK)?,
            account: connection.prepare(sql::ACCOUNT)?,
            insert_transaction: connection.prepare(sql::INSERT_TRANSACTION)?,
            update_account: connection.prepare(sql::UPDATE_ACCOUNT)?,
            delete_transactions: connection.prepare(sql::DELETE_TRANSACTIONS)?,
            zero_balances: connection.prepare(sql::ZERO_BALANCES)?,
            sync_normal: connection.prepare(sql::SYNC_NORMAL)?,
            begin_read: connection.prepare(sql::BEGIN_READ)?,
            transaction_by_id: connection.prepare(sql::TRANSACTION_BY_ID)?,
        })
    }

    /// Does one job's work inside the open transaction.
    fn apply(
        &mut self,
        connection: &Connection<'_>,
        pending: &mut Pending,
        work: &Work,
    ) -> Result<Outcome, SqliteFailure> {
        match work {
            Work::Record {
                client,
                transaction,
            } => {
                let index = self.account_index(pending, *client)?;
                let account = pending.accounts[index];
                let Some(balance) =
                    balance_after(account.balance, account.limit, transaction.signed_amount())
                else {
                    return Ok(Outcome::Refused);
                };
                // One time for the whole batch: its transactions commit at the same instant,
                // and it is taken under the write lock, so it never goes backwards across
                // batches, whichever process commits them.
                let committed_at = pending.committed_at.get_or_insert_with(rfc3339_now);
                let insert = &mut self.insert_transaction;
                insert.bind_i64(1, client.0)?;
                insert.bind_i64(2, transaction.amount)?;
                insert.bind_text(3, transaction.kind.code())?;
                insert.bind_text(4, &transaction.description)?;
                insert.bind_i64(5, balance)?;
                insert.bind_text(6, committed_at)?;
                match account.newest {
                    Some(previous) => insert.bind_i64(7, previous)?,
                    None => insert.bind_null(7)?,
                }
                insert.run()?;
                pending.accounts[index] = Account {
                    balance,
                    newest: Some(connection.last_insert_rowid()),
                    changed: true,
                    ..account
                };
                Ok(Outcome::Applied { balance })
            }
            Work::Reset => {
                self.delete_transactions.run()?;
                self.zero_balances.run()?;
                pending.accounts.clear();
                Ok(Outcome::Reset)
            }
        }
    }

    /// Where `client`'s account is in `pending`, reading it first if the batch has not yet.
    fn account_index(
        &mut self,
        pending: &mut Pending,
        client: ClientId,
    ) -> Result<usize, SqliteFailure> {
        if let Some(index) = pending.accounts.iter().position(|a| a.client == client) {
            return Ok(index);
        }
        let account = self.read_account(client)?;
        pending.accounts.push(account);
        Ok(pending.accounts.len() - 1)
    }

    /// `client`'s account as the open transaction sees it ([`sql::ACCOUNT`]), unchanged.
    fn read_account(&mut self, client: ClientId) -> Result<Account, SqliteFailure> {
        self.account.bind_i64(1, client.0)?;
        let row = self
            .account
            .first_row(|row| (row.i64(0), row.i64(1), row.i64(2)))?;
        let Some((Some(balance), Some(limit), newest)) = row else {
            return Err(SqliteFailure {
                code: libsqlite3_sys::SQLITE_NOTFOUND,
                message: format!("client {} has no account row", client.0),
            });
        };
        Ok(Account {
            client,
            balance,
            limit,
            newest,
            changed: false,
        })
    }

    /// Opens a read transaction and reads `client`'s statement in it (the caller ends it).
    fn read_statement(
        &mut self,
        client: ClientId,
        length: u32,
    ) -> Result<domain::Statement, SqliteFailure> {
        self.begin_read.run()?;
        let account = self.read_account(client)?;
        let mut next = account.newest;
        // Taken once the snapshot holds: every transaction it lists committed before now, and
        // was stamped (by the same clock, see `apply`) before its commit.
        let data_extrato = rfc3339_now();
        let mut ultimas_transacoes = Vec::with_capacity(length as usize);
        while let Some(id) = next.take()
            && ultimas_transacoes.len() < length as usize
        {
            self.transaction_by_id.bind_i64(1, id)?;
            let row = self
                .transaction_by_id
                .first_row(|row| (listed_entry(row), row.i64(4)))?;
            let Some((Some(entry), previous)) = row else {
                return Err(SqliteFailure {
                    code: libsqlite3_sys::SQLITE_CORRUPT,
                    message: format!(
                        "client {}'s list points at transaction {id}, missing or with a column \
                         a statement cannot list",
                        client.0
                    ),
                });
            };
            ultimas_transacoes.push(entry);
            next = previous;
        }
        Ok(domain::Statement {
            saldo: StatementBalance {
                total: account.balance,
                data_extrato,
                limite: account.limit,
            },
            ultimas_transacoes,
        })
    }

    /// Writes back every account the batch changed.
    fn write_back(&mut self, pending: &Pending) -> Result<(), SqliteFailure> {
        for account in pending.accounts.iter().filter(|account| account.changed) {
            let update = &mut self.update_account;
            update.bind_i64(1, account.client.0)?;
            update.bind_i64(2, account.balance)?;
            match account.newest {
                Some(newest) => update.bind_i64(3, newest)?,
                None => update.bind_null(3)?,
            }
            update.run()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose work and answer do not matter here.
    fn job() -> Job {
        let (reply, _answer) = oneshot::channel();
        Job {
            work: Work::Reset,
            reply,
        }
    }

    fn sizes(groups: &mut VecDeque<Group>, batch_max: usize) -> Vec<usize> {
        std::iter::from_fn(|| take_batch(groups, batch_max).map(|batch| batch.len())).collect()
    }

    #[test]
    fn batches_take_whole_groups_up_to_the_cap_and_a_longer_group_alone() {
        let mut groups: VecDeque<Group> = VecDeque::new();
        groups.push_back(Group::One(job()));
        groups.push_back(Group::Many((0..3).map(|_| job()).collect()));
        groups.push_back(Group::One(job()));
        groups.push_back(Group::Many((0..6).map(|_| job()).collect()));
        groups.push_back(Group::One(job()));
        groups.push_back(Group::One(job()));
        // 1 + 3 fit in 4; the next lone job starts a batch the group of 6 cannot join; the group
        // of 6 goes alone (past the cap, never split); the last two together.
        assert_eq!(sizes(&mut groups, 4), [4, 1, 6, 2]);
        assert!(groups.is_empty());
        assert!(take_batch(&mut groups, 4).is_none());
    }

    #[test]
    fn a_batch_keeps_the_order_jobs_were_queued_in() {
        let mut groups: VecDeque<Group> = VecDeque::new();
        let mut answers = Vec::new();
        for n in 0..5 {
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            let job = Job {
                work: Work::Reset,
                reply,
            };
            groups.push_back(if n == 2 {
                Group::Many(vec![job])
            } else {
                Group::One(job)
            });
        }
        let batch = take_batch(&mut groups, 64).expect("a batch");
        for (n, job) in batch.into_iter().enumerate() {
            job.reply
                .send(Ok(Outcome::Applied { balance: n as i64 }))
                .expect("the answer is awaited");
        }
        for (n, mut answer) in answers.into_iter().enumerate() {
            let outcome = answer.try_recv().expect("answered").expect("applied");
            assert_eq!(outcome, Outcome::Applied { balance: n as i64 });
        }
    }
}
