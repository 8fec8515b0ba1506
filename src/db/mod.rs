//! Storage: every SQL statement of the service lives in this module, one function each.
//!
//! Two pools share one SQLite file in WAL mode. The *writer* pool has one connection (by default), so
//! writes from this process queue in memory instead of fighting over SQLite's lock; the only
//! lock contention left is with the other process, handled by [`busy`]. The *reader* pool serves
//! statements, which in WAL mode never wait for writers.
//!
//! A transaction is recorded by one `INSERT ... SELECT ... RETURNING` statement: the limit check,
//! the new row and (through a trigger in `script.sql`) the balance update all happen inside it,
//! in autocommit mode. SQLite takes the write lock when that statement starts and releases it when
//! it ends, so the lock is held for microseconds with no round trip to async code in between, and
//! there is no read-then-write race to get wrong.
//!
//! sqlx runs each connection on its own thread, so no SQLite call blocks an Actix worker, and
//! caches each connection's prepared statements, so each statement is prepared once.

pub mod busy;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{BusyHandler, Config};
use crate::domain::{
    Applied, Client, ClientId, Kind, MAX_BALANCE, NewTransaction, Refused, STATEMENT_LENGTH,
    Statement, StatementBalance, StatementEntry,
};

/// The schema and the five clients; applied by every instance at start.
const SCHEMA: &str = include_str!("../../script.sql");

/// Handle to the ledger's storage; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Clients and their limits, read once at start: no route creates or changes a client, so
    /// an unknown id is answered without touching SQLite and the limit needs no query.
    clients: Arc<HashMap<ClientId, Client>>,
}

/// How long the WAL may grow (in 4 KiB pages) before a checkpoint makes it start over.
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

/// A storage failure, in terms the API can act on whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database stayed locked, or every connection stayed busy, for longer than allowed.
    #[error("the database is busy: {0}")]
    Busy(#[source] sqlx::Error),
    #[error(transparent)]
    Other(sqlx::Error),
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        let sqlite_busy = err
            .as_database_error()
            .and_then(|db| db.code())
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == libsqlite3_sys::SQLITE_BUSY);
        if sqlite_busy || matches!(err, sqlx::Error::PoolTimedOut) {
            Self::Busy(err)
        } else {
            Self::Other(err)
        }
    }
}

