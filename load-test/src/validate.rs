//! The rules every answer must follow, as pure functions of (request, status, body).
//!
//! The rules are the official test's, made exact: a debit answers 200 or 422, a credit 200, a
//! statement 200; balances and limits are JSON integers; `saldo >= -limite`; the limit is the
//! one the contract gives the client. Bodies are parsed into typed structs with integer fields,
//! so `1.0`, `"10"` or a missing field is refused by the parser itself rather than by a check
//! someone could forget. A broken rule is a [`Problem`]: the load counts it as an inconsistency.

use serde::{Deserialize, Serialize};

use crate::{
    contract::{ClientId, DESCRIPTION_MAX_CHARS, STATEMENT_MAX_ENTRIES, limit_of},
    mix::RequestKind,
};

/// What kind of rule an answer broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemClass {
    /// A status the contract does not allow for this request.
    UnexpectedStatus,
    /// A body that is not the JSON shape the contract promises (or has non-integer numbers).
    InvalidBody,
    /// Well-formed, but the values break an invariant (`saldo < -limite`, wrong limit, ...).
    BrokenInvariant,
}

impl ProblemClass {
    /// The snake_case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ProblemClass::UnexpectedStatus => "unexpected_status",
            ProblemClass::InvalidBody => "invalid_body",
            ProblemClass::BrokenInvariant => "broken_invariant",
        }
    }
}

/// A rule an answer broke, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Which kind of rule.
    pub class: ProblemClass,
    /// What exactly was wrong, with the offending values.
    pub detail: String,
}

impl Problem {
    fn new(class: ProblemClass, detail: impl Into<String>) -> Self {
        Self {
            class,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class.name(), self.detail)
    }
}

/// The body of a `200` to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TransactionBalance {
    /// The client's credit limit.
    pub limite: i64,
    /// The balance right after this transaction.
    pub saldo: i64,
}

/// The body of a `200` to a statement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Statement {
    /// Current balance and limit.
    pub saldo: StatementBalance,
    /// The last accepted transactions, newest first.
    pub ultimas_transacoes: Vec<StatementEntry>,
}

/// The `saldo` object of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatementBalance {
    /// The current balance.
    pub total: i64,
    /// The client's credit limit.
    pub limite: i64,
    /// When the statement was taken.
    pub data_extrato: String,
}

/// One entry of `ultimas_transacoes`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatementEntry {
    /// Amount in cents, positive.
    pub valor: i64,
    /// "c" or "d".
    pub tipo: String,
    /// 1 to 10 characters.
    pub descricao: String,
    /// When it was committed.
    pub realizada_em: String,
}

/// A transaction answer that follows the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionOutcome {
    /// `200`: applied; the balance right after it.
    Applied(TransactionBalance),
    /// `422` to a debit: refused because it would break the limit; nothing applied.
    Refused,
}

/// Checks the answer to a transaction of `kind` (debit or credit) on `client`.
pub fn check_transaction(
    kind: RequestKind,
    client: ClientId,
    status: u16,
    body: &[u8],
) -> Result<TransactionOutcome, Problem> {
    match (kind, status) {
        (RequestKind::Debit | RequestKind::Credit, 200) => {
            let balance: TransactionBalance = parse(body)?;
            check_balance(client, balance.saldo, balance.limite)?;
            Ok(TransactionOutcome::Applied(balance))
        }
        (RequestKind::Debit, 422) => Ok(TransactionOutcome::Refused),
        (RequestKind::Statement, _) => Err(Problem::new(
            ProblemClass::UnexpectedStatus,
            "a statement was checked as a transaction (tester bug)",
        )),
        (_, status) => Err(Problem::new(
            ProblemClass::UnexpectedStatus,
            format!(
                "{} answered {status}, expected {}",
                kind.name(),
                if kind == RequestKind::Debit {
                    "200 or 422"
                } else {
                    "200"
                }
            ),
        )),
    }
}

