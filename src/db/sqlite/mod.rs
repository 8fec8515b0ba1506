//! The SQLite backend: one database file in WAL mode, shared by every instance of one host, kept
//! exact by SQLite's write lock.
//!
//! Each process writes through one connection of its own ([`ffi::Connection`], opened here) and
//! a group-commit [`writer`]: whatever is waiting is committed in one `BEGIN IMMEDIATE ...
//! COMMIT`, which holds the write lock from the first read of an account to its write-back, so
//! there is no read-then-write race across processes. Statements are read on the same
//! connection between commits; in WAL mode a read never waits for a writer. A small sqlx pool of
//! *readers* keeps what is off the request path or rare: checkpoints, health checks, and
//! statements when the write connection cannot read them.
//!
//! The backend owns its background work: a task that copies the WAL into the database file in
//! small steps as it grows (each time the write connection's commits have added
//! [`CHECKPOINT_STEP_PAGES`]), and at least every `DB_CHECKPOINT_INTERVAL_MS`, so that no request
//! pays for a checkpoint and no burst leaves a long one behind; it is stopped when the last handle
//! to the backend goes. The backend reports its batches, lock waits, checkpoints and WAL size to
//! `metrics`.

mod busy;
mod ffi;
mod ledger;
mod sql;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::rows::{StatementRow, clients_from_rows, statement_from_rows};
use super::{DatabaseSettings, Durability, StorageError};
use crate::domain::{Client, NewTransaction, Recorded, STATEMENT_LENGTH, Statement};
use crate::metrics::StorageMetrics;
use ffi::{Connection, SqliteFailure};
use ledger::Session;
use writer::{WriteError, Writer, WriterSettings};

/// How much the WAL grows (in pages, 1 KiB each) between two checkpoints while writes flow.
/// Small steps keep each checkpoint short, so that none takes a long turn of the CPU, and keep
/// what is left to copy when a burst ends to one step.
const CHECKPOINT_STEP_PAGES: u32 = 1024;

/// How long the WAL may grow (in pages) before a checkpoint forces it to start over. At light
/// load the WAL starts over by itself (see [`checkpoint`]); under sustained writes it never
/// does, and this bounds the file.
const WAL_RESTART_PAGES: i64 = 16384;

