//! Storage: every database call of the service goes through this module, and every SQL text
//! lives in [`sql`] (SQLite) or [`postgres`] (PostgreSQL).
//!
//! [`Database`] is the one interface handlers use, whatever the backend `DATABASE_URL` names:
//! SQLite (default; one file shared by the instances of one host) or PostgreSQL (any number of
//! instances on any number of hosts; see [`postgres`]). Both give the same answers and the same
//! [`StorageError`]; each keeps its own schema file (`script.sql`, `script.postgres.sql`).
//!
//! SQLite: all writes of a process go through one *writer* ([`writer`]): one connection, and
//! whatever is waiting committed in one transaction (group commit), on the Actix worker that
//! read the requests. It holds the write lock from `BEGIN IMMEDIATE` to `COMMIT`, so it can read
//! an account, check the limit and write it back with no other process in between: there is no
//! read-then-write race to get wrong. Across processes sharing the file, writers take turns on
//! SQLite's lock (or, with `DB_WRITE_LOCK=flock`, on a `flock` too), pausing between attempts
//! ([`busy::Wait`]). Statements are read on the same connection between commits; in WAL mode a
//! read never waits for a writer.
//!
//! The writer runs its statements on its connection's raw handle ([`raw`]), because sqlx's
//! hand-off to the connection's thread for each statement was most of the cost of a write. The
//! *reader* pool (sqlx) keeps what is off the request path or rare: checkpoints, health checks,
//! and statements when the write connection answers busy.

pub mod busy;
pub mod postgres;
mod raw;
pub mod sql;
pub mod writer;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqliteConnection};

use crate::config::{BusyHandler, Config, WriteLockKind, WriteSync};
use crate::domain::{
    Applied, Client, ClientId, Kind, NewTransaction, Refused, STATEMENT_LENGTH, Statement,
    StatementBalance, StatementEntry,
};
use raw::SqliteFailure;
use writer::{BatchStats, Outcome, Work, WriteLock, Writer, WriterSettings};

/// Handle to the ledger's storage, whichever backend; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database(Backend);

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(Sqlite),
    Postgres(postgres::Postgres),
}

impl Database {
    /// Opens the backend `config.database_url` names, applying its schema. `metrics` receives
    /// the SQLite writer's batch sizes (PostgreSQL has no batches).
    pub async fn connect(config: &Config, metrics: StorageMetrics) -> Result<Self, StorageError> {
        Ok(Self(if postgres::is_url(&config.database_url) {
            Backend::Postgres(postgres::Postgres::connect(config).await?)
        } else {
            Backend::Sqlite(Sqlite::connect(config, metrics).await?)
        }))
    }

    /// The SQLite WAL file (`<database>-wal`), for its size; `None` on PostgreSQL.
    pub fn wal_path(&self) -> Option<&Path> {
        match &self.0 {
            Backend::Sqlite(db) => Some(db.wal_path()),
            Backend::Postgres(_) => None,
        }
    }

    /// The client with this id, if there is one.
    pub fn client(&self, id: ClientId) -> Option<Client> {
        match &self.0 {
            Backend::Sqlite(db) => db.client(id),
            Backend::Postgres(db) => db.client(id),
        }
    }

    /// Applies `transaction` to `client` if the balance allows it; answers once it is committed.
    pub async fn record(
        &self,
        client: Client,
        transaction: NewTransaction,
    ) -> Result<Recorded, StorageError> {
        match &self.0 {
            Backend::Sqlite(db) => db.record(client, transaction).await,
            Backend::Postgres(db) => {
                let outcome = db.record(client.id, &transaction).await?;
                recorded(client, transaction.kind, outcome)
            }
        }
    }

    /// Applies each transaction in order, each only if the balance allows it at its turn. On
    /// SQLite they are committed together (with whatever else is waiting); on PostgreSQL each
    /// is its own transaction.
    pub async fn record_all(
        &self,
        transactions: Vec<(Client, NewTransaction)>,
    ) -> Vec<Result<Recorded, StorageError>> {
        match &self.0 {
            Backend::Sqlite(db) => db.record_all(transactions).await,
            Backend::Postgres(_) => {
                let mut results = Vec::with_capacity(transactions.len());
                for (client, transaction) in transactions {
                    results.push(self.record(client, transaction).await);
                }
                results
            }
        }
    }

