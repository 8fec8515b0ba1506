//! The write path: group commit on one connection per process, run by the Actix worker that has
//! writes waiting.
//!
//! A handler puts a [`Job`] on the process's queue and awaits its answer. The first job queued
//! while no commit is under way starts a *committer*: a task on the same worker, queued behind
//! the requests that worker has already read. So by the time it runs, every request that arrived
//! with the first one has queued its job too, and the committer takes them all (up to
//! `batch_max`) and applies them in order inside one `BEGIN IMMEDIATE ... COMMIT` (the work
//! itself is [`ledger`](super::ledger)'s): one lock acquisition, one commit for the whole group.
//! It repeats until the queue is empty, then stops; at most one committer runs per process.
//!
//! The decision that shaped it: the commit runs on the thread that read the requests. A writer
//! thread of its own cost two thread wake-ups per batch (worker to writer, writer back), and on a
//! 2-core machine a wake-up costs more than the SQLite work of a write: with one Actix worker per
//! instance (the compose layout) a write crosses no thread at all. The price is paid when the
//! other process holds the write lock: the connection fails at once rather than wait inside
//! SQLite, and the committer yields once to the worker's ready requests, then sleeps the worker
//! thread in short pauses (20 µs doubling to 1 ms, [`busy::Wait`]) until its turn. Writes that
//! queue meanwhile join the next batch, so batches grow when the lock is contended.
//!
//! The rules that keep the ledger exact:
//! - an answer is sent only after the `COMMIT` that contains it returned OK;
//! - if any statement of a batch fails, or its `COMMIT` does, the batch is rolled back (nothing
//!   of it was written) and each of its jobs is applied again in a transaction of its own, so
//!   one bad job fails only itself; a batch that found the lock busy for the whole busy timeout
//!   fails every job with [`WriteError::Busy`] instead, since retrying would wait again, and so
//!   does one that failed because the disk is full (`SQLITE_FULL`), since each of its jobs
//!   would fail the same way;
//! - once [`Writer::close`] has begun, no job is taken ([`WriteError::Stopping`]); the queued
//!   ones are committed and answered first;
//! - a process killed mid-batch loses the batch's uncommitted jobs, none of which was answered.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use metrics::Histogram;
use tokio::sync::{Notify, oneshot};

use super::busy;
use super::ffi::SqliteFailure;
use super::ledger::{LedgerFailure, Pending, Session};
use crate::domain::{Client, ClientId, NewTransaction, Recorded, Statement};

/// Why the writer did not apply a job.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// Another process held the write lock for the whole busy timeout.
    #[error("the write lock stayed taken for {} ms", .0.as_millis())]
    Busy(Duration),
    /// The writer is closing or closed: the instance is stopping.
    #[error("the instance is stopping and takes no more writes")]
    Stopping,
    /// SQLite failed a statement or the commit; the transaction was rolled back.
    #[error(transparent)]
    Sqlite(SqliteFailure),
    /// The stored rows break an invariant the write path keeps; the transaction was rolled back.
    #[error("broken invariant: {0}")]
    Broken(String),
}

impl From<LedgerFailure> for WriteError {
    fn from(failure: LedgerFailure) -> Self {
        match failure {
            LedgerFailure::Sqlite(failure) => Self::Sqlite(failure),
            LedgerFailure::Broken(message) => Self::Broken(message),
        }
    }
}

impl From<SqliteFailure> for WriteError {
    fn from(failure: SqliteFailure) -> Self {
        Self::Sqlite(failure)
    }
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// One pending write and where its answer goes.
#[derive(Debug)]
enum Job {
    /// Apply a valid transaction if the balance allows it.
    Record {
        client: Client,
        transaction: NewTransaction,
        /// What the open transaction made of it; sent once its `COMMIT` succeeds.
        outcome: Option<Recorded>,
        reply: Reply<Recorded>,
    },
    /// Delete every transaction and set every balance to 0.
    Reset { reply: Reply<()> },
}

impl Job {
    /// Does the job's work inside `session`'s open transaction.
    fn apply(&mut self, session: &mut Session, pending: &mut Pending) -> Result<(), WriteError> {
        match self {
            Job::Record {
                client,
                transaction,
                outcome,
                ..
            } => *outcome = Some(session.record(pending, *client, transaction)?),
            Job::Reset { .. } => session.reset(pending)?,
        }
        Ok(())
    }

