//! The PostgreSQL backend, chosen by `DATABASE_URL=postgres://...`: the same ledger for any number
//! of instances on any number of hosts, where the SQLite backend needs one shared file.
//!
//! The decision that shaped it: every write is *one statement in its own transaction*, one round
//! trip on a pooled connection ([`RECORD`]): a conditional `UPDATE clientes ... RETURNING` joined
//! with the `INSERT` in a CTE. The row lock the `UPDATE` takes is what orders concurrent writes to
//! a client, across every instance; PostgreSQL re-checks the `WHERE` against the balance the
//! previous holder committed before applying it, so the limit check and the new balance are one
//! atomic step and there is no read-then-write race. A refused transaction matches no row, so it
//! writes nothing. There is no group commit here: PostgreSQL already commits concurrent
//! transactions together (its WAL flush covers every commit waiting for it), and batching in the
//! process would hold one client's row lock across other clients' work.
//!
//! The SQL sticks to what CockroachDB and YugabyteDB also run (see `script.postgres.sql` and the
//! docs): no sequences, triggers, advisory locks or `TRUNCATE`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::rows::{StatementRow, clients_from_rows, statement_from_rows};
use super::{DatabaseSettings, StorageError};
use crate::domain::{
    Applied, Client, MAX_BALANCE, NewTransaction, Recorded, STATEMENT_LENGTH, Statement,
};

/// The schema and the five clients; applied by every instance at start.
pub const SCHEMA: &str = include_str!("../../script.postgres.sql");

/// Records a transaction if the balance allows it, in one statement: the `UPDATE` moves the
/// balance and numbers the transaction only if the result stays within `[-limite, $3]`, and the
/// `INSERT` stores the row the `UPDATE` returned. No row back: refused, nothing written.
///
/// `clock_timestamp()` is read when the row is inserted, i.e. after the client's row was locked,
/// so timestamps follow the client's commit order (`now()` would be the statement's start,
/// possibly before a wait for the lock).
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

/// The reset, in one transaction. Balances first: that `UPDATE` waits for every write in flight
/// (each holds its client's row) and blocks new ones until the commit, so the `DELETE` after it,
/// which takes a new snapshot, sees every transaction committed before the reset.
pub const ZERO_BALANCES: &str = "UPDATE clientes SET saldo = 0, ultima = 0";
pub const DELETE_TRANSACTIONS: &str = "DELETE FROM transacoes";

/// Every client and its limit.
pub const CLIENTS: &str = "SELECT id, limite FROM clientes";

/// Whether the database answers.
pub const PING: &str = "SELECT 1";

/// How long an instance keeps trying to reach a server that refuses connections or is still
/// starting (Compose starts the API and PostgreSQL together, without health checks).
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

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

/// A failure of the PostgreSQL backend: sqlx's error, classified by [`StorageError::from`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PgError(#[from] sqlx::Error);

/// The PostgreSQL ledger: a connection pool.
#[derive(Debug, Clone)]
pub struct Postgres {
    pool: PgPool,
}

impl Postgres {
    /// Connects (waiting up to [`CONNECT_PATIENCE`] for a server that is still starting) and
    /// applies `script.postgres.sql`.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, PgError> {
        let options = PgConnectOptions::from_str(&settings.url)?
            // A write waiting longer than this for a client's row fails with 503, as a SQLite
            // write waiting for the file's lock does.
            .options([(
                "lock_timeout",
                settings.busy_timeout.as_millis().to_string().as_str(),
            )]);
        let deadline = Instant::now() + CONNECT_PATIENCE;
        let pool = loop {
            let attempt = PgPoolOptions::new()
                .min_connections(1)
                .max_connections(settings.pool_size)
                .acquire_timeout(settings.busy_timeout)
                // Each check would be one more round trip per request.
                .test_before_acquire(false)
                .connect_with(options.clone())
                .await;
            match attempt {
                Ok(pool) => break pool,
                Err(err) if is_not_up_yet(&err) && Instant::now() < deadline => {
                    tracing::debug!(error = %err, "PostgreSQL not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => return Err(err.into()),
            }
        };
        apply_schema(&pool, deadline).await?;
        Ok(Self { pool })
    }

    /// Every client and its limit.
    pub async fn clients(&self) -> Result<Vec<Client>, PgError> {
        let rows = sqlx::query_as(CLIENTS).fetch_all(&self.pool).await?;
        Ok(clients_from_rows(rows))
    }

    /// Applies `transaction` to `client` if the balance allows it, in one round trip; answers
    /// once it is committed.
    pub async fn record(
        &self,
        client: Client,
        transaction: &NewTransaction,
    ) -> Result<Recorded, PgError> {
        let balance: Option<i64> = sqlx::query_scalar(RECORD)
            .bind(client.id.0)
            .bind(transaction.signed_amount())
            .bind(MAX_BALANCE)
            .bind(transaction.amount())
            .bind(transaction.kind().code())
            .bind(transaction.description())
            // sqlx reads every message up to ReadyForQuery before returning the row, i.e. past
            // the implicit transaction's commit: a commit that fails is an error here, never a 200.
            .fetch_optional(&self.pool)
            .await?;
        Ok(match balance {
            Some(balance) => Recorded::Applied(Applied {
                limit: client.limit,
                balance,
            }),
            // The row matched no `WHERE`: the rules refused it, for the reason its kind gives.
            None => Recorded::Refused(transaction.refusal()),
        })
    }

    /// The client's statement, from one snapshot.
    pub async fn statement(&self, client: Client) -> Result<Statement, PgError> {
        let rows: Vec<StatementRow<DateTime<Utc>>> = sqlx::query_as(STATEMENT)
            .bind(client.id.0)
            .bind(i64::from(STATEMENT_LENGTH))
            .fetch_all(&self.pool)
            .await?;
        statement_from_rows(rows, rfc3339).ok_or_else(|| PgError(sqlx::Error::RowNotFound))
    }

    /// Deletes every transaction and sets every balance back to 0, atomically.
    pub async fn reset(&self) -> Result<(), PgError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(ZERO_BALANCES).execute(&mut *tx).await?;
        sqlx::query(DELETE_TRANSACTIONS).execute(&mut *tx).await?;
        Ok(tx.commit().await?)
    }

    /// Succeeds when the server answers a query.
    pub async fn ping(&self) -> Result<(), PgError> {
        sqlx::query(PING).execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool: a request from then on fails as stopping.
    pub async fn close(&self) {
        self.pool.close().await;
    }
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
async fn apply_schema(pool: &PgPool, deadline: Instant) -> Result<(), PgError> {
    let mut attempt = 0_u64;
    loop {
        let result = async {
            let mut tx = pool.begin().await?;
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

impl From<PgError> for StorageError {
    /// Waiting too long (for a row lock, a connection or a busy server) or a conflict worth
    /// retrying is [`StorageError::Busy`] (503); a closed pool, [`StorageError::Stopping`]; the
    /// rest [`StorageError::Other`] (500).
    fn from(PgError(err): PgError) -> Self {
        if matches!(err, sqlx::Error::PoolClosed) {
            return StorageError::Stopping;
        }
        let busy = matches!(err, sqlx::Error::PoolTimedOut)
            || sqlstate(&err).is_some_and(|code| {
                // serialization failure, deadlock, lock timeout, query canceled
                // (statement_timeout), too many connections, cannot connect now.
                matches!(
                    code.as_str(),
                    "40001" | "40P01" | "55P03" | "57014" | "53300" | "57P03"
                )
            });
        if busy {
            StorageError::Busy(err.into())
        } else {
            StorageError::Other(err.into())
        }
    }
}
