//! Every SQL text the SQLite backend runs, in one place. `script.sql` holds the schema.

/// The schema and the five clients; applied by every instance at start.
pub const SCHEMA: &str = include_str!("../../../script.sql");

/// The writer's transaction around each batch: `IMMEDIATE` takes the write lock at once, so a
/// batch never fails half-way for want of it.
pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";

/// A client's account at the start of its first transaction in a batch: `saldo`, `limite`, and
/// `ultima_id`, the head of its list of transactions (NULL when it has none). The writer holds
/// the write lock from `BEGIN IMMEDIATE` on, so what it reads stays true until its `COMMIT`.
///
/// `?1` client id.
pub const ACCOUNT: &str = "SELECT saldo, limite, ultima_id FROM clientes WHERE id = ?1";

/// Appends an accepted transaction, linked to the client's previous one. The writer checks the
/// limit and computes the balance (see `domain::balance_after`).
///
/// `?1` client id, `?2` valor, `?3` tipo, `?4` descricao, `?5` the balance after it, `?6` the
/// batch's commit time (RFC 3339 UTC, milliseconds), `?7` the client's previous transaction.
pub const INSERT_TRANSACTION: &str = "INSERT INTO transacoes
     (cliente_id, valor, tipo, descricao, saldo_apos, realizada_em, anterior_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Writes a client's account back once per batch, after its last transaction in the batch.
///
/// `?1` client id, `?2` balance, `?3` newest transaction.
pub const UPDATE_ACCOUNT: &str = "UPDATE clientes SET saldo = ?2, ultima_id = ?3 WHERE id = ?1";

/// With [`ZERO_BALANCES`], in one transaction: the reset.
pub const DELETE_TRANSACTIONS: &str = "DELETE FROM transacoes";
pub const ZERO_BALANCES: &str = "UPDATE clientes SET saldo = 0, ultima_id = NULL";

/// Opens the read transaction in which the writer's connection reads a statement (see
/// `writer::Writer::statement`): `DEFERRED`, so it takes no lock and never waits for a writer;
/// its snapshot starts at the first `SELECT` ([`ACCOUNT`]) and holds until the writer ends it
/// with [`ROLLBACK`] (for a read, the same as `COMMIT`, and it can never write).
pub const BEGIN_READ: &str = "BEGIN DEFERRED";

/// One transaction of a client's list, by primary key, and the one listed before it.
///
/// `?1` transaction id.
pub const TRANSACTION_BY_ID: &str =
    "SELECT valor, tipo, descricao, realizada_em, anterior_id FROM transacoes WHERE id = ?1";

/// A client's statement in one snapshot, for a reader connection: the read time, the balance
/// and limit, and up to `?2` latest transactions (one row each, newest first; one row of NULLs
/// when there is none),
/// found by walking the client's list from `clientes.ultima_id` back through `anterior_id`:
/// at most `?2` primary-key lookups.
/// `data_extrato` comes from the clock that stamps `realizada_em`, so it is never earlier than a
/// listed transaction.
pub const STATEMENT: &str = "WITH RECURSIVE ultimas (id, n) AS (
         SELECT ultima_id, 1 FROM clientes WHERE id = ?1 AND ultima_id IS NOT NULL
         UNION ALL
         SELECT t.anterior_id, u.n + 1 FROM transacoes AS t JOIN ultimas AS u ON t.id = u.id
         WHERE u.n < ?2 AND t.anterior_id IS NOT NULL
     )
     SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), c.saldo, c.limite,
            t.valor, t.tipo, t.descricao, t.realizada_em
     FROM clientes AS c
     LEFT JOIN (ultimas AS u JOIN transacoes AS t ON t.id = u.id) ON 1
     WHERE c.id = ?1
     ORDER BY u.n";

/// Every client and its limit.
pub const CLIENTS: &str = "SELECT id, limite FROM clientes";

/// Whether the database answers.
pub const PING: &str = "SELECT 1";

/// Copies what it can of the WAL into the database without waiting for anyone; returns
/// (busy, pages in the WAL, pages copied).
pub const CHECKPOINT_PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
/// Waits for writers, copies the whole WAL, and makes the next writer start it over.
pub const CHECKPOINT_RESTART: &str = "PRAGMA wal_checkpoint(RESTART)";
