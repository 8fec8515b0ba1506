//! The ledger's vocabulary: validated values that can only exist if they obey the contract.
//!
//! A [`NewTransaction`] is built only from a body that passed every rule in docs/CONTRACT.md, so storage
//! and handlers never re-check anything. The body is read as JSON whatever its `Content-Type`
//! (curl's `-d` sends a form type), and each rule failure names the field and what was wrong.
//!
//! Amounts and balances are bounded by [`MAX_AMOUNT`] and [`MAX_BALANCE`] (2^53 - 1, the largest
//! integer every JSON client reads exactly), so `saldo ± valor` can never overflow an `i64`.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use validator::Validate;

/// The largest `valor` accepted, in cents.
pub const MAX_AMOUNT: i64 = (1 << 53) - 1;
/// The largest balance a credit may lead to, in cents; a credit past it is refused with 422.
pub const MAX_BALANCE: i64 = (1 << 53) - 1;
/// Entries listed by a statement.
pub const STATEMENT_LENGTH: u32 = 10;

/// A client's identifier as it appears in the path. Anything that is not an `i64` names no
/// client, so it is answered like an unknown client (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(pub i64);

impl ClientId {
    /// Parses a path segment; `None` when it cannot name a client.
    pub fn parse(segment: &str) -> Option<Self> {
        segment.parse().ok().map(Self)
    }
}

/// A client as configured: its credit limit never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    /// How far below zero the balance may go, in cents.
    pub limit: i64,
}

/// Credit (`"c"`) or debit (`"d"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum Kind {
    #[serde(rename = "c")]
    Credit,
    #[serde(rename = "d")]
    Debit,
}

impl Kind {
    /// The one-letter code used on the wire and in storage.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Credit => "c",
            Kind::Debit => "d",
        }
    }

    /// Parses the one-letter code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "c" => Some(Kind::Credit),
            "d" => Some(Kind::Debit),
            _ => None,
        }
    }
}

/// A transaction request that obeys every rule of the contract. It can only be made by
/// [`NewTransaction::from_json`], so holding one proves the body was valid.
#[derive(Debug, Clone, PartialEq, Eq, Validate)]
pub struct NewTransaction {
    #[validate(range(
        min = 1,
        max = MAX_AMOUNT,
        message = "valor must be an integer from 1 to 9007199254740991 (cents)"
    ))]
    amount: i64,
    kind: Kind,
    /// Counted in characters (Unicode scalar values), not bytes.
    #[validate(length(min = 1, max = 10, message = "descricao must have 1 to 10 characters"))]
    description: String,
}

impl NewTransaction {
    /// Reads and validates a request body: the JSON types here, the ranges by `validator`.
    pub fn from_json(body: &[u8]) -> Result<Self, InvalidTransaction> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid("the body is empty; expected a JSON object"));
        }
        let fields = BodyFields::read(body)?;
        let transaction = Self {
            amount: amount(fields.valor.as_ref())?,
            kind: kind(fields.tipo.as_ref())?,
            description: description(fields.descricao)?,
        };
        transaction.validate().map_err(|errors| {
            let message = errors
                .field_errors()
                .values()
                .flat_map(|errors| errors.iter())
                .filter_map(|error| error.message.as_deref())
                .collect::<Vec<_>>()
                .join("; ");
            InvalidTransaction(message)
        })?;
        Ok(transaction)
    }

    /// `valor`: the amount in cents, from 1 to [`MAX_AMOUNT`].
    pub fn amount(&self) -> i64 {
        self.amount
    }

    /// `tipo`: credit or debit.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// `descricao`: 1 to 10 characters, no NUL.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// How the transaction moves the balance: `+valor` for a credit, `-valor` for a debit.
    pub fn signed_amount(&self) -> i64 {
        match self.kind {
            Kind::Credit => self.amount,
            Kind::Debit => -self.amount,
        }
    }

    /// The balance after applying this transaction to `balance`, or why the rules refuse it: no
    /// lower than `-limit` (landing exactly on it is allowed), no higher than [`MAX_BALANCE`].
    pub fn balance_after(&self, balance: i64, limit: i64) -> Result<i64, Refused> {
        moved_balance(balance, limit, self.signed_amount()).ok_or(self.refusal())
    }

    /// Why the rules refuse this transaction when it does not fit: a debit past the limit, a
    /// credit past the ceiling.
    pub fn refusal(&self) -> Refused {
        match self.kind {
            Kind::Debit => Refused::InsufficientLimit,
            Kind::Credit => Refused::BalanceCeiling,
        }
    }
}