    /// The client's statement: balance, limit and latest transactions, from one snapshot.
    pub async fn statement(&self, client: Client) -> Result<Statement, StorageError> {
        match &self.0 {
            Backend::Sqlite(db) => db.statement(client).await,
            Backend::Postgres(db) => db.statement(client).await,
        }
    }

    /// Deletes every transaction and sets every balance back to 0, atomically.
    pub async fn reset(&self) -> Result<(), StorageError> {
        match &self.0 {
            Backend::Sqlite(db) => db.reset().await,
            Backend::Postgres(db) => db.reset().await,
        }
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<(), StorageError> {
        match &self.0 {
            Backend::Sqlite(db) => db.ping().await,
            Backend::Postgres(db) => db.ping().await,
        }
    }

    /// How this process's writes were grouped so far.
    pub fn batch_stats(&self) -> BatchStats {
        match &self.0 {
            Backend::Sqlite(db) => db.batch_stats(),
            Backend::Postgres(db) => db.batch_stats(),
        }
    }

    /// Whether the backend wants [`Database::checkpoint`] called periodically (SQLite's WAL).
    pub fn needs_checkpoints(&self) -> bool {
        matches!(self.0, Backend::Sqlite(_))
    }

    /// See [`Sqlite::checkpoint`]; PostgreSQL checkpoints by itself, so nothing is done there.
    pub async fn checkpoint(&self) -> Result<Checkpoint, StorageError> {
        match &self.0 {
            Backend::Sqlite(db) => db.checkpoint().await,
            Backend::Postgres(_) => Ok(Checkpoint {
                wal_pages: 0,
                restarted: false,
            }),
        }
    }

    /// Finishes the queued writes and closes every connection.
    pub async fn close(&self) {
        match &self.0 {
            Backend::Sqlite(db) => db.close().await,
            Backend::Postgres(db) => db.close().await,
        }
    }
}

/// The SQLite backend: one shared file, a writer and a reader pool.
#[derive(Debug, Clone)]
pub struct Sqlite {
    writer: Writer,
    reader: SqlitePool,
    /// Clients and their limits, read once at start: no route creates or changes a client, so
    /// an unknown id is answered without touching SQLite and the limit needs no query.
    clients: Arc<HashMap<ClientId, Client>>,
    /// The WAL file beside the database, whose size `GET /metrics` reports.
    wal_path: Arc<PathBuf>,
}

/// Where storage records what only it sees (for `GET /metrics`); `Default` records nothing.
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    /// Receives the number of jobs in each batch the writer commits.
    pub batch_sizes: metrics::Histogram,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self {
            batch_sizes: metrics::Histogram::noop(),
        }
    }
}

/// How long the WAL may grow (in pages, 1 KiB each) before a checkpoint makes it start over.
const WAL_RESTART_PAGES: i64 = 4096;

/// What a checkpoint found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Pages in the WAL when the passive pass ended.
    pub wal_pages: i64,
    /// Whether the WAL was long enough to be restarted.
    pub restarted: bool,
}

/// The result of trying to record a valid transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Applied(Applied),
    Refused(Refused),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A storage failure, in terms the API can act on whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database stayed locked, or every connection stayed busy, for longer than allowed; or
    /// the writer has stopped because the server is stopping. Worth retrying.
    #[error("the database is busy: {0}")]
    Busy(#[source] BoxError),
    #[error(transparent)]
    Other(BoxError),
}

impl StorageError {
    fn other(message: impl Into<String>) -> Self {
        Self::Other(message.into().into())
    }

    /// The writer is closed: the server is stopping.
    fn stopped() -> Self {
        Self::Busy("the writer has stopped; the server is shutting down".into())
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        let sqlite_busy = err
            .as_database_error()
            .and_then(|db| db.code())
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(raw::is_busy_code);
        if sqlite_busy || matches!(err, sqlx::Error::PoolTimedOut) {
            Self::Busy(err.into())
        } else {
            Self::Other(err.into())
        }
    }
}

impl From<SqliteFailure> for StorageError {
    fn from(failure: SqliteFailure) -> Self {
        if failure.is_busy() {
            Self::Busy(failure.into())
        } else {
            Self::Other(failure.into())
        }
    }
}

