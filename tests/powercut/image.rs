//! What a power cut leaves on disk, and what SQLite makes of it.
//!
//! [`build`] replays one file's logged writes and truncates up to the cut: those logged before
//! the file's last sync before the cut are on disk; each one after it may or may not have
//! reached the disk, so each is kept or dropped by a coin. [`Image::write`] lays the database
//! file and its WAL side by side in a directory (no `-shm`: it is memory, rebuilt from the WAL on
//! open), and [`read`] opens them with the real `unix` VFS, checks them with
//! `PRAGMA integrity_check`, and reads the ledger.

use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

use crate::vfs::{Event, FileId};

/// The bytes of `file` after a cut before `events[cut]`, the writes after its last sync kept
/// where `keep` says so (asked once for each, in log order).
pub fn build(
    events: &[Event],
    cut: usize,
    file: FileId,
    keep: &mut impl FnMut() -> bool,
) -> Vec<u8> {
    let happened = &events[..cut];
    let synced = happened
        .iter()
        .rposition(|event| matches!(event, Event::Sync { file: synced, .. } if *synced == file))
        .map_or(0, |position| position + 1);
    let mut bytes = Vec::new();
    for (position, event) in happened.iter().enumerate() {
        match event {
            Event::Write {
                file: written,
                offset,
                bytes: data,
                ..
            } if *written == file && (position < synced || keep()) => {
                let start = usize::try_from(*offset).expect("an offset in memory");
                let end = start + data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(data);
            }
            Event::Truncate {
                file: truncated,
                size,
            } if *truncated == file && (position < synced || keep()) => {
                bytes.resize(usize::try_from(*size).expect("a size in memory"), 0);
            }
            Event::Delete { file: deleted }
                if *deleted == file && (position < synced || keep()) =>
            {
                bytes.clear()
            }
            _ => {}
        }
    }
    bytes
}

/// A database file and its WAL as a power cut left them.
#[derive(Debug)]
pub struct Image {
    pub database: Vec<u8>,
    pub wal: Vec<u8>,
}

impl Image {
    /// Writes the image as `database` and `database-wal`, replacing what an earlier image left
    /// there (its `-shm` too).
    pub fn write(&self, database: &Path) -> std::io::Result<()> {
        for suffix in ["-wal", "-shm", "-journal"] {
            match std::fs::remove_file(beside(database, suffix)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        std::fs::write(database, &self.database)?;
        if !self.wal.is_empty() {
            std::fs::write(beside(database, "-wal"), &self.wal)?;
        }
        Ok(())
    }
}

/// `database` with `suffix` appended to its name.
pub fn beside(database: &Path, suffix: &str) -> PathBuf {
    let mut path = database.as_os_str().to_owned();
    path.push(suffix);
    path.into()
}

/// A stored transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    pub client: i64,
    pub valor: i64,
    pub tipo: String,
    pub descricao: String,
}

/// What an image holds: each client (id, limite, saldo) and every transaction by id. Both
/// empty when the cut came before the schema reached the disk.
#[derive(Debug, Default)]
pub struct Ledger {
    pub clients: Vec<(i64, i64, i64)>,
    pub transactions: Vec<Stored>,
}

/// Opens the database at `database` with the real `unix` VFS; fails unless
/// `PRAGMA integrity_check` says `ok`.
pub async fn read(database: &Path) -> Result<Ledger, String> {
    let options = SqliteConnectOptions::new().filename(database).vfs("unix");
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .map_err(|err| format!("open: {err}"))?;
    let ledger = read_ledger(&mut connection).await;
    connection.close().await.ok();
    ledger
}

async fn read_ledger(connection: &mut SqliteConnection) -> Result<Ledger, String> {
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *connection)
        .await
        .map_err(|err| format!("integrity_check: {err}"))?;
    if problems != ["ok"] {
        return Err(format!("integrity_check: {problems:?}"));
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_schema WHERE name IN ('clientes', 'transacoes')",
    )
    .fetch_one(&mut *connection)
    .await
    .map_err(|err| format!("schema: {err}"))?;
    match tables {
        0 => return Ok(Ledger::default()),
        2 => {}
        _ => return Err(format!("{tables} of the 2 tables")),
    }
    let clients = sqlx::query_as("SELECT id, limite, saldo FROM clientes ORDER BY id")
        .fetch_all(&mut *connection)
        .await
        .map_err(|err| format!("clientes: {err}"))?;
    let transactions =
        sqlx::query("SELECT id, cliente_id, valor, tipo, descricao FROM transacoes ORDER BY id")
            .fetch_all(&mut *connection)
            .await
            .map_err(|err| format!("transacoes: {err}"))?
            .iter()
            .map(|row| Stored {
                id: row.get(0),
                client: row.get(1),
                valor: row.get(2),
                tipo: row.get(3),
                descricao: row.get(4),
            })
            .collect();
    Ok(Ledger {
        clients,
        transactions,
    })
}
