//! The write path: one thread per process owns the write connection and commits whatever is
//! waiting in one transaction (group commit).
//!
//! Handlers put a [`Job`] on an in-memory queue and await its answer. The writer thread takes
//! the first job (sleeping until there is one), then every job already waiting, up to
//! `batch_max`, and applies them in order inside one `BEGIN IMMEDIATE ... COMMIT`: one lock
//! acquisition, one commit and one wake-up of the thread for the whole group, where a statement
//! per request paid each of them every time. Each transaction is still its own conditional
//! `INSERT ... SELECT ... RETURNING` (see `sql::RECORD`), so balances chain inside the batch and
//! a refused debit refuses only itself.
//!
//! The rules that keep the ledger exact:
//! - an answer is sent only after the `COMMIT` that contains it returned OK;
//! - if any statement of a batch fails, or its `COMMIT` does, the batch is rolled back (nothing
//!   of it was written) and each of its jobs is applied again in a transaction of its own, so
//!   one bad job fails only itself; a batch that found the lock busy for the whole busy timeout
//!   fails every job with [`StorageError::Busy`] (503) instead, since retrying would wait again;
//! - a process killed mid-batch loses the batch's uncommitted jobs, none of which was answered.
//!
//! `batch_max` bounds how long the lock is held at once, so the other process sharing the file
//! is not kept waiting behind a long queue.

use std::fmt;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;

use metrics::Histogram;
use serde::Serialize;
use sqlx::{Connection as _, SqliteConnection};
use tokio::sync::oneshot;

use super::raw::{Connection, SqliteFailure, Statement};
use super::{StorageError, sql};
use crate::domain::{ClientId, MAX_BALANCE, NewTransaction};

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

/// What the queue carries: work, or the request to finish it and stop.
enum Message {
    Job(Job),
    /// Jobs to commit together, in order (never split, even past `batch_max`).
    Jobs(Vec<Job>),
    Stop(oneshot::Sender<()>),
}

/// How the writer takes turns with the other processes writing the same file.
#[derive(Debug)]
pub enum WriteLock {
    /// SQLite's own lock only: a writer that finds it taken polls through the busy handler
    /// (see `busy`).
    SqliteOnly,
    /// An exclusive `flock` on this file (the database's path + `-writer.lock`) around every
    /// batch, so a waiting process sleeps in the kernel and is woken when the lock is released;
    /// the OS releases it if the holder dies.
    Flock(File),
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
    /// Jobs queued and not yet taken by the writer, at the moment of asking.
    pub waiting: u64,
}

/// The handle through which handlers reach the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Message>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Writer {
    /// Starts the writer thread on `connection` (opened, with its busy handler and the schema in
    /// place) and waits until its statements are prepared.
    pub async fn start(
        connection: SqliteConnection,
        batch_max: usize,
        lock: WriteLock,
        batch_sizes: Histogram,
    ) -> Result<Self, StorageError> {
        let (queue, jobs) = mpsc::channel();
        let (ready, started) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                run(
                    connection,
                    Batcher {
                        jobs,
                        batch_max: batch_max.max(1),
                        lock,
                        counters: thread_counters,
                        batch_sizes,
                    },
                    ready,
                );
            })
            .map_err(|err| StorageError::other(format!("cannot start the writer thread: {err}")))?;
        started
            .await
            .map_err(|_| StorageError::other("the writer thread stopped while starting"))??;
        Ok(Self { queue, counters })
    }

    /// Queues `work` and waits for the commit that applies it.
    pub async fn submit(&self, work: Work) -> Result<Outcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.counters.submitted.fetch_add(1, Relaxed);
        self.queue
            .send(Message::Job(Job { work, reply }))
            .map_err(|_| StorageError::stopped())?;
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
        self.counters
            .submitted
            .fetch_add(jobs.len() as u64, Relaxed);
        let queued = self.queue.send(Message::Jobs(jobs)).is_ok();
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer.await {
                Ok(result) if queued => result,
                _ => Err(StorageError::stopped()),
            });
        }
        results
    }

    /// Lets the thread finish the jobs queued so far, close the connection and stop.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(Message::Stop(done)).is_ok() {
            finished.await.ok();
        }
    }

    /// The group commit's counters so far.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.counters.batches.load(Relaxed),
            jobs: self.counters.jobs.load(Relaxed),
            largest: self.counters.largest.load(Relaxed),
            retried: self.counters.retried.load(Relaxed),
            waiting: self
                .counters
                .submitted
                .load(Relaxed)
                .saturating_sub(self.counters.jobs.load(Relaxed)),
        }
    }
}

