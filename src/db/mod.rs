//! Storage: every database call of the service goes through [`Database`], whichever backend
//! `DATABASE_URL` names, and every SQL text lives in a backend's module.
//!
//! - [`sqlite`] (the default): one file shared by the instances of one host, in WAL mode; writes
//!   grouped into one transaction per batch on a connection of each process's own.
//! - [`postgres`]: any number of instances on any number of hosts; a process's waiting writes
//!   applied by one statement (group commit).
//!
//! Both give the same answers and fail with the same [`StorageError`]; each keeps its own schema
//! file (`script.sql`, `script.postgres.sql`), its own background work and its own metrics.
//! Clients never change, so [`Database`] reads them once at start and answers an unknown id
//! without asking the backend.

pub mod postgres;
mod rows;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{Client, ClientId, NewTransaction, Recorded, Statement};
use crate::metrics::StorageMetrics;

/// How to reach and run the database; built by `config` from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: `sqlite://path` (relative to the working directory) or
    /// `sqlite:///absolute/path`, created if missing; or
    /// `postgres://user:password@host:port/database`, which must exist (the schema is created).
    pub url: String,
    /// `DB_BUSY_TIMEOUT_MS`: how long a write waits for another process's write lock (SQLite) or
    /// a client's row lock or a pooled connection (PostgreSQL) before it fails with 503.
    pub busy_timeout: Duration,
    /// `DB_CONNECTIONS`: PostgreSQL only, the connections of this instance's pool (a statement
    /// or a batch of writes holds one for one round trip).
    pub pool_size: u32,
    /// `DB_READ_CONNECTIONS`: SQLite only, sqlx connections for checkpoints, health checks, and
    /// statements when the write connection cannot read them (each has its own thread).
    pub read_connections: u32,
    /// `DB_WRITE_BATCH_MAX`: the most transactions committed together (group commit). It bounds
    /// how long one process holds SQLite's write lock, or one statement PostgreSQL's row locks,
    /// at once; 1 turns grouping off.
    pub write_batch_max: usize,
    /// `DB_DURABILITY`: what an answered write survives, a process crash or a power cut.
    pub durability: Durability,
    /// `DB_CHECKPOINT_INTERVAL_MS`: SQLite only, how often a background task copies the WAL into
    /// the database file, so that no request pays for a checkpoint. 0 leaves it to SQLite's own
    /// auto-checkpoint, which runs inside a committing write.
    pub checkpoint_interval: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://rinha.db".to_owned(),
            busy_timeout: Duration::from_secs(5),
            pool_size: 4,
            read_connections: 2,
            write_batch_max: 64,
            durability: Durability::Process,
            checkpoint_interval: Duration::from_millis(1000),
        }
    }
}

impl DatabaseSettings {
    /// Checks that the URL names a PostgreSQL database or a SQLite file this service can share
    /// between processes.
    pub fn check_url(&self) -> Result<(), String> {
        if postgres::is_url(&self.url) {
            postgres::check_url(&self.url)
        } else {
            sqlite::check_url(&self.url)
        }
    }

    /// The URL with any password replaced by `***`, for logs and messages.
    pub fn redacted_url(&self) -> String {
        // scheme://user:password@host...: the password runs from the ':' after the user to '@'.
        let url = &self.url;
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
}

/// What a write answered 200 survives (`DB_DURABILITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The crash of any process (the commit is in the operating system's cache before the
    /// answer), not a power cut or a kernel panic: SQLite's write connection runs at
    /// `synchronous=NORMAL`, which syncs the WAL only when it starts over and in checkpoints;
    /// PostgreSQL commits as the server is configured (the deployment's `fsync=off`).
    Process,
    /// A power cut too: the commit is on disk before the answer. SQLite's write connection runs
    /// at `synchronous=FULL`, which syncs the WAL once per committed batch (group commit: one
    /// sync covers every write of the batch); PostgreSQL commits with `synchronous_commit=on`,
    /// and the server must run with `fsync=on`.
    Power,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A storage failure, in terms the API can act on whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A lock, a connection or the server stayed busy for longer than allowed. Worth retrying.
    #[error("the database is busy: {0}")]
    Busy(#[source] BoxError),
    /// The instance is stopping and takes no more work. Worth retrying on another instance.
    #[error("the instance is stopping")]
    Stopping,
    /// The file system holding the database is full: the write was rolled back, nothing of it
    /// stored. Worth retrying once space is freed; reads still work.
    #[error("the database's storage is full: {0}")]
    Full(#[source] BoxError),
    #[error(transparent)]
    Other(BoxError),
}

/// Handle to the ledger's storage, whichever backend; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    backend: Backend,
    /// Clients and their limits, read once at start: no route creates or changes a client.
    clients: Arc<HashMap<ClientId, Client>>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Database {
    /// Opens the backend `settings.url` names, applies its schema and reads the clients; the
    /// backend reports what only it sees to `metrics`.
    pub async fn connect(
        settings: &DatabaseSettings,
        metrics: StorageMetrics,
    ) -> Result<Self, StorageError> {
        let (backend, clients) = if postgres::is_url(&settings.url) {
            let (db, clients) = postgres::Postgres::connect(settings, &metrics).await?;
            (Backend::Postgres(db), clients)
        } else {
            let db = sqlite::Sqlite::connect(settings, metrics).await?;
            let clients = db.clients().await?;
            (Backend::Sqlite(db), clients)
        };
        let clients = clients.into_iter().map(|client| (client.id, client));
        Ok(Self {
            backend,
            clients: Arc::new(clients.collect()),
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
        Ok(match &self.backend {
            Backend::Sqlite(db) => db.record(client, transaction).await?,
            Backend::Postgres(db) => db.record(client, transaction).await?,
        })
    }

    /// The client's statement: balance, limit and latest transactions, from one snapshot.
    pub async fn statement(&self, client: Client) -> Result<Statement, StorageError> {
        Ok(match &self.backend {
            Backend::Sqlite(db) => db.statement(client).await?,
            Backend::Postgres(db) => db.statement(client).await?,
        })
    }

    /// Deletes every transaction and sets every balance back to 0, atomically.
    pub async fn reset(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Sqlite(db) => db.reset().await?,
            Backend::Postgres(db) => db.reset().await?,
        }
        Ok(())
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Sqlite(db) => db.ping().await?,
            Backend::Postgres(db) => db.ping().await?,
        }
        Ok(())
    }

    /// Stops taking writes, finishes the queued ones, and closes every connection; a request
    /// that reaches storage from then on fails with [`StorageError::Stopping`].
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(db) => db.close().await,
            Backend::Postgres(db) => db.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let settings = DatabaseSettings {
                url: url.to_owned(),
                ..DatabaseSettings::default()
            };
            assert_eq!(settings.redacted_url(), shown);
        }
    }
}