/// The three fields of a transaction body, each as the JSON value it holds (the last one when a
/// key repeats, as `serde_json::Map` keeps it).
#[derive(Debug, Default)]
struct BodyFields {
    valor: Option<Value>,
    tipo: Option<Value>,
    descricao: Option<Value>,
}

impl BodyFields {
    /// Reads the fields straight from the body, without building the whole object as a
    /// `serde_json::Map` (its keys, its nodes and its lookups were the largest part of a
    /// request's parsing, `scripts/bench-instructions`). Any other field is parsed as a `Value`
    /// and dropped, so a body is accepted exactly when it is one JSON object, as before. A body
    /// this reading refuses is parsed again as a `Value`, only to word the error as before.
    fn read(body: &[u8]) -> Result<Self, InvalidTransaction> {
        if let Ok(fields) = serde_json::from_slice::<Self>(body) {
            return Ok(fields);
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| InvalidTransaction(format!("the body is not valid JSON: {err}")))?;
        let Value::Object(mut fields) = value else {
            return Err(invalid("the body must be a JSON object"));
        };
        Ok(Self {
            valor: fields.remove("valor"),
            tipo: fields.remove("tipo"),
            descricao: fields.remove("descricao"),
        })
    }
}

impl<'de> Deserialize<'de> for BodyFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(BodyFieldsVisitor)
    }
}

struct BodyFieldsVisitor;

impl<'de> Visitor<'de> for BodyFieldsVisitor {
    type Value = BodyFields;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyFields, A::Error> {
        let mut fields = BodyFields::default();
        while let Some(key) = map.next_key::<FieldName>()? {
            let slot = match key {
                FieldName::Valor => &mut fields.valor,
                FieldName::Tipo => &mut fields.tipo,
                FieldName::Descricao => &mut fields.descricao,
                FieldName::Other => {
                    map.next_value::<Value>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(fields)
    }
}

/// A key of a transaction body, matched where it lies in the body (serde_json copies only a key
/// with escapes).
enum FieldName {
    Valor,
    Tipo,
    Descricao,
    Other,
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldNameVisitor)
    }
}

struct FieldNameVisitor;

impl Visitor<'_> for FieldNameVisitor {
    type Value = FieldName;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<FieldName, E> {
        Ok(match key {
            "valor" => FieldName::Valor,
            "tipo" => FieldName::Tipo,
            "descricao" => FieldName::Descricao,
            _ => FieldName::Other,
        })
    }
}

fn amount(value: Option<&Value>) -> Result<i64, InvalidTransaction> {
    match value {
        None | Some(Value::Null) => Err(invalid("valor is required")),
        Some(Value::Number(number)) => number.as_i64().ok_or_else(|| {
            InvalidTransaction(format!(
                "valor must be an integer from 1 to {MAX_AMOUNT} (cents), got {number}"
            ))
        }),
        Some(other) => Err(InvalidTransaction(format!(
            "valor must be a JSON integer, got {}",
            json_kind(other)
        ))),
    }
}

fn kind(value: Option<&Value>) -> Result<Kind, InvalidTransaction> {
    match value {
        None | Some(Value::Null) => Err(invalid("tipo is required")),
        Some(Value::String(code)) => Kind::from_code(code)
            .ok_or_else(|| invalid("tipo must be \"c\" (credit) or \"d\" (debit)")),
        Some(other) => Err(InvalidTransaction(format!(
            "tipo must be \"c\" or \"d\", got {}",
            json_kind(other)
        ))),
    }
}

fn description(value: Option<Value>) -> Result<String, InvalidTransaction> {
    match value {
        None | Some(Value::Null) => Err(invalid("descricao is required")),
        // SQLite's length() stops at a NUL, so the table's CHECK would refuse such a description
        // as a 500 after validation passed (found by schemathesis); refuse it here, as a 422.
        Some(Value::String(text)) if text.contains('\0') => {
            Err(invalid("descricao must not contain NUL (U+0000)"))
        }
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(InvalidTransaction(format!(
            "descricao must be a string, got {}",
            json_kind(&other)
        ))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(message: &str) -> InvalidTransaction {
    InvalidTransaction(message.to_owned())
}

/// Why a transaction body was refused, in words meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTransaction(pub String);

/// `balance` moved by `signed`, if the result stays within `[-limit, MAX_BALANCE]`.
fn moved_balance(balance: i64, limit: i64, signed: i64) -> Option<i64> {
    balance
        .checked_add(signed)
        .filter(|after| (-limit..=MAX_BALANCE).contains(after))
}

/// Why a valid transaction was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("insufficient limit: the debit would take the balance below -limite")]
    InsufficientLimit,
    #[error("the credit would take the balance above 9007199254740991")]
    BalanceCeiling,
}

/// What became of a valid transaction: applied, or refused by the rules with nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Applied(Applied),
    Refused(Refused),
}

/// The answer to an accepted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Applied {
    /// The client's credit limit.
    #[serde(rename = "limite")]
    pub limit: i64,
    /// The balance right after the transaction.
    #[serde(rename = "saldo")]
    pub balance: i64,
}

