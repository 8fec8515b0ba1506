-- Schema and seed data for the Rinha de Backend 2024 Q1 ledger (SQLite).
--
-- The one source of the schema: every API instance runs this file at start (it is compiled into
-- the binary), so it must be idempotent and safe when two instances run it at the same moment on
-- a new file. The caller wraps it in BEGIN IMMEDIATE ... COMMIT, so the second instance waits for
-- the first and then finds everything in place.

CREATE TABLE IF NOT EXISTS clientes (
    id     INTEGER PRIMARY KEY,
    limite INTEGER NOT NULL CHECK (limite >= 0),
    -- Current balance in cents. The CHECK is the last line of defence: the write path refuses an
    -- overdraft before it reaches this, so a violation here is a bug, never a client error.
    saldo  INTEGER NOT NULL DEFAULT 0 CHECK (saldo >= -limite),
    -- The client's newest transaction (NULL: none yet), the head of its list in `transacoes`.
    ultima_id INTEGER
) STRICT;

-- Every accepted transaction, in commit order. `id` is assigned under SQLite's write lock, so it
-- is the order in which the ledger changed, across every process sharing the file.
--
-- Each client's transactions also form a list, newest first: `clientes.ultima_id` -> `anterior_id`
-- -> ... The statement walks its first 10 links (10 primary-key lookups). This replaces an index on
-- (cliente_id, id DESC), which every commit had to update in up to five places, one per client:
-- measured, a commit appended 9.4 pages to the WAL with the index and 3.3 with the lists, for the
-- same load (BENCHMARKS.md).
CREATE TABLE IF NOT EXISTS transacoes (
    id           INTEGER PRIMARY KEY,
    cliente_id   INTEGER NOT NULL REFERENCES clientes (id),
    valor        INTEGER NOT NULL CHECK (valor > 0),
    tipo         TEXT    NOT NULL CHECK (tipo IN ('c', 'd')),
    descricao    TEXT    NOT NULL CHECK (length(descricao) BETWEEN 1 AND 10),
    -- The client's balance right after this transaction: what the POST answered.
    saldo_apos   INTEGER NOT NULL,
    -- RFC 3339 UTC, millisecond precision: the batch's commit time, taken by the writer while it
    -- holds the write lock, so it never goes backwards in `id` order.
    realizada_em TEXT    NOT NULL,
    -- The same client's previous transaction (NULL: this is its first).
    anterior_id  INTEGER
) STRICT;

-- Recording a transaction is done by the writer inside its batch (src/db/sqlite/ledger.rs): it
-- reads the account, checks the limit, appends the row and writes the account back once per batch.

INSERT OR IGNORE INTO clientes (id, limite, saldo) VALUES
    (1, 100000, 0),
    (2, 80000, 0),
    (3, 1000000, 0),
    (4, 10000000, 0),
    (5, 500000, 0);