    /// Answers the job once the transaction that applied it has committed.
    fn committed(self) {
        match self {
            Job::Record { outcome, reply, .. } => {
                let answer = outcome.ok_or_else(|| {
                    WriteError::Broken("a committed transaction had no outcome".into())
                });
                reply.send(answer).ok();
            }
            Job::Reset { reply } => {
                reply.send(Ok(())).ok();
            }
        }
    }

    /// Answers the job with `error`: nothing of it was written.
    fn failed(self, error: WriteError) {
        match self {
            Job::Record { reply, .. } => reply.send(Err(error)).ok(),
            Job::Reset { reply } => reply.send(Err(error)).ok(),
        };
    }
}

/// How the writer waits for its turn and how much it commits at once.
#[derive(Debug)]
pub struct WriterSettings {
    /// The most jobs in one transaction.
    pub batch_max: usize,
    /// How long a batch waits for the lock before its jobs fail with [`WriteError::Busy`].
    pub busy_timeout: Duration,
    /// Receives the size of every batch committed (`GET /metrics`).
    pub batch_sizes: Histogram,
}

/// Counters of the group commit, since the process started.
#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    jobs: AtomicU64,
    largest: AtomicU64,
    retried: AtomicU64,
}

/// How the writer grouped the jobs it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// The most jobs one batch held.
    pub largest: u64,
    /// Batches that failed and were applied again one job at a time.
    pub retried: u64,
    /// Jobs queued and not yet taken by a committer, at the moment of asking.
    pub waiting: u64,
}

/// The jobs waiting for a commit, and whether a committer runs.
#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    committing: bool,
    closed: bool,
}

/// What the handles and the committers share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// The write connection; `None` once closed.
    session: Mutex<Option<Session>>,
    /// Woken each time a committer stops, for [`Writer::close`].
    committer_stopped: Notify,
    batch_max: usize,
    busy_timeout: Duration,
    counters: Counters,
    batch_sizes: Histogram,
}