/// A client's bank statement (`extrato`): balance and the last [`STATEMENT_LENGTH`]
/// transactions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Statement {
    #[serde(rename = "saldo")]
    pub balance: StatementBalance,
    #[serde(rename = "ultimas_transacoes")]
    pub last_transactions: Vec<StatementEntry>,
}

/// The balance part of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatementBalance {
    pub total: i64,
    /// When the statement was read, RFC 3339 UTC (millisecond precision).
    #[serde(rename = "data_extrato")]
    #[schema(format = DateTime)]
    pub read_at: String,
    #[serde(rename = "limite")]
    pub limit: i64,
}

/// One listed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatementEntry {
    #[serde(rename = "valor")]
    pub amount: i64,
    #[serde(rename = "tipo")]
    pub kind: Kind,
    #[serde(rename = "descricao")]
    pub description: String,
    /// When it was committed, RFC 3339 UTC.
    #[serde(rename = "realizada_em")]
    #[schema(format = DateTime)]
    pub committed_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the fields were read as before `BodyFields` read them directly: the whole body as a
    /// `serde_json::Map`, then a lookup per field.
    fn fields_through_a_map(body: &[u8]) -> Result<[Option<Value>; 3], String> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut map)) => {
                Ok(["valor", "tipo", "descricao"].map(|key| map.remove(key)))
            }
            Ok(_) => Err("the body must be a JSON object".to_owned()),
            Err(err) => Err(format!("the body is not valid JSON: {err}")),
        }
    }

    #[test]
    fn the_fields_are_read_as_the_whole_object_would_give_them() {
        let bodies: &[&str] = &[
            r#"{"valor": 1, "tipo": "c", "descricao": "abc"}"#,
            r#"{"descricao": "abc", "tipo": "d", "valor": 10}"#,
            r#"{"valor": 1, "valor": "x", "tipo": "c", "tipo": null, "descricao": 1.5}"#,
            r#"{"\u0076alor": 7, "ti\u0070o": "c", "descricao": "\u0000\n"}"#,
            r#"{"outro": {"a": [1, 2, {"b": null}]}, "valor": -3, "x": 1e400}"#,
            r#"{"valor": 18446744073709551616, "tipo": ["c"], "descricao": {}}"#,
            r#"{}"#,
            r#"{"valor": 1,}"#,
            r#"{"valor": 1} {"valor": 2}"#,
            r#"{"valor": 1"#,
            r#"[1, 2"#,
            r#"[{"valor": 1}]"#,
            r#""valor""#,
            r#"12"#,
            r#"null"#,
            r#"{"valor": 1, "valor": 2}"#,
            "\u{feff}{}",
            r#"{"valor": 1e2, "tipo": "c", "descricao": "  "}   "#,
            r#"{"extra": [1, {"y": "z"}], "valor": 2, "tipo": "c", "descricao": "x", "n": null}"#,
        ];
        for body in bodies {
            // The direct reading alone (not its fallback) accepts what the map reading accepts.
            assert_eq!(
                serde_json::from_slice::<BodyFields>(body.as_bytes()).is_ok(),
                fields_through_a_map(body.as_bytes()).is_ok(),
                "body {body}"
            );
            let direct = BodyFields::read(body.as_bytes())
                .map(|fields| [fields.valor, fields.tipo, fields.descricao])
                .map_err(|err| err.0);
            assert_eq!(direct, fields_through_a_map(body.as_bytes()), "body {body}");
        }
        let deep = format!("{{\"x\": {}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            BodyFields::read(deep.as_bytes())
                .map(|_| ())
                .map_err(|err| err.0),
            fields_through_a_map(deep.as_bytes()).map(|_| ()),
            "nesting past serde_json's limit"
        );
    }

    fn transaction(valor: i64, tipo: &str) -> NewTransaction {
        let body = format!(r#"{{"valor": {valor}, "tipo": "{tipo}", "descricao": "x"}}"#);
        NewTransaction::from_json(body.as_bytes()).expect("valid")
    }

    #[test]
    fn a_balance_may_land_on_the_limit_and_on_the_ceiling_but_not_past_them() {
        assert_eq!(transaction(1000, "d").balance_after(0, 1000), Ok(-1000));
        assert_eq!(
            transaction(1001, "d").balance_after(0, 1000),
            Err(Refused::InsufficientLimit)
        );
        assert_eq!(transaction(1, "c").balance_after(-1000, 1000), Ok(-999));
        assert_eq!(
            transaction(1, "c").balance_after(MAX_BALANCE - 1, 0),
            Ok(MAX_BALANCE)
        );
        assert_eq!(
            transaction(1, "c").balance_after(MAX_BALANCE, 0),
            Err(Refused::BalanceCeiling)
        );
        assert_eq!(moved_balance(i64::MAX, 0, 1), None, "no overflow");
    }

    #[test]
    fn a_valid_body_becomes_a_transaction() {
        let transaction =
            NewTransaction::from_json(br#"{"valor": 1000, "tipo": "d", "descricao": "pix"}"#)
                .expect("valid");
        assert_eq!(transaction.amount(), 1000);
        assert_eq!(transaction.kind(), Kind::Debit);
        assert_eq!(transaction.description(), "pix");
        assert_eq!(transaction.signed_amount(), -1000);
    }

    #[test]
    fn descricao_is_counted_in_characters_not_bytes() {
        let ten = r#"{"valor": 1, "tipo": "c", "descricao": "áéíóúâêôãõ"}"#;
        assert!(NewTransaction::from_json(ten.as_bytes()).is_ok());
        let eleven = r#"{"valor": 1, "tipo": "c", "descricao": "áéíóúâêôãõç"}"#;
        assert!(NewTransaction::from_json(eleven.as_bytes()).is_err());
    }

    #[test]
    fn every_invalid_body_is_refused_with_a_message_naming_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            ("null", "JSON object"),
            (r#"{"tipo": "c", "descricao": "x"}"#, "valor is required"),
            (
                r#"{"valor": null, "tipo": "c", "descricao": "x"}"#,
                "valor is required",
            ),
            (
                r#"{"valor": 1.2, "tipo": "c", "descricao": "x"}"#,
                "valor must be an integer",
            ),
            (
                r#"{"valor": 1.0, "tipo": "c", "descricao": "x"}"#,
                "valor must be an integer",
            ),
            (
                r#"{"valor": "10", "tipo": "c", "descricao": "x"}"#,
                "got a string",
            ),
            (
                r#"{"valor": 0, "tipo": "c", "descricao": "x"}"#,
                "valor must be",
            ),
            (
                r#"{"valor": -5, "tipo": "c", "descricao": "x"}"#,
                "valor must be",
            ),
            (
                r#"{"valor": 9007199254740992, "tipo": "c", "descricao": "x"}"#,
                "valor must be",
            ),
            (
                r#"{"valor": 1e400, "tipo": "c", "descricao": "x"}"#,
                "not valid JSON",
            ),
            (
                r#"{"valor": 100000000000000000000000, "tipo": "c", "descricao": "x"}"#,
                "valor must be an integer",
            ),
            (r#"{"valor": 1, "descricao": "x"}"#, "tipo is required"),
            (
                r#"{"valor": 1, "tipo": "x", "descricao": "x"}"#,
                "tipo must be",
            ),
            (
                r#"{"valor": 1, "tipo": "C", "descricao": "x"}"#,
                "tipo must be",
            ),
            (
                r#"{"valor": 1, "tipo": 1, "descricao": "x"}"#,
                "tipo must be",
            ),
            (r#"{"valor": 1, "tipo": "c"}"#, "descricao is required"),
            (
                r#"{"valor": 1, "tipo": "c", "descricao": null}"#,
                "descricao is required",
            ),
            (
                r#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
                "1 to 10 characters",
            ),
            (
                r#"{"valor": 1, "tipo": "c", "descricao": 5}"#,
                "must be a string",
            ),
            (
                r#"{"valor": 1, "tipo": "c", "descricao": "\u0000abc"}"#,
                "must not contain NUL",
            ),
            (
                r#"{"valor": 1, "tipo": "c", "descricao": "0123456789abcdefghijklmno"}"#,
                "1 to 10 characters",
            ),
        ];
        for (body, expected) in cases {
            let err = NewTransaction::from_json(body.as_bytes())
                .expect_err(&format!("{body:?} must be refused"));
            assert!(
                err.0.contains(expected),
                "{body:?}: expected {expected:?} in {:?}",
                err.0
            );
        }
    }

    #[test]
    fn client_ids_that_are_not_integers_name_no_client() {
        assert_eq!(ClientId::parse("1"), Some(ClientId(1)));
        assert_eq!(ClientId::parse("abc"), None);
        assert_eq!(ClientId::parse("1.5"), None);
        assert_eq!(ClientId::parse("99999999999999999999"), None);
    }
}
