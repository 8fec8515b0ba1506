//! The write path: one thread per process owns the write connection and commits whatever is
//! waiting in one transaction (group commit).
//!
//! Handlers put a [`Job`] on an in-memory queue and await its answer. The writer thread takes
//! the first job (sleeping until there is one), then every job already waiting, up to
//! `batch_max`, and applies them in order inside one `BEGIN IMMEDIATE ... COMMIT`: one lock
//! acquisition, one commit and one wake-up of the thread for the whole group, where a statement
//! per request paid each of them every time.
//!
//! Inside the transaction the writer holds SQLite's write lock, so no other process can change
//! an account until its `COMMIT`: it reads each client's account the first time the batch
//! touches it, checks every transaction against the balance as the batch has left it
//! (`domain::balance_after`), appends each accepted one with a plain `INSERT`, and writes each
//! changed account back once, just before `COMMIT`. Balances chain inside the batch, a refused
//! debit refuses only itself. (Each transaction used to be one conditional `INSERT ... SELECT
//! ... RETURNING` with a trigger updating the balance; RETURNING's temporary table and the
//! trigger cost more than the reads they saved, see BENCHMARKS.md.)
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
use crate::domain::{ClientId, NewTransaction, balance_after};

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
    account: Statement<'c>,
    insert_transaction: Statement<'c>,
    update_account: Statement<'c>,
    delete_transactions: Statement<'c>,
    zero_balances: Statement<'c>,
    sync_normal: Statement<'c>,
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
    fn prepare(connection: &'c Connection<'c>) -> Result<Self, SqliteFailure> {
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
                let committed_at = pending.committed_at.get_or_insert_with(|| {
                    chrono::Utc::now()
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string()
                });
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
        pending.accounts.push(Account {
            client,
            balance,
            limit,
            newest,
            changed: false,
        });
        Ok(pending.accounts.len() - 1)
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
        let mut pending = Pending::default();
        let applied = works
            .into_iter()
            .try_for_each(|work| {
                statements
                    .apply(connection, &mut pending, work)
                    .map(|outcome| outcomes.push(outcome))
            })
            .and_then(|()| statements.write_back(&pending))
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