/// The handle through which storage reaches the writer; cheap to clone.
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
    /// A writer committing on `session`'s connection, which must fail at once when the lock is
    /// taken (`Connection::fail_when_busy`).
    pub fn new(session: Session, settings: WriterSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::default(),
                session: Mutex::new(Some(session)),
                committer_stopped: Notify::new(),
                batch_max: settings.batch_max.max(1),
                busy_timeout: settings.busy_timeout,
                counters: Counters::default(),
                batch_sizes: settings.batch_sizes,
            }),
        }
    }

    /// Applies `transaction` to `client` if the balance allows it; answers once committed.
    pub async fn record(
        &self,
        client: Client,
        transaction: NewTransaction,
    ) -> Result<Recorded, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Job::Record {
            client,
            transaction,
            outcome: None,
            reply,
        })?;
        answer.await.map_err(|_| WriteError::Stopping)?
    }

    /// Deletes every transaction and sets every balance to 0; answers once committed.
    pub async fn reset(&self) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue(Job::Reset { reply })?;
        answer.await.map_err(|_| WriteError::Stopping)?
    }

    /// Puts `job` on the queue and starts a committer if none runs; refuses it once the writer
    /// is closing.
    fn queue(&self, job: Job) -> Result<(), WriteError> {
        let start_committer = {
            let mut queue = lock(&self.shared.queue);
            if queue.closed {
                return Err(WriteError::Stopping);
            }
            queue.jobs.push_back(job);
            !std::mem::replace(&mut queue.committing, true)
        };
        self.shared.counters.submitted.fetch_add(1, Relaxed);
        if start_committer {
            // Spawned on this worker's runtime, behind the requests it has already read.
            tokio::spawn(commit_queued(Arc::clone(&self.shared)));
        }
        Ok(())
    }

    /// Stops taking jobs, commits the queued ones (waiting at most the busy timeout and a
    /// second for the committer), and closes the connection.
    pub async fn close(&self) {
        lock(&self.shared.queue).closed = true;
        let committer_done = async {
            loop {
                let stopped = self.shared.committer_stopped.notified();
                tokio::pin!(stopped);
                // Registered before the check, so a stop between the two is not missed.
                stopped.as_mut().enable();
                if !lock(&self.shared.queue).committing {
                    return;
                }
                stopped.await;
            }
        };
        let patience = self.shared.busy_timeout + Duration::from_secs(1);
        if tokio::time::timeout(patience, committer_done)
            .await
            .is_err()
        {
            tracing::warn!("closing the writer while a commit still runs");
        }
        // Closed here: if it is the last connection to the file, SQLite checkpoints through it,
        // syncing at its level (NORMAL or FULL, both sync a checkpoint).
        drop(lock(&self.shared.session).take());
    }

    /// Reads `client`'s statement on the write connection, on the caller's thread, between
    /// commits, where a reader connection costs two thread hand-offs (sqlx runs each on a thread
    /// of its own). A read needs no write lock, so it never waits for the other process. `None`
    /// when the writer is closed, or if SQLite answers busy (it can while another connection
    /// recovers the WAL): the caller then reads through a reader connection.
    pub fn statement(&self, client: ClientId, length: u32) -> Option<Statement> {
        let mut session = lock(&self.shared.session);
        match session.as_mut()?.statement(client, length) {
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
            largest: counters.largest.load(Relaxed),
            retried: counters.retried.load(Relaxed),
            waiting: counters
                .submitted
                .load(Relaxed)
                .saturating_sub(counters.jobs.load(Relaxed)),
        }
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

/// Marks the committer stopped if its task is dropped before it finished (the worker's runtime
/// is shutting down): the queued jobs are dropped, which answers each that the instance is
/// stopping.
struct Committing<'s>(Option<&'s Shared>);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            let mut queue = lock(&shared.queue);
            queue.jobs.clear();
            queue.committing = false;
            shared.committer_stopped.notify_waiters();
        }
    }
}

/// Takes up to `batch_max` jobs from the front of `jobs`, in the order they were queued, into
/// one batch allocated at its size; `None` when `jobs` is empty.
fn take_batch(jobs: &mut VecDeque<Job>, batch_max: usize) -> Option<Vec<Job>> {
    if jobs.is_empty() {
        return None;
    }
    let size = jobs.len().min(batch_max);
    Some(jobs.drain(..size).collect())
}

/// Why one attempt at a transaction did not commit.
enum Attempt {
    /// Another process holds the lock: nothing was done; try again.
    Busy,
    /// The writer is closed: nothing was done.
    Closed,
    /// A statement or the `COMMIT` failed; the transaction was rolled back.
    Failed(WriteError),
}

