//! Every SQL statement the service runs, in one place. `script.sql` holds the schema.

/// The schema and the five clients; applied by every instance at start.
pub const SCHEMA: &str = include_str!("../../script.sql");

/// The writer's transaction around each batch: `IMMEDIATE` takes the write lock at once, so a
/// batch never fails half-way for want of it.
pub const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";

/// Back to SQLite's default sync level on the write connection before it closes (see
/// `Database::connect` for why it runs with `synchronous=OFF` until then).
pub const SYNC_NORMAL: &str = "PRAGMA synchronous = NORMAL";

/// Records a transaction if the balance allows it, in one statement: the limit check, the new
/// row and (through the trigger in `script.sql`) the balance update. Returns the new balance, or
/// no row when the transaction is refused.
///
/// `?1` client id, `?2` valor, `?3` tipo, `?4` descricao, `?5` signed amount (+credit, -debit),
/// `?6` the largest balance allowed.
pub const RECORD: &str =
    "INSERT INTO transacoes (cliente_id, valor, tipo, descricao, saldo_apos, realizada_em)
     SELECT id, ?2, ?3, ?4, saldo + ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     FROM clientes
     WHERE id = ?1 AND saldo + ?5 BETWEEN -limite AND ?6
     RETURNING saldo_apos";

/// With [`ZERO_BALANCES`], in one transaction: the reset.
pub const DELETE_TRANSACTIONS: &str = "DELETE FROM transacoes";
pub const ZERO_BALANCES: &str = "UPDATE clientes SET saldo = 0";

/// A client's statement in one snapshot: the read time, the balance and limit, and up to `?2`
/// latest transactions (one row each, newest first; one row of NULLs when there is none).
/// `data_extrato` comes from the clock that stamps `realizada_em`, so it is never earlier than a
/// listed transaction.
pub const STATEMENT: &str = "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), c.saldo, c.limite,
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
     ORDER BY t.id DESC";

/// Every client and its limit.
pub const CLIENTS: &str = "SELECT id, limite FROM clientes";

/// Whether the database answers.
pub const PING: &str = "SELECT 1";

/// Copies what it can of the WAL into the database without waiting for anyone; returns
/// (busy, pages in the WAL, pages copied).
pub const CHECKPOINT_PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
/// Waits for writers, copies the whole WAL, and makes the next writer start it over.
pub const CHECKPOINT_RESTART: &str = "PRAGMA wal_checkpoint(RESTART)";