/// The writer thread: borrows the raw handle of its sqlx connection for as long as it runs, then
/// gives it back and closes the connection.
fn run(
    mut connection: SqliteConnection,
    batcher: Batcher,
    ready: oneshot::Sender<Result<(), StorageError>>,
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
        let stopped = match connection.lock_handle().await {
            Ok(mut handle) => {
                // SAFETY: while `handle` is held, sqlx's worker thread makes no call on the
                // connection and cannot close it; `raw` and its statements are dropped before
                // `handle` at the end of this block.
                let raw = unsafe { Connection::new(handle.as_raw_handle()) };
                batcher.serve(&raw, ready)
            }
            Err(err) => {
                ready.send(Err(err.into())).ok();
                None
            }
        };
        if let Err(err) = connection.close().await {
            tracing::warn!(error = %err, "closing the write connection failed");
        }
        if let Some(done) = stopped {
            done.send(()).ok();
        }
    });
}

/// The prepared statements of the write path (transaction control too: parsing `COMMIT` for
/// every batch showed in profiles).
struct Statements<'c> {
    begin: Statement<'c>,
    commit: Statement<'c>,
    rollback: Statement<'c>,
    record: Statement<'c>,
    delete_transactions: Statement<'c>,
    zero_balances: Statement<'c>,
    sync_normal: Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(connection: &'c Connection<'c>) -> Result<Self, SqliteFailure> {
        Ok(Self {
            begin: connection.prepare(sql::BEGIN_WRITE)?,
            commit: connection.prepare(sql::COMMIT)?,
            rollback: connection.prepare(sql::ROLLBACK)?,
            record: connection.prepare(sql::RECORD)?,
            delete_transactions: connection.prepare(sql::DELETE_TRANSACTIONS)?,
            zero_balances: connection.prepare(sql::ZERO_BALANCES)?,
            sync_normal: connection.prepare(sql::SYNC_NORMAL)?,
        })
    }

    /// Does one job's work inside the open transaction.
    fn apply(&mut self, work: &Work) -> Result<Outcome, SqliteFailure> {
        match work {
            Work::Record {
                client,
                transaction,
            } => {
                let record = &mut self.record;
                record.bind_i64(1, client.0)?;
                record.bind_i64(2, transaction.amount)?;
                record.bind_text(3, transaction.kind.code())?;
                record.bind_text(4, &transaction.description)?;
                record.bind_i64(5, transaction.signed_amount())?;
                record.bind_i64(6, MAX_BALANCE)?;
                Ok(match record.run_returning_i64()? {
                    Some(balance) => Outcome::Applied { balance },
                    None => Outcome::Refused,
                })
            }
            Work::Reset => {
                self.delete_transactions.run()?;
                self.zero_balances.run()?;
                Ok(Outcome::Reset)
            }
        }
    }
}

/// The writer thread's state: the queue's receiving end and how to group what it takes.
struct Batcher {
    jobs: mpsc::Receiver<Message>,
    batch_max: usize,
    lock: WriteLock,
    counters: Arc<Counters>,
    /// Metrics: the size of every batch committed (`GET /metrics`).
    batch_sizes: Histogram,
}

impl Batcher {
    /// Prepares the statements, says so on `ready`, then commits batches until asked to stop
    /// (returns where to say it stopped) or until every sender is gone.
    fn serve(
        &self,
        connection: &Connection<'_>,
        ready: oneshot::Sender<Result<(), StorageError>>,
    ) -> Option<oneshot::Sender<()>> {
        let mut statements = match Statements::prepare(connection) {
            Ok(statements) => statements,
            Err(failure) => {
                ready.send(Err(failure.into())).ok();
                return None;
            }
        };
        ready.send(Ok(())).ok();
        let stopped = self.commit_until_stopped(connection, &mut statements);
        // If this connection closes last, SQLite checkpoints through it: with its syncs.
        if let Err(failure) = statements.sync_normal.run() {
            tracing::warn!(error = %failure, "cannot restore synchronous=NORMAL before closing");
        }
        stopped
    }

