//! The traffic mix of the official test: 22 debits : 11 credits : 1 statement.
//!
//! The mix is a deterministic 34-slot cycle indexed by the request's sequence number rather than
//! a weighted coin: any 34 consecutive requests hold exactly the official proportions, so a short
//! run is as faithful as a long one and the kinds are evenly interleaved (a credit every third
//! slot) instead of arriving in random clumps. Everything else about a request is random, as in
//! the official test: client 1–5 uniformly, `valor` 1–10000, a `descricao` of 10 alphanumerics.

use rand::{Rng, distr::Alphanumeric};
use serde::Serialize;

use crate::contract::{CLIENT_LIMITS, ClientId};

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// `POST /clientes/{id}/transacoes` with `tipo` "d".
    Debit,
    /// `POST /clientes/{id}/transacoes` with `tipo` "c".
    Credit,
    /// `GET /clientes/{id}/extrato`.
    Statement,
}

impl RequestKind {
    /// Every kind, in report order.
    pub const ALL: [RequestKind; 3] = [
        RequestKind::Debit,
        RequestKind::Credit,
        RequestKind::Statement,
    ];

    /// The lowercase name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Debit => "debit",
            RequestKind::Credit => "credit",
            RequestKind::Statement => "statement",
        }
    }

    /// Position in [`RequestKind::ALL`], for per-kind arrays.
    pub fn index(self) -> usize {
        match self {
            RequestKind::Debit => 0,
            RequestKind::Credit => 1,
            RequestKind::Statement => 2,
        }
    }

    /// The `tipo` field of a transaction of this kind (`None` for a statement).
    pub fn tipo(self) -> Option<&'static str> {
        match self {
            RequestKind::Debit => Some("d"),
            RequestKind::Credit => Some("c"),
            RequestKind::Statement => None,
        }
    }
}

use RequestKind::{Credit as C, Debit as D, Statement as S};

/// One cycle of the official mix: a credit in every third slot, the statement last.
pub const CYCLE: [RequestKind; 34] = [
    D, D, C, D, D, C, D, D, C, D, D, C, D, D, C, D, D, C, //
    D, D, C, D, D, C, D, D, C, D, D, C, D, D, C, S,
];

/// The smallest and largest `valor` the load sends, in cents.
pub const AMOUNT_RANGE: std::ops::RangeInclusive<i64> = 1..=10_000;

/// Length of the random `descricao`.
pub const DESCRIPTION_LEN: usize = 10;

/// The kind of the request with sequence number `seq`.
pub fn kind_at(seq: u64) -> RequestKind {
    // The remainder is below 34, so the cast cannot truncate.
    CYCLE[(seq % CYCLE.len() as u64) as usize]
}

/// One request, decided before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    /// What it does.
    pub kind: RequestKind,
    /// Which client it targets.
    pub client: ClientId,
    /// `valor` in cents; 0 for a statement.
    pub amount: i64,
    /// `descricao`; empty for a statement.
    pub description: String,
}

impl PlannedRequest {
    /// The effect the transaction has on the balance if applied: `+valor` for a credit,
    /// `-valor` for a debit, 0 for a statement.
    pub fn signed_amount(&self) -> i64 {
        match self.kind {
            RequestKind::Debit => -self.amount,
            RequestKind::Credit => self.amount,
            RequestKind::Statement => 0,
        }
    }

    /// The JSON body of the transaction (`None` for a statement).
    pub fn body(&self) -> Option<serde_json::Value> {
        self.kind.tipo().map(|tipo| {
            serde_json::json!({ "valor": self.amount, "tipo": tipo, "descricao": self.description })
        })
    }
}

/// Plans request number `seq`: its kind from the cycle, the rest drawn from `rng`.
pub fn plan(seq: u64, rng: &mut impl Rng) -> PlannedRequest {
    let kind = kind_at(seq);
    let client = CLIENT_LIMITS[rng.random_range(0..CLIENT_LIMITS.len())].0;
    match kind {
        RequestKind::Statement => PlannedRequest {
            kind,
            client,
            amount: 0,
            description: String::new(),
        },
        RequestKind::Debit | RequestKind::Credit => PlannedRequest {
            kind,
            client,
            amount: rng.random_range(AMOUNT_RANGE),
            description: rng
                .sample_iter(Alphanumeric)
                .take(DESCRIPTION_LEN)
                .map(char::from)
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    fn count(kinds: impl IntoIterator<Item = RequestKind>) -> [usize; 3] {
        let mut counts = [0; 3];
        for kind in kinds {
            counts[kind.index()] += 1;
        }
        counts
    }

    #[test]
    fn one_cycle_holds_exactly_22_debits_11_credits_and_1_statement() {
        assert_eq!(count(CYCLE), [22, 11, 1]);
    }

    #[test]
    fn any_34_consecutive_requests_hold_the_exact_ratio() {
        for start in 0..200u64 {
            assert_eq!(
                count((start..start + 34).map(kind_at)),
                [22, 11, 1],
                "window starting at {start}"
            );
        }
    }

    #[test]
    fn a_large_sample_holds_the_ratio_exactly() {
        let cycles = 10_000u64;
        assert_eq!(
            count((0..34 * cycles).map(kind_at)),
            [22 * cycles as usize, 11 * cycles as usize, cycles as usize]
        );
    }

    #[test]
    fn kinds_are_interleaved_not_clumped() {
        // No more than two debits in a row anywhere in the cycle, including across its wrap-around.
        let longest_debit_run = (0..68u64)
            .map(kind_at)
            .fold((0, 0), |(run, longest), kind| {
                let run = if kind == RequestKind::Debit {
                    run + 1
                } else {
                    0
                };
                (run, longest.max(run))
            })
            .1;
        assert_eq!(longest_debit_run, 2);
    }

    #[test]
    fn planned_requests_stay_within_the_official_ranges() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut clients_seen = [false; 5];
        for seq in 0..5_000 {
            let request = plan(seq, &mut rng);
            assert_eq!(request.kind, kind_at(seq));
            assert!((1..=5).contains(&request.client), "{request:?}");
            clients_seen[request.client as usize - 1] = true;
            match request.kind {
                RequestKind::Statement => {
                    assert_eq!((request.amount, request.description.as_str()), (0, ""))
                }
                _ => {
                    assert!(AMOUNT_RANGE.contains(&request.amount), "{request:?}");
                    assert_eq!(request.description.chars().count(), DESCRIPTION_LEN);
                    assert!(
                        request
                            .description
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric()),
                        "{request:?}"
                    );
                }
            }
        }
        assert_eq!(clients_seen, [true; 5], "every client is drawn");
    }

    #[test]
    fn the_body_carries_the_tipo_of_the_kind_and_the_signed_amount_follows_it() {
        let debit = PlannedRequest {
            kind: RequestKind::Debit,
            client: 1,
            amount: 42,
            description: "abc".into(),
        };
        assert_eq!(
            debit.body(),
            Some(serde_json::json!({"valor": 42, "tipo": "d", "descricao": "abc"}))
        );
        assert_eq!(debit.signed_amount(), -42);
        let credit = PlannedRequest {
            kind: RequestKind::Credit,
            ..debit.clone()
        };
        assert_eq!(credit.signed_amount(), 42);
        let statement = PlannedRequest {
            kind: RequestKind::Statement,
            ..debit
        };
        assert_eq!((statement.body(), statement.signed_amount()), (None, 0));
    }
}
