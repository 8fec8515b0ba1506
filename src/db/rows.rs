//! What both backends read as rows through sqlx, made into domain values: the clients, and a
//! statement (the read time, the balance and limit, then one listed transaction per row; one row
//! of NULLs when the client has none).

use crate::domain::{Client, ClientId, Kind, Statement, StatementBalance, StatementEntry};

/// The clients from `(id, limite)` rows.
pub fn clients_from_rows(rows: Vec<(i64, i64)>) -> Vec<Client> {
    rows.into_iter()
        .map(|(id, limit)| Client {
            id: ClientId(id),
            limit,
        })
        .collect()
}

/// One row of a statement query. `T` is how the backend returns a time.
pub type StatementRow<T> = (
    T,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<T>,
);

/// Builds a statement from its rows (newest transaction first), writing each time with `text`;
/// `None` when there is no row: the client's row is missing.
pub fn statement_from_rows<T: Clone>(
    rows: Vec<StatementRow<T>>,
    text: impl Fn(T) -> String,
) -> Option<Statement> {
    let (read_at, total, limit) = rows
        .first()
        .map(|(now, total, limit, ..)| (now.clone(), *total, *limit))?;
    let last_transactions = rows
        .into_iter()
        .filter_map(|(_, _, _, amount, kind, description, committed_at)| {
            Some(StatementEntry {
                amount: amount?,
                kind: Kind::from_code(kind.as_deref()?)?,
                description: description?,
                committed_at: text(committed_at?),
            })
        })
        .collect();
    Some(Statement {
        balance: StatementBalance {
            total,
            read_at: text(read_at),
            limit,
        },
        last_transactions,
    })
}