/// Checks the answer to `GET /clientes/{client}/extrato`.
pub fn check_statement(client: ClientId, status: u16, body: &[u8]) -> Result<Statement, Problem> {
    if status != 200 {
        return Err(Problem::new(
            ProblemClass::UnexpectedStatus,
            format!("statement answered {status}, expected 200"),
        ));
    }
    let statement: Statement = parse(body)?;
    check_balance(client, statement.saldo.total, statement.saldo.limite)?;
    let entries = &statement.ultimas_transacoes;
    if entries.len() > STATEMENT_MAX_ENTRIES {
        return Err(Problem::new(
            ProblemClass::BrokenInvariant,
            format!(
                "statement lists {} transactions, at most {STATEMENT_MAX_ENTRIES} allowed",
                entries.len()
            ),
        ));
    }
    for (position, entry) in entries.iter().enumerate() {
        let description_chars = entry.descricao.chars().count();
        let broken = if entry.valor <= 0 {
            Some(format!("valor {} is not positive", entry.valor))
        } else if entry.tipo != "c" && entry.tipo != "d" {
            Some(format!("tipo {:?} is neither \"c\" nor \"d\"", entry.tipo))
        } else if !(1..=DESCRIPTION_MAX_CHARS).contains(&description_chars) {
            Some(format!(
                "descricao {:?} has {description_chars} characters",
                entry.descricao
            ))
        } else if entry.realizada_em.is_empty() {
            Some("realizada_em is empty".to_owned())
        } else {
            None
        };
        if let Some(why) = broken {
            return Err(Problem::new(
                ProblemClass::BrokenInvariant,
                format!("statement entry {position}: {why}"),
            ));
        }
    }
    Ok(statement)
}

/// `saldo >= -limite`, and the limit is the contract's for this client.
fn check_balance(client: ClientId, saldo: i64, limite: i64) -> Result<(), Problem> {
    let expected = limit_of(client).ok_or_else(|| {
        Problem::new(
            ProblemClass::BrokenInvariant,
            format!("client {client} does not exist in the contract"),
        )
    })?;
    if limite != expected {
        return Err(Problem::new(
            ProblemClass::BrokenInvariant,
            format!("client {client}: limite {limite}, the contract says {expected}"),
        ));
    }
    // `saldo >= -limite` written without negation so no value can overflow it.
    if saldo.checked_add(limite).is_none_or(|sum| sum < 0) {
        return Err(Problem::new(
            ProblemClass::BrokenInvariant,
            format!(
                "client {client}: saldo {saldo} is below -limite ({})",
                -limite
            ),
        ));
    }
    Ok(())
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            ProblemClass::InvalidBody,
            format!("{e}; body: {}", snippet(body)),
        )
    })
}