/// Checks that `url` names a SQLite file this service can share between processes.
pub fn check_url(url: &str) -> Result<(), String> {
    if !url.starts_with("sqlite:") {
        return Err("only SQLite is supported (sqlite://path/to/file.db)".to_owned());
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

impl Database {
    /// Opens the pools, applies `script.sql` and loads the clients.
    pub async fn connect(config: &Config) -> Result<Self, StorageError> {
        let (busy_timeout, busy_handler) = (config.busy_timeout, config.busy_handler);
        let mut options = SqliteConnectOptions::from_str(&config.database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // With `BusyHandler::Backoff`, used only until `busy::install` replaces it, i.e. by
            // the pragmas run at connect.
            .busy_timeout(busy_timeout)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16384")
            .pragma("mmap_size", "67108864")
            .pragma("journal_size_limit", "67108864");
        if !config.checkpoint_interval.is_zero() {
            // Checkpoints run in the background task instead of inside a committing write.
            options = options.pragma("wal_autocheckpoint", "0");
        }
        let pool = |connections: u32| {
            SqlitePoolOptions::new()
                .min_connections(connections)
                .max_connections(connections)
                // Each check would be one more round trip to the connection's thread per request.
                .test_before_acquire(false)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(busy_timeout + Duration::from_secs(5))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        match busy_handler {
                            BusyHandler::Backoff => busy::install(conn, busy_timeout).await,
                            BusyHandler::Sqlite => Ok(()),
                        }
                    })
                })
                .connect_with(options.clone())
        };
        // Opening can meet SQLITE_BUSY without the busy handler ever being asked: two processes
        // switching a new file to WAL at once each hold a shared lock and want an exclusive one,
        // and SQLite refuses one of them at once rather than deadlock. So the whole open is
        // retried, for as long as a write may wait.
        let deadline = Instant::now() + busy_timeout;
        let writer = retry_while_busy(deadline, || async {
            let writer = pool(config.write_connections).await?;
            apply_schema(&writer).await?;
            Ok(writer)
        })
        .await?;
        let reader = retry_while_busy(deadline, || async {
            Ok(pool(config.read_connections).await?)
        })
        .await?;
        let clients = load_clients(&reader).await?;
        Ok(Self {
            writer,
            reader,
            clients: Arc::new(clients),
        })
    }

    /// The client with this id, if there is one.
    pub fn client(&self, id: ClientId) -> Option<Client> {
        self.clients.get(&id).copied()
    }

    /// Applies `transaction` to `client` if the balance allows it, in one statement.
    pub async fn record(
        &self,
        client: Client,
        transaction: &NewTransaction,
    ) -> Result<Recorded, StorageError> {
        let balance: Option<i64> = sqlx::query_scalar(
            "INSERT INTO transacoes (cliente_id, valor, tipo, descricao, saldo_apos, realizada_em)
             SELECT id, ?2, ?3, ?4, saldo + ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             FROM clientes
             WHERE id = ?1 AND saldo + ?5 BETWEEN -limite AND ?6
             RETURNING saldo_apos",
        )
        .bind(client.id.0)
        .bind(transaction.amount)
        .bind(transaction.kind.code())
        .bind(transaction.description.as_str())
        .bind(transaction.signed_amount())
        .bind(MAX_BALANCE)
        .fetch_optional(&self.writer)
        .await?;
        Ok(match (balance, transaction.kind) {
            (Some(saldo), _) => Recorded::Applied(Applied {
                limite: client.limit,
                saldo,
            }),
            (None, Kind::Debit) => Recorded::Refused(Refused::InsufficientLimit),
            (None, Kind::Credit) => Recorded::Refused(Refused::BalanceCeiling),
        })
    }

    /// The client's statement: balance, limit and latest transactions, from one snapshot.
    pub async fn statement(&self, client: Client) -> Result<Statement, StorageError> {
        type Row = (
            String,
            i64,
            i64,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        // One statement, so the balance and the list come from the same snapshot even while the
        // other process writes, and `data_extrato` comes from the clock that stamps
        // `realizada_em`, so it is never earlier than a listed transaction.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), c.saldo, c.limite,
                    t.valor, t.tipo, t.descricao, t.realizada_em
             FROM clientes AS c
             LEFT JOIN (
                 SELECT id, cliente_id, valor, tipo, descricao, realizada_em
                 FROM transacoes
                 WHERE cliente_id = ?1
                 ORDER BY id DESC
                 LIMIT ?2
             ) AS t ON t.cliente_id = c.id
             WHERE c.id = ?1
             ORDER BY t.id DESC",
        )
        .bind(client.id.0)
        .bind(STATEMENT_LENGTH)
        .fetch_all(&self.reader)
        .await?;
        let Some((data_extrato, total, limite)) = rows
            .first()
            .map(|(now, total, limite, ..)| (now.clone(), *total, *limite))
        else {
            return Err(StorageError::Other(sqlx::Error::RowNotFound));
        };
        let ultimas_transacoes = rows
            .into_iter()
            .filter_map(|(_, _, _, valor, tipo, descricao, realizada_em)| {
                Some(StatementEntry {
                    valor: valor?,
                    tipo: Kind::from_code(tipo.as_deref()?)?,
                    descricao: descricao?,
                    realizada_em: realizada_em?,
                })
            })
            .collect();
        Ok(Statement {
            saldo: StatementBalance {
                total,
                data_extrato,
                limite,
            },
            ultimas_transacoes,
        })
    }

    /// Deletes every transaction and sets every balance back to 0, atomically.
    pub async fn reset(&self) -> Result<(), StorageError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM transacoes")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE clientes SET saldo = 0")
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    /// Succeeds when a statement can be read.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
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
        let (_, wal_pages, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.reader)
            .await?;
        let restarted = wal_pages > WAL_RESTART_PAGES;
        if restarted {
            sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(&self.reader)
                .await?;
        }
        Ok(Checkpoint {
            wal_pages,
            restarted,
        })
    }

    /// Closes both pools, waiting for statements in flight.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
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

/// Runs `script.sql` inside `BEGIN IMMEDIATE`, so instances starting together take turns.
async fn apply_schema(writer: &SqlitePool) -> Result<(), StorageError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    Ok(tx.commit().await?)
}

async fn load_clients(reader: &SqlitePool) -> Result<HashMap<ClientId, Client>, StorageError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, limite FROM clientes")
        .fetch_all(reader)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, limit)| {
            let id = ClientId(id);
            (id, Client { id, limit })
        })
        .collect())
}
