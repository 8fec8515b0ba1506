//! The ledger's work on the write connection: its prepared queries, and what each does inside
//! the writer's open transaction (apply a transaction, reset, read a client's statement).
//!
//! Inside a batch the writer holds SQLite's write lock, so no other process can change an account
//! until its `COMMIT`: [`Session::record`] reads each client's account the first time the batch
//! touches it, checks every transaction against the balance as the batch has left it
//! ([`NewTransaction::balance_after`]), appends each accepted one with a plain `INSERT`, and
//! [`Session::write_back`] writes each changed account once, just before `COMMIT`. Balances
//! chain inside the batch; a refused debit refuses only itself.

use crate::domain::{
    Applied, Client, ClientId, Kind, NewTransaction, Recorded, Statement, StatementBalance,
    StatementEntry,
};

use super::ffi::{Connection, Prepared, Row, SqliteFailure};
use super::sql;

/// The write connection and its prepared queries (transaction control too: parsing `COMMIT`
/// for every batch showed in profiles).
#[derive(Debug)]
pub struct Session {
    pub connection: Connection,
    begin: Prepared,
    commit: Prepared,
    rollback: Prepared,
    account: Prepared,
    insert_transaction: Prepared,
    update_account: Prepared,
    delete_transactions: Prepared,
    zero_balances: Prepared,
    /// Not writes: a client's statement, read on this connection (see [`Session::statement`]).
    begin_read: Prepared,
    transaction_by_id: Prepared,
}

/// A client's account as the open transaction has it so far.
#[derive(Debug, Clone, Copy)]
struct Account {
    client: ClientId,
    balance: i64,
    limit: i64,
    /// The client's newest transaction, the head of its list.
    newest: Option<i64>,
    /// Whether the batch changed it, so it must be written back before `COMMIT`.
    changed: bool,
}

/// What one open transaction has read and not yet written back: the accounts it touched (a
/// handful: a linear search beats hashing) and its commit time.
#[derive(Debug, Default)]
pub struct Pending {
    accounts: Vec<Account>,
    committed_at: Option<String>,
}

/// Why the ledger's work on the write connection failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerFailure {
    #[error(transparent)]
    Sqlite(#[from] SqliteFailure),
    /// The stored rows break an invariant the write path keeps.
    #[error("{0}")]
    Broken(String),
}

impl Session {
    /// Prepares the ledger's queries on `connection`.
    pub fn prepare(mut connection: Connection) -> Result<Self, SqliteFailure> {
        let c = &mut connection;
        Ok(Self {
            begin: c.prepare(sql::BEGIN_WRITE)?,
            commit: c.prepare(sql::COMMIT)?,
            rollback: c.prepare(sql::ROLLBACK)?,
            account: c.prepare(sql::ACCOUNT)?,
            insert_transaction: c.prepare(sql::INSERT_TRANSACTION)?,
            update_account: c.prepare(sql::UPDATE_ACCOUNT)?,
            delete_transactions: c.prepare(sql::DELETE_TRANSACTIONS)?,
            zero_balances: c.prepare(sql::ZERO_BALANCES)?,
            begin_read: c.prepare(sql::BEGIN_READ)?,
            transaction_by_id: c.prepare(sql::TRANSACTION_BY_ID)?,
            connection,
        })
    }

    /// `BEGIN IMMEDIATE`: fails with `SQLITE_BUSY` at once while another process writes.
    pub fn begin(&mut self) -> Result<(), SqliteFailure> {
        self.connection.query(self.begin)?.run()
    }

    /// `COMMIT`.
    pub fn commit(&mut self) -> Result<(), SqliteFailure> {
        self.connection.query(self.commit)?.run()
    }

    /// Rolls back the open transaction, if any; logs a rollback that fails.
    pub fn roll_back(&mut self) {
        if self.connection.in_transaction()
            && let Err(failure) = self
                .connection
                .query(self.rollback)
                .and_then(|mut q| q.run())
        {
            tracing::error!(error = %failure, "rollback failed");
        }
    }

    /// Applies `transaction` to `client` inside the open transaction, if the balance allows it.
    pub fn record(
        &mut self,
        pending: &mut Pending,
        client: Client,
        transaction: &NewTransaction,
    ) -> Result<Recorded, LedgerFailure> {
        let index = self.account_index(pending, client.id)?;
        let account = pending.accounts[index];
        let balance = match transaction.balance_after(account.balance, account.limit) {
            Ok(balance) => balance,
            Err(refused) => return Ok(Recorded::Refused(refused)),
        };
        // One time for the whole batch: its transactions commit at the same instant, and it is
        // taken under the write lock, so it never goes backwards across batches, whichever
        // process commits them.
        let committed_at = pending.committed_at.get_or_insert_with(rfc3339_now);
        let mut insert = self.connection.query(self.insert_transaction)?;
        insert.bind_i64(1, client.id.0)?;
        insert.bind_i64(2, transaction.amount())?;
        insert.bind_text(3, transaction.kind().code())?;
        insert.bind_text(4, transaction.description())?;
        insert.bind_i64(5, balance)?;
        insert.bind_text(6, committed_at)?;
        insert.bind_optional_i64(7, account.newest)?;
        insert.run()?;
        pending.accounts[index] = Account {
            balance,
            newest: Some(self.connection.last_insert_rowid()),
            changed: true,
            ..account
        };
        Ok(Recorded::Applied(Applied {
            limit: client.limit,
            balance,
        }))
    }