/// The start of a body, for messages: at most 200 bytes, lossily decoded.
pub fn snippet(body: &[u8]) -> String {
    const LIMIT: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(LIMIT)]).into_owned();
    if body.len() > LIMIT {
        format!("{text}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestKind::{Credit, Debit};

    fn class_of<T: std::fmt::Debug>(result: Result<T, Problem>) -> ProblemClass {
        result.expect_err("the answer must be refused").class
    }

    #[test]
    fn a_debit_may_answer_200_or_422_and_a_credit_only_200() {
        let body = br#"{"limite": 100000, "saldo": -9098}"#;
        assert_eq!(
            check_transaction(Debit, 1, 200, body),
            Ok(TransactionOutcome::Applied(TransactionBalance {
                limite: 100_000,
                saldo: -9098
            }))
        );
        assert_eq!(
            check_transaction(Debit, 1, 422, b""),
            Ok(TransactionOutcome::Refused)
        );
        assert!(check_transaction(Credit, 1, 200, body).is_ok());
        // A credit can never break the limit, so 422 to a credit breaks the contract.
        for (kind, status) in [
            (Credit, 422),
            (Debit, 400),
            (Debit, 500),
            (Credit, 201),
            (Debit, 404),
        ] {
            assert_eq!(
                class_of(check_transaction(kind, 1, status, body)),
                ProblemClass::UnexpectedStatus,
                "{kind:?} answered {status}"
            );
        }
    }

    #[test]
    fn a_balance_below_minus_the_limit_is_an_inconsistency_but_exactly_on_it_is_fine() {
        assert!(
            check_transaction(Debit, 1, 200, br#"{"limite": 100000, "saldo": -100000}"#).is_ok()
        );
        assert_eq!(
            class_of(check_transaction(
                Debit,
                1,
                200,
                br#"{"limite": 100000, "saldo": -100001}"#
            )),
            ProblemClass::BrokenInvariant
        );
        let extreme = format!(r#"{{"limite": 100000, "saldo": {}}}"#, i64::MIN);
        assert_eq!(
            class_of(check_transaction(Debit, 1, 200, extreme.as_bytes())),
            ProblemClass::BrokenInvariant
        );
    }

    #[test]
    fn a_limit_other_than_the_contracts_is_an_inconsistency() {
        assert_eq!(
            class_of(check_transaction(
                Credit,
                2,
                200,
                br#"{"limite": 100000, "saldo": 5}"#
            )),
            ProblemClass::BrokenInvariant
        );
    }

    #[test]
    fn balances_and_limits_must_be_json_integers() {
        let cases: [(&[u8], &str); 7] = [
            (br#"{"limite": 100000, "saldo": 1.5}"#, "fractional saldo"),
            (
                br#"{"limite": 100000, "saldo": 1.0}"#,
                "saldo written as a float",
            ),
            (br#"{"limite": "100000", "saldo": 1}"#, "limite as a string"),
            (br#"{"limite": 100000}"#, "saldo missing"),
            (br#"{"limite": 100000, "saldo": null}"#, "saldo null"),
            (b"not json", "not JSON"),
            (b"", "empty body"),
        ];
        for (body, why) in cases {
            assert_eq!(
                class_of(check_transaction(Credit, 1, 200, body)),
                ProblemClass::InvalidBody,
                "{why}"
            );
        }
    }

    fn statement_body(total: i64, limite: i64, entries: &str) -> String {
        format!(
            r#"{{"saldo": {{"total": {total}, "data_extrato": "2024-01-17T02:34:41.217753Z", "limite": {limite}}},
                "ultimas_transacoes": [{entries}]}}"#
        )
    }

    const ENTRY: &str = r#"{"valor": 10, "tipo": "c", "descricao": "descricao", "realizada_em": "2024-01-17T02:34:38.543030Z"}"#;

    #[test]
    fn a_well_formed_statement_is_accepted_and_parsed() {
        let body = statement_body(-9098, 100_000, ENTRY);
        let statement = check_statement(1, 200, body.as_bytes()).expect("valid statement");
        assert_eq!(statement.saldo.total, -9098);
        assert_eq!(statement.ultimas_transacoes.len(), 1);
        assert_eq!(statement.ultimas_transacoes[0].descricao, "descricao");
        // Ten entries is the maximum and still fine.
        let ten = [ENTRY; 10].join(",");
        assert!(check_statement(1, 200, statement_body(0, 100_000, &ten).as_bytes()).is_ok());
    }

    #[test]
    fn statement_rules_are_enforced() {
        let eleven = [ENTRY; 11].join(",");
        let long = ENTRY.replace(
            r#""descricao": "descricao""#,
            r#""descricao": "ãããããããããããã""#,
        );
        let cases = [
            (
                404,
                statement_body(0, 100_000, ""),
                ProblemClass::UnexpectedStatus,
                "status 404",
            ),
            (
                200,
                statement_body(-100_001, 100_000, ""),
                ProblemClass::BrokenInvariant,
                "below the limit",
            ),
            (
                200,
                statement_body(0, 1, ""),
                ProblemClass::BrokenInvariant,
                "wrong limit",
            ),
            (
                200,
                statement_body(0, 100_000, &eleven),
                ProblemClass::BrokenInvariant,
                "11 entries",
            ),
            (
                200,
                statement_body(0, 100_000, &ENTRY.replace("\"c\"", "\"x\"")),
                ProblemClass::BrokenInvariant,
                "tipo x",
            ),
            (
                200,
                statement_body(0, 100_000, &ENTRY.replace(": 10,", ": 0,")),
                ProblemClass::BrokenInvariant,
                "valor 0",
            ),
            (
                200,
                statement_body(0, 100_000, &ENTRY.replace(": 10,", ": 1.5,")),
                ProblemClass::InvalidBody,
                "valor 1.5",
            ),
            (
                200,
                statement_body(0, 100_000, &long),
                ProblemClass::BrokenInvariant,
                "12-character descricao",
            ),
            (
                200,
                r#"{"saldo": {"total": 0, "limite": 100000}}"#.to_owned(),
                ProblemClass::InvalidBody,
                "missing fields",
            ),
        ];
        for (status, body, class, why) in cases {
            assert_eq!(
                class_of(check_statement(1, status, body.as_bytes())),
                class,
                "{why}"
            );
        }
    }

    #[test]
    fn descriptions_are_counted_in_characters_not_bytes() {
        // Ten two-byte characters: 20 bytes, but within the 10-character limit.
        let body = statement_body(
            0,
            100_000,
            &ENTRY.replace(
                r#""descricao": "descricao""#,
                r#""descricao": "ãããããããããã""#,
            ),
        );
        assert!(check_statement(1, 200, body.as_bytes()).is_ok());
    }
}