    fn commit_until_stopped(
        &self,
        connection: &Connection<'_>,
        statements: &mut Statements<'_>,
    ) -> Option<oneshot::Sender<()>> {
        let mut batch = Vec::with_capacity(self.batch_max);
        loop {
            let mut stop = match self.jobs.recv() {
                Ok(Message::Job(job)) => {
                    batch.push(job);
                    None
                }
                Ok(Message::Jobs(jobs)) => {
                    batch.extend(jobs);
                    None
                }
                Ok(Message::Stop(done)) => return Some(done),
                Err(mpsc::RecvError) => return None,
            };
            while batch.len() < self.batch_max && stop.is_none() {
                match self.jobs.try_recv() {
                    Ok(Message::Job(job)) => batch.push(job),
                    Ok(Message::Jobs(jobs)) => batch.extend(jobs),
                    Ok(Message::Stop(done)) => stop = Some(done),
                    Err(_) => break,
                }
            }
            self.commit(connection, statements, &mut batch);
            if stop.is_some() {
                return stop;
            }
        }
    }

    /// Applies `batch` in one transaction and answers every job in it; empties `batch`.
    fn commit(
        &self,
        connection: &Connection<'_>,
        statements: &mut Statements<'_>,
        batch: &mut Vec<Job>,
    ) {
        let size = batch.len() as u64;
        self.counters.batches.fetch_add(1, Relaxed);
        self.counters.jobs.fetch_add(size, Relaxed);
        self.counters.largest.fetch_max(size, Relaxed);
        self.batch_sizes.record(size as f64);
        match self.transaction(connection, statements, batch.iter().map(|job| &job.work)) {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    job.reply.send(Ok(outcome)).ok();
                }
            }
            Err(failure) if failure.is_busy() || batch.len() == 1 => {
                for job in batch.drain(..) {
                    job.reply.send(Err(failure.clone().into())).ok();
                }
            }
            Err(failure) => {
                tracing::warn!(error = %failure, jobs = batch.len(), "batch rolled back; applying its jobs one by one");
                self.counters.retried.fetch_add(1, Relaxed);
                for job in batch.drain(..) {
                    let answer = self
                        .transaction(connection, statements, std::iter::once(&job.work))
                        .map(|mut outcomes| outcomes.remove(0))
                        .map_err(StorageError::from);
                    job.reply.send(answer).ok();
                }
            }
        }
    }

    /// Runs `works` in one `BEGIN IMMEDIATE ... COMMIT`, under the cross-process lock if there
    /// is one. On any failure the transaction is rolled back and nothing of it is written.
    fn transaction<'w>(
        &self,
        connection: &Connection<'_>,
        statements: &mut Statements<'_>,
        works: impl ExactSizeIterator<Item = &'w Work>,
    ) -> Result<Vec<Outcome>, SqliteFailure> {
        let _turn = self.take_turn()?;
        statements.begin.run()?;
        let mut outcomes = Vec::with_capacity(works.len());
        let applied = works
            .into_iter()
            .try_for_each(|work| statements.apply(work).map(|outcome| outcomes.push(outcome)))
            .and_then(|()| statements.commit.run());
        if let Err(failure) = applied {
            if connection.in_transaction()
                && let Err(rollback) = statements.rollback.run()
            {
                tracing::error!(error = %rollback, "rollback failed");
            }
            return Err(failure);
        }
        Ok(outcomes)
    }

    /// Waits for this process's turn to write, if the writers take turns by `flock`.
    fn take_turn(&self) -> Result<Option<Turn<'_>>, SqliteFailure> {
        match &self.lock {
            WriteLock::SqliteOnly => Ok(None),
            WriteLock::Flock(file) => {
                file.lock().map_err(|err| SqliteFailure {
                    code: libsqlite3_sys::SQLITE_IOERR,
                    message: format!("cannot lock the writer lock file: {err}"),
                })?;
                Ok(Some(Turn(file)))
            }
        }
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
