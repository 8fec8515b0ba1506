-- Schema and seed data for the Rinha de Backend 2024 Q1 ledger (PostgreSQL).
--
-- The PostgreSQL twin of script.sql, applied by every API instance at start when DATABASE_URL is
-- postgres://... (it is compiled into the binary), so it must be idempotent. It runs inside one
-- transaction: an instance sees either none of it or all of it. `CREATE ... IF NOT EXISTS` is not
-- safe on its own when N instances start at once (the second waits on the first's catalog row,
-- then fails with a unique violation); the caller retries the whole transaction when it fails that
-- way, and the retry finds everything in place (see src/db/postgres.rs).
--
-- Written for what PostgreSQL, CockroachDB and YugabyteDB all run: no sequences or SERIAL (on a
-- distributed engine they are not in commit order), no triggers, no advisory locks, no TRUNCATE,
-- no PL/pgSQL.

CREATE TABLE IF NOT EXISTS clientes (
    id     BIGINT  PRIMARY KEY,
    limite BIGINT  NOT NULL CHECK (limite >= 0),
    -- Current balance in cents. The CHECK is the last line of defence: the write path refuses an
    -- overdraft before it reaches this, so a violation here is a bug, never a client error.
    saldo  BIGINT  NOT NULL DEFAULT 0 CHECK (saldo >= -limite),
    -- How many transactions the client has: the number of the next one is ultima + 1. Taken by
    -- the same UPDATE that changes the balance, under the row's lock, so it is the order in which
    -- this client's balance changed, whichever instance wrote.
    ultima BIGINT  NOT NULL DEFAULT 0
);

-- Every accepted transaction. (cliente_id, numero) is the client's commit order; a statement
-- only ever lists one client's, so no global order is needed (nor a sequence to give one).
--
-- No foreign key on cliente_id: every row is inserted by the write statement from the client's
-- row it holds locked (its number is that row's ultima), and no client is ever deleted. The key's
-- check was a query of its own per inserted row, a fifth of the server's CPU per write. A
-- database made with the key keeps it; the write path works the same.
CREATE TABLE IF NOT EXISTS transacoes (
    cliente_id   BIGINT      NOT NULL,
    numero       BIGINT      NOT NULL,
    valor        BIGINT      NOT NULL CHECK (valor > 0),
    tipo         CHAR(1)     NOT NULL CHECK (tipo IN ('c', 'd')),
    descricao    VARCHAR(10) NOT NULL CHECK (char_length(descricao) BETWEEN 1 AND 10),
    -- The client's balance right after this transaction: what the POST answered.
    saldo_apos   BIGINT      NOT NULL,
    -- Taken by the database after the client's row was locked, so it never goes backwards down
    -- a client's list.
    realizada_em TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cliente_id, numero)
);

INSERT INTO clientes (id, limite, saldo) VALUES
    (1, 100000, 0),
    (2, 80000, 0),
    (3, 1000000, 0),
    (4, 10000000, 0),
    (5, 500000, 0)
ON CONFLICT (id) DO NOTHING;