/// A failure of the SQLite backend.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// Opening or preparing the write connection.
    #[error(transparent)]
    Open(#[from] SqliteFailure),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A reader connection (sqlx).
    #[error(transparent)]
    Read(#[from] sqlx::Error),
    /// The stored rows break an invariant the write path keeps.
    #[error("{0}")]
    Broken(String),
}

impl SqliteError {
    /// Whether the file system holding the database is full (`SQLITE_FULL`, or an I/O error
    /// from `ENOSPC`).
    fn is_full(&self) -> bool {
        match self {
            SqliteError::Open(failure) | SqliteError::Write(WriteError::Sqlite(failure)) => {
                failure.is_full()
            }
            SqliteError::Write(_) | SqliteError::Broken(_) => false,
            SqliteError::Read(err) => err
                .as_database_error()
                .and_then(|db| db.code())
                .and_then(|code| code.parse().ok())
                .is_some_and(ffi::is_full_code),
        }
    }

    /// Whether another connection held a lock for longer than the busy timeout.
    fn is_busy(&self) -> bool {
        match self {
            SqliteError::Open(failure) => failure.is_busy(),
            SqliteError::Write(WriteError::Busy(_)) => true,
            SqliteError::Write(WriteError::Sqlite(failure)) => failure.is_busy(),
            SqliteError::Write(_) | SqliteError::Broken(_) => false,
            SqliteError::Read(err) => {
                matches!(err, sqlx::Error::PoolTimedOut)
                    || err
                        .as_database_error()
                        .and_then(|db| db.code())
                        .and_then(|code| code.parse().ok())
                        .is_some_and(ffi::is_busy_code)
            }
        }
    }
}

impl From<SqliteError> for StorageError {
    fn from(err: SqliteError) -> Self {
        match err {
            SqliteError::Write(WriteError::Stopping)
            | SqliteError::Read(sqlx::Error::PoolClosed) => StorageError::Stopping,
            err if err.is_busy() => StorageError::Busy(err.into()),
            err if err.is_full() => StorageError::Full(err.into()),
            err => StorageError::Other(err.into()),
        }
    }
}

/// The SQLite ledger: the writer, the reader pool, and the checkpoint task.
#[derive(Debug, Clone)]
pub struct Sqlite {
    writer: Writer,
    reader: SqlitePool,
    background: Arc<Background>,
}

/// The backend's background task, aborted when the last handle to the backend goes.
#[derive(Debug)]
struct Background(Option<JoinHandle<()>>);

impl Background {
    fn stop(&self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks that `url` names a SQLite file (not an in-memory database, which no two connections
/// could share).
pub fn check_url(url: &str) -> Result<(), String> {
    if !url.starts_with("sqlite:") {
        return Err(
            "expected sqlite://path/to/file.db or postgres://user:password@host/database".into(),
        );
    }
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(
            "an in-memory database cannot be shared between connections; use a file".into(),
        );
    }
    SqliteConnectOptions::from_str(url)
        .map(drop)
        .map_err(|err| err.to_string())
}

impl Sqlite {
    /// Opens the write connection (applying `script.sql`) and the reader pool, and starts the
    /// checkpoint task.
    pub async fn connect(
        settings: &DatabaseSettings,
        metrics: StorageMetrics,
    ) -> Result<Self, SqliteError> {
        let checkpoints = !settings.checkpoint_interval.is_zero();
        let busy_timeout = settings.busy_timeout;
        let options = pragmas(settings, Role::Reader).into_iter().fold(
            SqliteConnectOptions::from_str(&settings.url)?
                .create_if_missing(true)
                // Used only until `ffi::wait_when_busy` replaces it, i.e. by the pragmas at
                // connect.
                .busy_timeout(busy_timeout),
            |options, (name, value)| options.pragma(name, value),
        );
        let path = options.get_filename().to_owned();
        // Opening can meet SQLITE_BUSY without the busy handler ever being asked: two processes
        // switching a new file to WAL at once each hold a shared lock and want an exclusive one,
        // and SQLite refuses one of them at once rather than deadlock. So the whole open is
        // retried, for as long as a write may wait.
        let deadline = Instant::now() + busy_timeout;
        let growth = checkpoints.then(|| Arc::new(WalGrowth::default()));
        let session = retry_while_busy(deadline, || {
            let (path, settings, growth) = (path.clone(), settings.clone(), growth.clone());
            async move {
                tokio::task::spawn_blocking(move || open_writer(&path, &settings, growth))
                    .await
                    .map_err(|err| SqliteError::Broken(format!("opening the writer: {err}")))?
            }
        })
        .await?;
        let reader = retry_while_busy(deadline, || async {
            Ok(SqlitePoolOptions::new()
                .min_connections(settings.read_connections)
                .max_connections(settings.read_connections)
                // Each check would be one more round trip to the connection's thread per request.
                .test_before_acquire(false)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(busy_timeout + Duration::from_secs(5))
                .after_connect(move |connection, _| {
                    Box::pin(ffi::wait_when_busy(connection, busy_timeout))
                })
                .connect_with(options.clone())
                .await?)
        })
        .await?;
        let writer = Writer::new(
            session,
            WriterSettings {
                batch_max: settings.write_batch_max,
                busy_timeout,
                batch_sizes: metrics.batch_sizes.clone(),
            },
        );
        report_on_scrape(&metrics, writer.clone(), wal_path(&path));
        let task = growth.map(|growth| {
            tokio::spawn(checkpoint_continually(
                reader.clone(),
                metrics,
                growth,
                settings.checkpoint_interval,
            ))
        });
        Ok(Self {
            writer,
            reader,
            background: Arc::new(Background(task)),
        })
    }

    /// Every client and its limit.
    pub async fn clients(&self) -> Result<Vec<Client>, SqliteError> {
        let rows = sqlx::query_as(sql::CLIENTS).fetch_all(&self.reader).await?;
        Ok(clients_from_rows(rows))
    }

    /// Applies `transaction` to `client` if the balance allows it; answers once it is committed.
    pub async fn record(
        &self,
        client: Client,
        transaction: NewTransaction,
    ) -> Result<Recorded, SqliteError> {
        Ok(self.writer.record(client, transaction).await?)
    }

    /// The client's statement: balance, limit and latest transactions, from one snapshot; on
    /// the write connection, or through a reader when it cannot.
    pub async fn statement(&self, client: Client) -> Result<Statement, SqliteError> {
        match self.writer.statement(client.id, STATEMENT_LENGTH) {
            Some(statement) => Ok(statement),
            None => self.statement_on_reader(client).await,
        }
    }

    /// The client's statement read through the reader pool (`sql::STATEMENT`).
    async fn statement_on_reader(&self, client: Client) -> Result<Statement, SqliteError> {
        let rows: Vec<StatementRow<String>> = sqlx::query_as(sql::STATEMENT)
            .bind(client.id.0)
            .bind(STATEMENT_LENGTH)
            .fetch_all(&self.reader)
            .await?;
        statement_from_rows(rows, |time| time)
            .ok_or_else(|| SqliteError::Broken(format!("client {} has no row", client.id.0)))
    }

    /// Deletes every transaction and sets every balance back to 0, atomically.
    pub async fn reset(&self) -> Result<(), SqliteError> {
        Ok(self.writer.reset().await?)
    }

    /// Succeeds when a reader answers a query.
    pub async fn ping(&self) -> Result<(), SqliteError> {
        sqlx::query(sql::PING).execute(&self.reader).await?;
        Ok(())
    }

    /// Stops the checkpoints, finishes the queued writes, and closes the writer and the readers.
    pub async fn close(&self) {
        self.background.stop();
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// Opens the write connection, applies `script.sql` inside `BEGIN IMMEDIATE` (so instances
/// starting together take turns), and prepares the ledger's queries; with background
/// checkpoints, its commits report the WAL's growth to `growth`. Blocking: SQLite's calls, and
/// the busy handler's waits while another instance holds the lock.
fn open_writer(
    path: &Path,
    settings: &DatabaseSettings,
    growth: Option<Arc<WalGrowth>>,
) -> Result<Session, SqliteError> {
    let mut connection = Connection::open(path)?;
    connection.wait_when_busy(settings.busy_timeout)?;
    let pragmas: String = pragmas(settings, Role::Writer)
        .into_iter()
        .map(|(name, value)| format!("PRAGMA {name} = {value}; "))
        .collect();
    connection.execute(&pragmas)?;
    // After the pragmas: `wal_autocheckpoint` sets the same hook and would replace this one.
    if let Some(growth) = growth {
        connection.on_wal_commit(move |pages| growth.committed(pages));
    }
    connection.execute(sql::BEGIN_WRITE)?;
    if let Err(failure) = connection
        .execute(sql::SCHEMA)
        .and_then(|()| connection.execute(sql::COMMIT))
    {
        connection.execute(sql::ROLLBACK).ok();
        return Err(failure.into());
    }
    // From here on the writer waits for its turn itself, between attempts (see `writer`).
    connection.fail_when_busy()?;
    Ok(Session::prepare(connection)?)
}

/// Which connection the settings are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The write connection of [`ffi`], which runs every write and most statements.
    Writer,
    /// A sqlx reader: checkpoints, health checks, statements the writer cannot read.
    Reader,
}

/// Every connection's settings, one list for both roles, in the order SQLite needs them (the
/// page size before anything creates the file, WAL before the rest).
///
/// - Pages of 1 KiB instead of 4: a commit appends every page it changed to the WAL, and a
///   checkpoint copies them back, so smaller pages mean less to write, read and copy (the
///   stack's p99 at saturation fell by a third for the same throughput, BENCHMARKS.md). It
///   applies when the file is created; an existing file keeps its page size.
/// - The writer's `synchronous` is `DB_DURABILITY`'s: `FULL` (`power`) syncs the WAL at each
///   commit, once per batch; `NORMAL` (`process`) syncs it only in checkpoints and when the WAL
///   starts over. Not `OFF`: without that one sync of the WAL's new header, a power cut can leave
///   the old header over new frames, and SQLite then replays frames older than the database file:
///   a corrupt image (tests/powercut finds it in about 1 cut in 100; SQLite's ticket
///   ff5be73dee). Checkpoints run on the readers at `NORMAL`, so the database file is synced
///   before the WAL is reused.
/// - No memory map on the writer: with one, SQLite looks each page up in the WAL's hash table
///   before its own cache, and a WAL that holds thousands of copies of the same few pages makes
///   that lookup a long scan (about half of a transaction's instructions, BENCHMARKS.md).
/// - A 256-page cache on the writer: each time the other process has committed, which at load is
///   before nearly every batch, SQLite empties this connection's whole cache; 256 pages hold
///   every page a batch or a statement touches, and emptying the readers' 16 MiB cost 6% of the
///   instance.
fn pragmas(settings: &DatabaseSettings, role: Role) -> Vec<(&'static str, &'static str)> {
    let checkpoints = !settings.checkpoint_interval.is_zero();
    let synchronous = match (role, settings.durability) {
        (Role::Writer, Durability::Power) => "FULL",
        _ => "NORMAL",
    };
    let (cache_size, mmap_size) = match role {
        Role::Writer => ("256", "0"),
        Role::Reader => ("-16384", "67108864"),
    };
    let mut pragmas = vec![
        ("page_size", "1024"),
        ("journal_mode", "WAL"),
        ("foreign_keys", "ON"),
        ("synchronous", synchronous),
        ("temp_store", "MEMORY"),
        ("cache_size", cache_size),
        ("mmap_size", mmap_size),
        ("journal_size_limit", "67108864"),
    ];
    if checkpoints {
        // Checkpoints run in the background task instead of inside a committing write.
        pragmas.push(("wal_autocheckpoint", "0"));
    }
    pragmas
}

/// The WAL file beside the database (`<database>-wal`).
fn wal_path(database: &Path) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push("-wal");
    path.into()
}

/// Runs `attempt` until it succeeds, fails with something other than busy, or `deadline` passes.
async fn retry_while_busy<T, F, Fut>(deadline: Instant, attempt: F) -> Result<T, SqliteError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, SqliteError>>,
{
    loop {
        match attempt().await {
            Err(err) if err.is_busy() && Instant::now() < deadline => {
                tracing::debug!(error = %err, "database busy while opening; retrying");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            result => return result,
        }
    }
}

/// At each scrape, sets the series read rather than counted: the lock waits (kept by the busy
/// handler in statics), the writer's counters and the WAL file's size.
fn report_on_scrape(metrics: &StorageMetrics, writer: Writer, wal: PathBuf) {
    metrics.on_scrape(move |series| {
        let waits = busy::lock_waits();
        series.lock_waits.absolute(waits.waits);
        series.lock_wait_retries.absolute(waits.retries);
        series.lock_wait_seconds.set(waits.total_ms / 1e3);
        series.lock_wait_longest.set(waits.longest_ms / 1e3);
        series.lock_wait_timeouts.absolute(waits.timeouts);
        let batches = writer.stats();
        series.batches_retried.absolute(batches.retried);
        series.largest_batch.set(batches.largest as f64);
        series.write_queue.set(batches.waiting as f64);
        let bytes = std::fs::metadata(&wal).map_or(0, |meta| meta.len());
        series.wal_bytes.set(bytes as f64);
    });
}

/// The WAL's growth as the write connection's commits see it: wakes the checkpoint task each
/// time the WAL passes another multiple of [`CHECKPOINT_STEP_PAGES`].
#[derive(Debug, Default)]
struct WalGrowth {
    /// The WAL's length in pages after this process's last commit.
    pages: AtomicU32,
    grown: Notify,
}

impl WalGrowth {
    /// After a commit, on the committing thread: a cheap compare, and a wake-up once per step.
    fn committed(&self, pages: u32) {
        let before = self.pages.swap(pages, Relaxed);
        if pages / CHECKPOINT_STEP_PAGES > before / CHECKPOINT_STEP_PAGES {
            // Stores a permit if the task is busy checkpointing: it goes round once more.
            self.grown.notify_one();
        }
    }
}

/// Copies the WAL into the database file, off the request path, each time the WAL has grown by
/// a step and at least every `interval`.
async fn checkpoint_continually(
    reader: SqlitePool,
    metrics: StorageMetrics,
    growth: Arc<WalGrowth>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = growth.grown.notified() => ticks.reset(),
            _ = ticks.tick() => {}
        }
        let started = Instant::now();
        let result = checkpoint(&reader).await;
        let took = started.elapsed();
        metrics.checkpoint_duration.record(took.as_secs_f64());
        match result {
            Ok(wal_pages) => {
                tracing::debug!(wal_pages, ?took, "checkpoint");
                // -1: the other process was checkpointing; its own series has the length.
                if wal_pages >= 0 {
                    metrics.wal_frames.set(wal_pages as f64);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "checkpoint failed");
                metrics.checkpoint_failures.increment(1);
            }
        }
    }
}

/// Copies the WAL into the database file, and keeps the WAL from growing without bound; returns
/// the pages in the WAL after the passive pass (-1 when another process was checkpointing).
///
/// A `PASSIVE` checkpoint copies what it can without taking any lock, so writers never wait for
/// it. The WAL starts over by itself when a write begins after a checkpoint copied all of it:
/// at light load, right after the next step. Under sustained writes from two processes there is
/// always a write in flight, so when the WAL is past [`WAL_RESTART_PAGES`] a `RESTART`
/// checkpoint holds writers back (through the busy handler) just long enough to copy what was
/// written since the passive pass (about a step) and make the next write start the WAL over.
async fn checkpoint(reader: &SqlitePool) -> Result<i64, sqlx::Error> {
    let (_, wal_pages, _): (i64, i64, i64) = sqlx::query_as(sql::CHECKPOINT_PASSIVE)
        .fetch_one(reader)
        .await?;
    if wal_pages > WAL_RESTART_PAGES {
        sqlx::query(sql::CHECKPOINT_RESTART).execute(reader).await?;
    }
    Ok(wal_pages)
}

#[cfg(test)]
mod tests {
    use futures::future::join_all;
    use sqlx::Row as _;

    use super::*;
    use crate::domain::{Applied, ClientId, Kind};

    /// A fresh SQLite ledger in `dir`.
    async fn open_in(dir: &tempfile::TempDir) -> Sqlite {
        let settings = DatabaseSettings {
            url: format!("sqlite://{}", dir.path().join("ledger.db").display()),
            ..DatabaseSettings::default()
        };
        Sqlite::connect(&settings, StorageMetrics::default())
            .await
            .expect("open the database")
    }

    fn transaction(valor: i64, kind: Kind, description: &str) -> NewTransaction {
        let body =
            serde_json::json!({"valor": valor, "tipo": kind.code(), "descricao": description});
        NewTransaction::from_json(body.to_string().as_bytes()).expect("valid")
    }

    /// The WAL is copied into the database file as it grows by steps, without waiting for the
    /// interval (an hour here): the database file grows while the writes go on.
    #[tokio::test]
    async fn the_wal_is_checkpointed_in_steps_as_it_grows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("ledger.db");
        let settings = DatabaseSettings {
            url: format!("sqlite://{}", file.display()),
            checkpoint_interval: Duration::from_secs(3600),
            ..DatabaseSettings::default()
        };
        let ledger = Sqlite::connect(&settings, StorageMetrics::default())
            .await
            .expect("open the database");
        let client = ledger.clients().await.expect("clients")[0];
        // Let the checkpoint at the interval's first tick (at once) pass, then note the size.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let size = || std::fs::metadata(&file).expect("database file").len();
        let before = size();
        // Each commit adds a few pages to the WAL: this passes a step several times over.
        for _ in 0..1_500 {
            ledger
                .record(client, transaction(1, Kind::Credit, "step"))
                .await
                .expect("recorded");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while size() <= before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            size() > before,
            "no checkpoint copied the WAL: {before} bytes"
        );
        ledger.close().await;
    }

    /// `.cargo/config.toml`'s LIBSQLITE3_FLAGS reached the bundled SQLite's build.
    #[tokio::test]
    async fn the_bundled_sqlite_is_built_without_global_memory_mutexes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_in(&dir).await;
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&db.reader)
            .await
            .expect("compile options");
        assert!(
            options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options
                .iter()
                .any(|option| option == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        db.close().await;
    }

    /// A reader runs with its role's settings from `pragmas` (the writer's are the same list).
    #[tokio::test]
    async fn a_reader_runs_with_the_settings_of_its_role() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_in(&dir).await;
        for (pragma, expected) in [
            ("page_size", "1024"),
            ("journal_mode", "wal"),
            ("foreign_keys", "1"),
            ("synchronous", "1"),
            ("temp_store", "2"),
            ("cache_size", "-16384"),
            ("mmap_size", "67108864"),
            ("journal_size_limit", "67108864"),
            ("wal_autocheckpoint", "0"),
        ] {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
                .fetch_one(&db.reader)
                .await
                .expect("a pragma");
            let value = row
                .try_get::<i64, _>(0)
                .map(|number| number.to_string())
                .or_else(|_| row.try_get::<String, _>(0))
                .expect("a number or a text");
            assert_eq!(value, expected, "{pragma}");
        }
        db.close().await;
    }

    /// The write connection, ready to commit, runs at the `synchronous` level its durability
    /// names: SQLite applies `PRAGMA synchronous` when it compiles the statement, so nothing the
    /// writer prepares at open may set it.
    #[test]
    fn the_write_connection_syncs_as_its_durability_says() {
        for (durability, level) in [(Durability::Power, 2), (Durability::Process, 1)] {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("ledger.db");
            let settings = DatabaseSettings {
                url: format!("sqlite://{}", path.display()),
                durability,
                ..DatabaseSettings::default()
            };
            let mut session = open_writer(&path, &settings, None).expect("open the writer");
            let read = session
                .connection
                .prepare("PRAGMA synchronous")
                .expect("prepare");
            let synchronous = session
                .connection
                .query(read)
                .and_then(|mut query| query.first_row(|row| row.i64(0)))
                .expect("read the level");
            assert_eq!(synchronous, Some(Some(level)), "{durability:?}");
        }
    }

    /// The write connection walks a client's list; a reader runs `sql::STATEMENT`. On the same
    /// real file they must list the same transactions, refusals left out, at most ten, newest
    /// first, for a client with many, one with a few and one with none. And each read, even a
    /// failed one, leaves the write connection out of any transaction: the next write commits.
    #[tokio::test]
    async fn the_write_connection_and_a_reader_read_the_same_statement() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_in(&dir).await;
        let clients = db.clients().await.expect("clients");
        let client = |id| {
            *clients
                .iter()
                .find(|client| client.id == ClientId(id))
                .expect("a seeded client")
        };
        // Queued together, so committed in one batch.
        let mut writes = Vec::new();
        for n in 1..=14 {
            writes.push(db.record(client(1), transaction(n, Kind::Credit, &format!("c{n}"))));
            // Far past client 1's limit (100000): refused, so never listed.
            writes.push(db.record(client(1), transaction(10_000_000, Kind::Debit, "refused")));
        }
        writes.push(db.record(client(2), transaction(7, Kind::Debit, "one")));
        writes.push(db.record(client(2), transaction(3, Kind::Credit, "two")));
        let answers = join_all(writes).await;
        assert_eq!(
            answers
                .iter()
                .filter(|answer| matches!(answer, Ok(Recorded::Refused(_))))
                .count(),
            14
        );
        // And one in a batch of its own.
        db.record(client(1), transaction(99, Kind::Debit, "last"))
            .await
            .expect("recorded");

        for (id, listed) in [(1, 10), (2, 2), (3, 0)] {
            let on_writer = db
                .writer
                .statement(ClientId(id), STATEMENT_LENGTH)
                .expect("the write connection reads it");
            let on_reader = db.statement_on_reader(client(id)).await.expect("read");
            assert_eq!(on_writer.last_transactions.len(), listed, "client {id}");
            assert_eq!(on_writer.last_transactions, on_reader.last_transactions);
            assert_eq!(on_writer.balance.total, on_reader.balance.total);
            assert_eq!(on_writer.balance.limit, on_reader.balance.limit);
            // Both clocks write the same format, so the texts order as the times do.
            for entry in &on_writer.last_transactions {
                assert!(on_writer.balance.read_at >= entry.committed_at);
            }
            chrono::DateTime::parse_from_rfc3339(&on_writer.balance.read_at).expect("RFC 3339");
        }
        // A client with no account row: the read fails inside its transaction, and falls back.
        assert!(
            db.writer
                .statement(ClientId(99), STATEMENT_LENGTH)
                .is_none()
        );
        // After every kind of read, a write still commits on the same connection.
        let after = db
            .record(client(3), transaction(5, Kind::Credit, "after"))
            .await
            .expect("a write after the reads");
        assert!(matches!(
            after,
            Recorded::Applied(Applied { balance: 5, .. })
        ));
        let statement = db.statement(client(3)).await.expect("statement");
        assert_eq!(statement.last_transactions.len(), 1);

        let newest = db.statement(client(1)).await.expect("statement");
        let descriptions: Vec<&str> = newest
            .last_transactions
            .iter()
            .map(|entry| entry.description.as_str())
            .collect();
        assert_eq!(
            descriptions,
            [
                "last", "c14", "c13", "c12", "c11", "c10", "c9", "c8", "c7", "c6"
            ]
        );
        assert_eq!(newest.balance.total, (1..=14).sum::<i64>() - 99);
        db.close().await;
    }

    #[tokio::test]
    async fn a_write_after_close_is_refused_as_stopping() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_in(&dir).await;
        let client = db.clients().await.expect("clients")[0];
        db.close().await;
        let err = db
            .record(client, transaction(1, Kind::Credit, "late"))
            .await
            .expect_err("refused");
        assert!(matches!(StorageError::from(err), StorageError::Stopping));
    }
}