/// `url` with any password replaced by `***`, for logs.
pub fn redacted_url(url: &str) -> String {
    // scheme://user:password@host...: the password runs from the ':' after the user to the '@'.
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// Checks that `url` names a PostgreSQL database or a SQLite file this service can share between
/// processes.
pub fn check_url(url: &str) -> Result<(), String> {
    if postgres::is_url(url) {
        return postgres::check_url(url);
    }
    if !url.starts_with("sqlite:") {
        return Err(
            "expected sqlite://path/to/file.db or postgres://user:password@host/database"
                .to_owned(),
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
    /// Opens the write connection (applying `script.sql`) and the reader pool, starts the writer
    /// thread and loads the clients.
    pub async fn connect(config: &Config, metrics: StorageMetrics) -> Result<Self, StorageError> {
        let (busy_timeout, busy_handler) = (config.busy_timeout, config.busy_handler);
        let mut options = SqliteConnectOptions::from_str(&config.database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // With `BusyHandler::Backoff`, used only until `busy::install` replaces it, i.e. by
            // the pragmas run at connect.
            .busy_timeout(busy_timeout)
            // Pages of 1 KiB instead of 4: a commit appends every page it changed to the WAL,
            // and a checkpoint copies them back, so smaller pages mean less to write, read and
            // copy; measured, the stack's p99 at saturation fell from 32-38 ms to 21-24 ms for
            // the same throughput. It applies when the file is created; an existing file keeps
            // its page size.
            .page_size(1024)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16384")
            .pragma("mmap_size", "67108864")
            .pragma("journal_size_limit", "67108864");
        if !config.checkpoint_interval.is_zero() {
            // Checkpoints run in the background task instead of inside a committing write.
            options = options.pragma("wal_autocheckpoint", "0");
        }
        // Opening can meet SQLITE_BUSY without the busy handler ever being asked: two processes
        // switching a new file to WAL at once each hold a shared lock and want an exclusive one,
        // and SQLite refuses one of them at once rather than deadlock. So the whole open is
        // retried, for as long as a write may wait.
        let deadline = Instant::now() + busy_timeout;
        // The write connection skips the fsync SQLite makes of the WAL header each time the WAL
        // starts over (inside whichever write comes first after a complete checkpoint: 4-5 ms
        // here). Commits are not synced at NORMAL either; checkpoints run on the readers, at
        // NORMAL, so the database file is synced before the WAL is reused.
        // Without the background task (interval 0), SQLite's auto-checkpoint runs on this
        // connection, so it keeps NORMAL and its checkpoints stay synced.
        let write_sync = match config.write_sync {
            WriteSync::Off if !config.checkpoint_interval.is_zero() => SqliteSynchronous::Off,
            _ => SqliteSynchronous::Normal,
        };
        // No memory map on the write connection: with one, SQLite looks each page up in the WAL's
        // hash table before it looks in its own cache, and a WAL that holds thousands of copies
        // of the same few pages makes that lookup a long scan. Measured with callgrind, two
        // processes taking turns: 96,000 instructions per transaction in the writer with the
        // map, 50,000 without (BENCHMARKS.md).
        // And a small page cache (256 pages): each time the other process has committed, which at
        // load is before nearly every batch, SQLite empties this connection's whole cache, and
        // with the readers' 16 MiB that emptying (`pcache1TruncateUnsafe`) was 7.8% of the
        // instance's own code in a `perf` profile at saturation; 1.6% with 256 pages, which
        // hold every page a batch or a statement touches.
        let write_options = options
            .clone()
            .synchronous(write_sync)
            .pragma("mmap_size", "0")
            .pragma("cache_size", "256");
        let write_connection = retry_while_busy(deadline, || async {
            let mut connection = write_options.connect().await?;
            install_busy_handler(&mut connection, busy_handler, busy_timeout).await?;
            apply_schema(&mut connection).await?;
            Ok(connection)
        })
        .await?;
        let reader = retry_while_busy(deadline, || async {
            Ok(SqlitePoolOptions::new()
                .min_connections(config.read_connections)
                .max_connections(config.read_connections)
                // Each check would be one more round trip to the connection's thread per request.
                .test_before_acquire(false)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(busy_timeout + Duration::from_secs(5))
                .after_connect(move |conn, _| {
                    Box::pin(install_busy_handler(conn, busy_handler, busy_timeout))
                })
                .connect_with(options.clone())
                .await?)
        })
        .await?;
        let lock = match config.write_lock {
            WriteLockKind::Sqlite => WriteLock::SqliteOnly,
            WriteLockKind::Flock => {
                let path = format!("{}-writer.lock", options.get_filename().display());
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|err| StorageError::other(format!("cannot open {path}: {err}")))?;
                WriteLock::Flock(file)
            }
        };
        let writer = Writer::start(
            write_connection,
            WriterSettings {
                batch_max: config.write_batch_max,
                lock,
                busy_timeout,
                batch_sizes: metrics.batch_sizes,
            },
        )
        .await?;
        let clients = load_clients(&reader).await?;
        let mut wal_path = options.get_filename().as_os_str().to_owned();
        wal_path.push("-wal");
        Ok(Self {
            writer,
            reader,
            clients: Arc::new(clients),
            wal_path: Arc::new(wal_path.into()),
        })
    }

    /// The client with this id, if there is one.
    pub fn client(&self, id: ClientId) -> Option<Client> {
        self.clients.get(&id).copied()
    }

    /// Applies `transaction` to `client` if the balance allows it; answers once it is committed.
    pub async fn record(
        &self,
        client: Client,
        transaction: NewTransaction,
    ) -> Result<Recorded, StorageError> {
        let kind = transaction.kind;
        let work = Work::Record {
            client: client.id,
            transaction,
        };
        recorded(client, kind, self.writer.submit(work).await?)
    }

    /// Applies each transaction in order, all in one database transaction (with whatever else is
    /// waiting), each only if the balance allows it at its turn; answers once they are committed.
    pub async fn record_all(
        &self,
        transactions: Vec<(Client, NewTransaction)>,
    ) -> Vec<Result<Recorded, StorageError>> {
        let heads: Vec<(Client, Kind)> = transactions
            .iter()
            .map(|(client, transaction)| (*client, transaction.kind))
            .collect();
        let works = transactions
            .into_iter()
            .map(|(client, transaction)| Work::Record {
                client: client.id,
                transaction,
            })
            .collect();
        let outcomes = self.writer.submit_all(works).await;
        heads
            .into_iter()
            .zip(outcomes)
            .map(|((client, kind), outcome)| recorded(client, kind, outcome?))
            .collect()
    }

    /// The client's statement: balance, limit and latest transactions, from one snapshot.
    pub async fn statement(&self, client: Client) -> Result<Statement, StorageError> {
        if let Some(statement) = self.writer.statement(client.id, STATEMENT_LENGTH) {
            return Ok(statement);
        }
        self.statement_on_reader(client).await
    }

    /// The client's statement read through the reader pool (`sql::STATEMENT`): what
    /// [`Self::statement`] falls back to when the write connection cannot read it.
    async fn statement_on_reader(&self, client: Client) -> Result<Statement, StorageError> {
        let rows: Vec<StatementRow<String>> = sqlx::query_as(sql::STATEMENT)
            .bind(client.id.0)
            .bind(STATEMENT_LENGTH)
            .fetch_all(&self.reader)
            .await?;
        statement_from_rows(rows, |time| time)
    }

    /// Deletes every transaction and sets every balance back to 0, atomically.
    pub async fn reset(&self) -> Result<(), StorageError> {
        self.writer.submit(Work::Reset).await.map(drop)
    }

    /// Succeeds when a statement can be read.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query(sql::PING).execute(&self.reader).await?;
        Ok(())
    }

    /// The WAL file (`<database>-wal`); absent while no connection has the database open.
    pub fn wal_path(&self) -> &Path {
        &self.wal_path
    }

    /// How the writer grouped this process's writes so far.
    pub fn batch_stats(&self) -> BatchStats {
        self.writer.stats()
    }

    /// Copies the WAL into the database file, and keeps the WAL from growing without bound.
    ///
    /// A `PASSIVE` checkpoint copies what it can without taking any lock. But the WAL only starts
    /// over when a writer finds it entirely copied, and under sustained writes from two processes
    /// there is always a newer frame: the WAL grew by about 60 MB a second at full load. So when
    /// the WAL is still longer than [`WAL_RESTART_PAGES`] after the passive pass, a `RESTART`
    /// checkpoint holds writers back (through the busy handler) just long enough to copy the rest
    /// and make the next write start the WAL over.
    pub async fn checkpoint(&self) -> Result<Checkpoint, StorageError> {
        let (_, wal_pages, _): (i64, i64, i64) = sqlx::query_as(sql::CHECKPOINT_PASSIVE)
            .fetch_one(&self.reader)
            .await?;
        let restarted = wal_pages > WAL_RESTART_PAGES;
        if restarted {
            sqlx::query(sql::CHECKPOINT_RESTART)
                .execute(&self.reader)
                .await?;
        }
        Ok(Checkpoint {
            wal_pages,
            restarted,
        })
    }

    /// Finishes the queued writes and closes the writer and the readers.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// One row of a statement query, either backend: the read time, the balance and limit, then one
/// transaction (all NULL when the client has none). `T` is how the backend returns a time.
type StatementRow<T> = (
    T,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<T>,
);

/// Builds a statement from its rows (newest transaction first), writing each time with `text`.
fn statement_from_rows<T: Clone>(
    rows: Vec<StatementRow<T>>,
    text: impl Fn(T) -> String,
) -> Result<Statement, StorageError> {
    let Some((now, total, limite)) = rows
        .first()
        .map(|(now, total, limite, ..)| (now.clone(), *total, *limite))
    else {
        return Err(StorageError::other("the client's row is missing"));
    };
    let ultimas_transacoes = rows
        .into_iter()
        .filter_map(|(_, _, _, valor, tipo, descricao, realizada_em)| {
            Some(StatementEntry {
                valor: valor?,
                tipo: Kind::from_code(tipo.as_deref()?)?,
                descricao: descricao?,
                realizada_em: text(realizada_em?),
            })
        })
        .collect();
    Ok(Statement {
        saldo: StatementBalance {
            total,
            data_extrato: text(now),
            limite,
        },
        ultimas_transacoes,
    })
}

/// What the writer's outcome for a transaction means for the API.
fn recorded(client: Client, kind: Kind, outcome: Outcome) -> Result<Recorded, StorageError> {
    match (outcome, kind) {
        (Outcome::Applied { balance }, _) => Ok(Recorded::Applied(Applied {
            limite: client.limit,
            saldo: balance,
        })),
        (Outcome::Refused, Kind::Debit) => Ok(Recorded::Refused(Refused::InsufficientLimit)),
        (Outcome::Refused, Kind::Credit) => Ok(Recorded::Refused(Refused::BalanceCeiling)),
        (Outcome::Reset, _) => Err(StorageError::other("a reset answered a transaction")),
    }
}

/// Runs `attempt` until it succeeds, fails with something other than [`StorageError::Busy`], or
/// `deadline` passes.
async fn retry_while_busy<T, F, Fut>(deadline: Instant, attempt: F) -> Result<T, StorageError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    loop {
        match attempt().await {
            Err(StorageError::Busy(err)) if Instant::now() < deadline => {
                tracing::debug!(error = %err, "database busy while opening; retrying");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            result => return result,
        }
    }
}

/// Gives the connection the chosen busy handler (see [`busy`]).
async fn install_busy_handler(
    connection: &mut SqliteConnection,
    handler: BusyHandler,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    match handler {
        BusyHandler::Backoff => busy::install(connection, timeout).await,
        BusyHandler::Sqlite => Ok(()),
    }
}

/// Runs `script.sql` inside `BEGIN IMMEDIATE`, so instances starting together take turns; a file
/// of the first schema is converted first, in the same transaction.
async fn apply_schema(connection: &mut SqliteConnection) -> Result<(), StorageError> {
    use sqlx::Connection as _;
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    let (indexed,): (bool,) = sqlx::query_as(sql::HAS_INDEXED_SCHEMA)
        .fetch_one(&mut *tx)
        .await?;
    if indexed {
        tracing::info!("converting the database to per-client transaction lists");
        sqlx::raw_sql(sql::TO_CLIENT_LISTS)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::raw_sql(sql::SCHEMA).execute(&mut *tx).await?;
    Ok(tx.commit().await?)
}

async fn load_clients(reader: &SqlitePool) -> Result<HashMap<ClientId, Client>, StorageError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(sql::CLIENTS).fetch_all(reader).await?;
    Ok(rows
        .into_iter()
        .map(|(id, limit)| {
            let id = ClientId(id);
            (id, Client { id, limit })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// A fresh SQLite ledger in `dir`.
    async fn open_in(dir: &tempfile::TempDir) -> Sqlite {
        let config = Config {
            database_url: format!("sqlite://{}", dir.path().join("ledger.db").display()),
            ..Config::default()
        };
        Sqlite::connect(&config, Metrics::new(&[]).storage())
            .await
            .expect("open the database")
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

    /// The write connection walks a client's list; a reader runs `sql::STATEMENT`. On the same
    /// real file they must list the same transactions, refusals left out, at most ten, newest
    /// first, for a client with many, one with a few and one with none. And each read, even a
    /// failed one, leaves the write connection out of any transaction: the next write commits.
    #[tokio::test]
    async fn the_write_connection_and_a_reader_read_the_same_statement() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_in(&dir).await;
        let client = |id| db.client(ClientId(id)).expect("a seeded client");
        let transaction = |amount, kind, description: &str| NewTransaction {
            amount,
            kind,
            description: description.to_owned(),
        };
        let mut batch = Vec::new();
        for n in 1..=14 {
            batch.push((client(1), transaction(n, Kind::Credit, &format!("c{n}"))));
            // Far past client 1's limit (100000): refused, so never listed.
            batch.push((client(1), transaction(10_000_000, Kind::Debit, "refused")));
        }
        batch.push((client(2), transaction(7, Kind::Debit, "one")));
        batch.push((client(2), transaction(3, Kind::Credit, "two")));
        let answers = db.record_all(batch).await;
        assert_eq!(
            answers
                .iter()
                .filter(|answer| matches!(answer, Ok(Recorded::Refused(_))))
                .count(),
            14
        );
        // And some in batches of their own.
        db.record(client(1), transaction(99, Kind::Debit, "last"))
            .await
            .expect("recorded");

        for (id, listed) in [(1, 10), (2, 2), (3, 0)] {
            let on_writer = db
                .writer
                .statement(ClientId(id), STATEMENT_LENGTH)
                .expect("the write connection reads it");
            let on_reader = db.statement_on_reader(client(id)).await.expect("read");
            assert_eq!(on_writer.ultimas_transacoes.len(), listed, "client {id}");
            assert_eq!(on_writer.ultimas_transacoes, on_reader.ultimas_transacoes);
            assert_eq!(on_writer.saldo.total, on_reader.saldo.total);
            assert_eq!(on_writer.saldo.limite, on_reader.saldo.limite);
            // Both clocks write the same format, so the texts order as the times do.
            for entry in &on_writer.ultimas_transacoes {
                assert!(on_writer.saldo.data_extrato >= entry.realizada_em);
            }
            chrono::DateTime::parse_from_rfc3339(&on_writer.saldo.data_extrato).expect("RFC 3339");
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
        assert!(matches!(after, Recorded::Applied(Applied { saldo: 5, .. })));
        let statement = db.statement(client(3)).await.expect("statement");
        assert_eq!(statement.ultimas_transacoes.len(), 1);

        let newest = db.statement(client(1)).await.expect("statement");
        let descriptions: Vec<&str> = newest
            .ultimas_transacoes
            .iter()
            .map(|entry| entry.descricao.as_str())
            .collect();
        assert_eq!(
            descriptions,
            [
                "last", "c14", "c13", "c12", "c11", "c10", "c9", "c8", "c7", "c6"
            ]
        );
        assert_eq!(newest.saldo.total, (1..=14).sum::<i64>() - 99);
        db.close().await;
    }

    #[test]
    fn a_logged_url_never_shows_the_password() {
        let cases = [
            (
                "postgres://rinha:s3cret@db:5432/rinha",
                "postgres://rinha:***@db:5432/rinha",
            ),
            ("postgres://rinha@db/rinha", "postgres://rinha@db/rinha"),
            ("sqlite://rinha.db", "sqlite://rinha.db"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted_url(url), shown);
        }
    }
}