    /// Deletes every transaction and sets every balance to 0, inside the open transaction.
    pub fn reset(&mut self, pending: &mut Pending) -> Result<(), SqliteFailure> {
        self.connection.query(self.delete_transactions)?.run()?;
        self.connection.query(self.zero_balances)?.run()?;
        pending.accounts.clear();
        Ok(())
    }

    /// Writes back every account the batch changed.
    pub fn write_back(&mut self, pending: &Pending) -> Result<(), SqliteFailure> {
        for account in pending.accounts.iter().filter(|account| account.changed) {
            let mut update = self.connection.query(self.update_account)?;
            update.bind_i64(1, account.client.0)?;
            update.bind_i64(2, account.balance)?;
            update.bind_optional_i64(3, account.newest)?;
            update.run()?;
        }
        Ok(())
    }

    /// Reads `client`'s statement (at most `length` transactions, newest first) in one read
    /// transaction, so from one snapshot: the account, then its list walked back from
    /// `ultima_id` by primary key, one lookup per listed transaction
    /// ([`sql::TRANSACTION_BY_ID`]). The read transaction is ended on every path, by `ROLLBACK`,
    /// which ends a read as `COMMIT` would and can never write.
    pub fn statement(&mut self, client: ClientId, length: u32) -> Result<Statement, LedgerFailure> {
        let read = self.read_statement(client, length);
        if self.connection.in_transaction() {
            self.connection.query(self.rollback)?.run()?;
        }
        read
    }

    fn read_statement(
        &mut self,
        client: ClientId,
        length: u32,
    ) -> Result<Statement, LedgerFailure> {
        self.connection.query(self.begin_read)?.run()?;
        let account = self.read_account(client)?;
        let mut next = account.newest;
        // Taken once the snapshot holds: every transaction it lists committed before now, and
        // was stamped (by the same clock, see `record`) before its commit.
        let read_at = rfc3339_now();
        let mut last_transactions = Vec::with_capacity(length as usize);
        while let Some(id) = next.take()
            && last_transactions.len() < length as usize
        {
            let mut by_id = self.connection.query(self.transaction_by_id)?;
            by_id.bind_i64(1, id)?;
            let row = by_id.first_row(|row| (listed_entry(row), row.i64(4)))?;
            let Some((Some(entry), previous)) = row else {
                return Err(LedgerFailure::Broken(format!(
                    "client {}'s list points at transaction {id}, missing or with a column a \
                     statement cannot list",
                    client.0
                )));
            };
            last_transactions.push(entry);
            next = previous;
        }
        Ok(Statement {
            balance: StatementBalance {
                total: account.balance,
                read_at,
                limit: account.limit,
            },
            last_transactions,
        })
    }

    /// Where `client`'s account is in `pending`, reading it first if the batch has not yet.
    fn account_index(
        &mut self,
        pending: &mut Pending,
        client: ClientId,
    ) -> Result<usize, LedgerFailure> {
        if let Some(index) = pending.accounts.iter().position(|a| a.client == client) {
            return Ok(index);
        }
        let account = self.read_account(client)?;
        pending.accounts.push(account);
        Ok(pending.accounts.len() - 1)
    }

    /// `client`'s account as the open transaction sees it ([`sql::ACCOUNT`]), unchanged.
    fn read_account(&mut self, client: ClientId) -> Result<Account, LedgerFailure> {
        let mut account = self.connection.query(self.account)?;
        account.bind_i64(1, client.0)?;
        let row = account.first_row(|row| (row.i64(0), row.i64(1), row.i64(2)))?;
        let Some((Some(balance), Some(limit), newest)) = row else {
            return Err(LedgerFailure::Broken(format!(
                "client {} has no account row",
                client.0
            )));
        };
        Ok(Account {
            client,
            balance,
            limit,
            newest,
            changed: false,
        })
    }
}

/// A row of [`sql::TRANSACTION_BY_ID`] as a statement lists it; `None` if a column is missing.
fn listed_entry(row: &Row<'_>) -> Option<StatementEntry> {
    Some(StatementEntry {
        amount: row.i64(0)?,
        kind: Kind::from_code(row.text(1)?.as_str())?,
        description: row.text(2)?,
        committed_at: row.text(3)?,
    })
}

/// The time now, as the ledger writes it: RFC 3339, UTC, milliseconds, `2024-01-17T02:34:41.217Z`
/// (chrono's fixed formatter: no format string parsed on every call, as `format` would).
fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
