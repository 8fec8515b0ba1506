//! How one request ended: the [`Completed`] record each request of the load leaves, its
//! [`Outcome`] as judged against the rules of `validate`, and the [`StatusKey`] it is counted
//! under.
//!
//! These are the facts that `stats` (the run's totals) and `series` (the same per second) both
//! fold in. Both depend on this module, and `stats` on `series` (its recorder keeps the series);
//! nothing here depends on either.

use std::time::Duration;

use crate::{
    client::CallError,
    contract::ClientId,
    mix::RequestKind,
    validate::{Problem, check_statement, check_transaction},
};

/// Why a request did not count as OK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer at all.
    NoAnswer {
        /// Timeout or transport error.
        error: CallError,
    },
    /// An answer that breaks the contract.
    Inconsistent {
        /// The status received.
        status: u16,
        /// The rule broken.
        problem: Problem,
    },
}

impl Failure {
    /// The failure's reason as a short stable name (used as a JSON key).
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::NoAnswer {
                error: CallError::Timeout,
            } => "timeout",
            Failure::NoAnswer {
                error: CallError::Transport(_),
            } => "transport_error",
            Failure::Inconsistent { problem, .. } => problem.class.name(),
        }
    }

    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::NoAnswer { .. } => None,
            Failure::Inconsistent { status, .. } => Some(*status),
        }
    }

    /// Whether the server answered, and wrongly (as opposed to not answering).
    pub fn is_inconsistency(&self) -> bool {
        matches!(self, Failure::Inconsistent { .. })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoAnswer { error } => write!(f, "{error}"),
            Failure::Inconsistent { status, problem } => write!(f, "status {status}, {problem}"),
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An expected status with a body that follows every rule.
    Ok {
        /// The status received.
        status: u16,
    },
    /// Anything else.
    Failed(Failure),
}

impl Outcome {
    /// The status received, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Ok { status } => Some(*status),
            Outcome::Failed(failure) => failure.status(),
        }
    }
}

/// How a request ended, as a status: the HTTP status, or why there was none. The key of every
/// status count (`kinds.*.statuses`, the series' `responses`); a `Copy` value, so counting a
/// request allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusKey {
    /// An answer with this status (OK or not).
    Http(u16),
    /// No answer within the timeout.
    Timeout,
    /// No answer: the connection failed.
    TransportError,
}

impl StatusKey {
    /// The key of `outcome`.
    pub fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Ok { status } | Outcome::Failed(Failure::Inconsistent { status, .. }) => {
                StatusKey::Http(*status)
            }
            Outcome::Failed(Failure::NoAnswer {
                error: CallError::Timeout,
            }) => StatusKey::Timeout,
            Outcome::Failed(Failure::NoAnswer {
                error: CallError::Transport(_),
            }) => StatusKey::TransportError,
        }
    }
}

impl std::fmt::Display for StatusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusKey::Http(status) => write!(f, "{status}"),
            // The same names as `Failure::reason`.
            StatusKey::Timeout => f.write_str("timeout"),
            StatusKey::TransportError => f.write_str("transport_error"),
        }
    }
}

/// The result of one request of the load.
#[derive(Debug, Clone)]
pub struct Completed {
    /// What the request did.
    pub kind: RequestKind,
    /// Which client.
    pub client: ClientId,
    /// Effect on the balance if applied (credit +, debit -, statement 0).
    pub signed_amount: i64,
    /// From the request's start (closed loop) or its scheduled instant (open model) to its end.
    pub latency: Duration,
    /// When the request was actually sent, since the measured load began (for the series).
    pub sent_at: Duration,
    /// When its answer, or its failure, came, since the measured load began.
    pub answered_at: Duration,
    /// Bytes of the answer body.
    pub bytes: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// True for warm-up requests: they move balances (so they enter the ledger) but not the numbers.
    pub warmup: bool,
}

/// Judges an answer to a load request against the rules of `validate`.
pub fn judge(kind: RequestKind, client: ClientId, status: u16, body: &[u8]) -> Outcome {
    let verdict = match kind {
        RequestKind::Statement => check_statement(client, status, body).map(drop),
        RequestKind::Debit | RequestKind::Credit => {
            check_transaction(kind, client, status, body).map(drop)
        }
    };
    match verdict {
        Ok(()) => Outcome::Ok { status },
        Err(problem) => Outcome::Failed(Failure::Inconsistent { status, problem }),
    }
}