impl Shared {
    /// The next batch ([`take_batch`]); `None`, and the committer marked stopped, when the queue
    /// is empty.
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut queue = lock(&self.queue);
        let batch = take_batch(&mut queue.jobs, self.batch_max);
        if batch.is_none() {
            queue.committing = false;
            self.committer_stopped.notify_waiters();
        }
        batch
    }

    /// Applies `batch` in one transaction and answers every job in it.
    async fn commit(&self, mut batch: Vec<Job>) {
        let size = batch.len() as u64;
        self.counters.jobs.fetch_add(size, Relaxed);
        self.counters.largest.fetch_max(size, Relaxed);
        self.batch_sizes.record(size as f64);
        match self.transaction(&mut batch).await {
            Ok(()) => batch.into_iter().for_each(Job::committed),
            Err(error) if is_final(&error) || batch.len() == 1 => {
                for job in batch {
                    job.failed(error.clone());
                }
            }
            Err(error) => {
                tracing::warn!(%error, jobs = batch.len(), "batch rolled back; applying its jobs one by one");
                self.counters.retried.fetch_add(1, Relaxed);
                for mut job in batch {
                    match self.transaction(std::slice::from_mut(&mut job)).await {
                        Ok(()) => job.committed(),
                        Err(error) => job.failed(error),
                    }
                }
            }
        }
    }

    /// Runs the work of `jobs` in one `BEGIN IMMEDIATE ... COMMIT`, waiting for the lock while
    /// another process holds it (up to the busy timeout). On any failure the transaction is
    /// rolled back and nothing of it is written.
    async fn transaction(&self, jobs: &mut [Job]) -> Result<(), WriteError> {
        let mut wait: Option<busy::Wait> = None;
        loop {
            match self.attempt(jobs) {
                Ok(()) => return Ok(()),
                Err(Attempt::Failed(error)) => return Err(error),
                Err(Attempt::Closed) => return Err(WriteError::Stopping),
                Err(Attempt::Busy) => {
                    // Let this worker read and answer the requests it has ready first (their
                    // writes queue for the next batch).
                    tokio::task::yield_now().await;
                    let wait = wait.get_or_insert_with(|| busy::Wait::start(self.busy_timeout));
                    // Then sleep this worker thread for the pause: nothing else runs on it
                    // meanwhile. `false` once the busy timeout has passed.
                    if !wait.pause() {
                        return Err(WriteError::Busy(self.busy_timeout));
                    }
                }
            }
        }
    }

    /// One try at committing the work of `jobs`, without waiting for anyone.
    fn attempt(&self, jobs: &mut [Job]) -> Result<(), Attempt> {
        let mut session = lock(&self.session);
        let Some(session) = session.as_mut() else {
            return Err(Attempt::Closed);
        };
        match session.begin() {
            Ok(()) => {}
            Err(failure) if failure.is_busy() && !session.connection.in_transaction() => {
                return Err(Attempt::Busy);
            }
            Err(failure) => {
                session.roll_back();
                return Err(Attempt::Failed(failure.into()));
            }
        }
        let mut pending = Pending::default();
        let applied = jobs
            .iter_mut()
            .try_for_each(|job| job.apply(session, &mut pending))
            .and_then(|()| Ok(session.write_back(&pending)?))
            .and_then(|()| Ok(session.commit()?));
        applied.map_err(|error| {
            session.roll_back();
            Attempt::Failed(error)
        })
    }
}

/// Whether retrying a failed batch job by job would only fail again the same way.
fn is_final(error: &WriteError) -> bool {
    match error {
        WriteError::Busy(_) | WriteError::Stopping => true,
        // A full disk fails each job alone just as it failed the batch.
        WriteError::Sqlite(failure) => failure.is_busy() || failure.is_full(),
        WriteError::Broken(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Applied;

    /// A credit of `n` to client 1, and where its answer arrives.
    fn job(n: i64) -> (Job, oneshot::Receiver<Result<Recorded, WriteError>>) {
        let (reply, answer) = oneshot::channel();
        let body = format!(r#"{{"valor": {n}, "tipo": "c", "descricao": "x"}}"#);
        let job = Job::Record {
            client: Client {
                id: ClientId(1),
                limit: 0,
            },
            transaction: NewTransaction::from_json(body.as_bytes()).expect("valid"),
            outcome: None,
            reply,
        };
        (job, answer)
    }

    #[test]
    fn batches_take_jobs_in_queue_order_up_to_the_cap() {
        let (mut jobs, mut answers) = (VecDeque::new(), Vec::new());
        for n in 1..=5 {
            let (job, answer) = job(n);
            jobs.push_back(job);
            answers.push(answer);
        }
        let mut sizes = Vec::new();
        while let Some(batch) = take_batch(&mut jobs, 2) {
            sizes.push(batch.len());
            for mut job in batch {
                // As if applied: each answers its own amount as the balance.
                if let Job::Record {
                    transaction,
                    outcome,
                    ..
                } = &mut job
                {
                    *outcome = Some(Recorded::Applied(Applied {
                        limit: 0,
                        balance: transaction.amount(),
                    }));
                }
                job.committed();
            }
        }
        assert_eq!(sizes, [2, 2, 1]);
        for (n, mut answer) in (1..).zip(answers) {
            let recorded = answer.try_recv().expect("answered").expect("applied");
            let expected = Recorded::Applied(Applied {
                limit: 0,
                balance: n,
            });
            assert_eq!(recorded, expected, "job {n} answered with its own outcome");
        }
    }
}
