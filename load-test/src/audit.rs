//! The end-of-run audit: every client's balance must have moved by exactly what the server accepted.
//!
//! Checking each answer on its own cannot catch a server that answers `200` with a plausible
//! balance and then forgets the write; only comparing the final balances with the sum of every
//! accepted amount can. The [`Ledger`] keeps that sum per client. Concurrency makes one thing
//! ambiguous: a transaction that timed out, broke at transport level or got a 5xx may or may not
//! have been applied. Those are kept apart as *unknown*, and the audit fails only when the
//! difference cannot be explained by some subset of them being applied — checked exactly (a
//! subset sum) rather than with a min/max bound, so one unknown debit of 5000 cannot excuse a
//! missing 100.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contract::{ClientId, client_ids};

/// What a transaction answer says about whether it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    /// `2xx`: the server says it applied it.
    Applied,
    /// `4xx`: refused; the contract says a refused transaction leaves no trace.
    NotApplied,
    /// No answer, or an answer (5xx, 1xx, 3xx) that does not say.
    Unknown,
}

impl WriteEffect {
    /// The effect implied by an answer's status, or by having no answer (`None`).
    pub fn from_status(status: Option<u16>) -> Self {
        match status {
            Some(200..=299) => WriteEffect::Applied,
            Some(400..=499) => WriteEffect::NotApplied,
            _ => WriteEffect::Unknown,
        }
    }
}

/// Per-client record of what the tester sent and what the server said about it.
#[derive(Debug, Clone, Default)]
struct ClientLedger {
    accepted_delta: i64,
    accepted: u64,
    refused: u64,
    /// Signed amounts (credit +, debit -) of transactions whose fate is unknown.
    unknown: Vec<i64>,
}

/// The sum of accepted amounts per client, plus the transactions whose fate is unknown.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    clients: BTreeMap<ClientId, ClientLedger>,
}

impl Ledger {
    /// Records a transaction of `signed_amount` (credit +, debit -) on `client` with `effect`.
    pub fn record(&mut self, client: ClientId, signed_amount: i64, effect: WriteEffect) {
        let entry = self.clients.entry(client).or_default();
        match effect {
            WriteEffect::Applied => {
                entry.accepted_delta += signed_amount;
                entry.accepted += 1;
            }
            WriteEffect::NotApplied => entry.refused += 1,
            WriteEffect::Unknown => entry.unknown.push(signed_amount),
        }
    }

    /// How many transactions have an unknown fate, over all clients.
    pub fn unknown_count(&self) -> usize {
        self.clients.values().map(|c| c.unknown.len()).sum()
    }
}

/// How one client's balance compares with the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientVerdict {
    /// The balance moved by exactly the accepted amounts.
    Exact,
    /// It did not, but some subset of the unknown transactions being applied explains it.
    ExplainedByUnknown,
    /// No subset of the unknown transactions explains the difference: writes were lost,
    /// duplicated, or applied without being accepted.
    Unexplained,
    /// The balance could not be read at the start or at the end.
    Unreadable,
}

/// The audit of one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientAudit {
    /// The client.
    pub client: ClientId,
    /// Balance read before the load (`None` if it could not be read).
    pub start_saldo: Option<i64>,
    /// Balance read after the load (`None` if it could not be read).
    pub end_saldo: Option<i64>,
    /// Sum of the amounts the server accepted (`200`), credits positive.
    pub accepted_delta: i64,
    /// How many transactions the server accepted.
    pub accepted: u64,
    /// How many it refused (4xx).
    pub refused: u64,
    /// `end_saldo - start_saldo`.
    pub actual_delta: Option<i64>,
    /// `actual_delta - accepted_delta`: what the accepted amounts do not account for.
    pub discrepancy: Option<i64>,
    /// How many transactions have an unknown fate.
    pub unknown: usize,
    /// The verdict.
    pub verdict: ClientVerdict,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// True when every client is `exact` or `explained_by_unknown` and the start state was as expected.
    pub passed: bool,
    /// Whether `/reset` was posted first (so every start balance had to be 0).
    pub after_reset: bool,
    /// Balances that could not be read, and start balances that contradict the expected start state.
    pub problems: Vec<String>,
    /// One entry per client.
    pub clients: Vec<ClientAudit>,
}

/// A client's balance as read from its statement, or why it could not be read.
pub type BalanceRead = Result<i64, String>;

/// Compares the balances read before (`start`) and after (`end`) the load with the `ledger`.
/// With `after_reset`, every start balance must also be 0.
pub fn audit(
    start: &BTreeMap<ClientId, BalanceRead>,
    end: &BTreeMap<ClientId, BalanceRead>,
    ledger: &Ledger,
    after_reset: bool,
) -> AuditReport {
    let empty = ClientLedger::default();
    let mut problems = Vec::new();
    let clients: Vec<ClientAudit> = client_ids()
        .map(|client| {
            let record = ledger.clients.get(&client).unwrap_or(&empty);
            let mut read =
                |reads: &BTreeMap<ClientId, BalanceRead>, when: &str| match reads.get(&client) {
                    Some(Ok(saldo)) => Some(*saldo),
                    Some(Err(why)) => {
                        problems.push(format!("client {client}: {when} balance unreadable: {why}"));
                        None
                    }
                    None => {
                        problems.push(format!("client {client}: {when} balance was not read"));
                        None
                    }
                };
            let start_saldo = read(start, "start");
            let end_saldo = read(end, "end");
            if after_reset && let Some(saldo) = start_saldo.filter(|&s| s != 0) {
                problems.push(format!(
                    "client {client}: saldo {saldo} right after /reset, expected 0"
                ));
            }
            let actual_delta = start_saldo.zip(end_saldo).map(|(s, e)| e - s);
            let discrepancy = actual_delta.map(|actual| actual - record.accepted_delta);
            let verdict = match discrepancy {
                None => ClientVerdict::Unreadable,
                Some(0) => ClientVerdict::Exact,
                Some(gap) if subset_sums_to(&record.unknown, gap) => {
                    ClientVerdict::ExplainedByUnknown
                }
                Some(_) => ClientVerdict::Unexplained,
            };
            ClientAudit {
                client,
                start_saldo,
                end_saldo,
                accepted_delta: record.accepted_delta,
                accepted: record.accepted,
                refused: record.refused,
                actual_delta,
                discrepancy,
                unknown: record.unknown.len(),
                verdict,
            }
        })
        .collect();
    let passed = problems.is_empty()
        && clients.iter().all(|c| {
            matches!(
                c.verdict,
                ClientVerdict::Exact | ClientVerdict::ExplainedByUnknown
            )
        });
    AuditReport {
        passed,
        after_reset,
        problems,
        clients,
    }
}

/// Largest span of reachable sums the exact check will hold in memory (64 Mi bits = 8 MiB).
/// Beyond it the audit falls back to the necessary min/max bound.
const EXACT_SPAN_LIMIT: u64 = 1 << 26;

/// Whether some subset of `amounts` (each used at most once) sums to `target`.
pub fn subset_sums_to(amounts: &[i64], target: i64) -> bool {
    if target == 0 {
        return true; // the empty subset
    }
    let lowest: i64 = amounts.iter().filter(|&&a| a < 0).sum();
    let highest: i64 = amounts.iter().filter(|&&a| a > 0).sum();
    if target < lowest || target > highest {
        return false;
    }
    let span = highest.abs_diff(lowest) + 1;
    if span > EXACT_SPAN_LIMIT {
        // Too many unknowns to enumerate: within the bound is the best that can be said.
        return true;
    }
    // Bitset of reachable sums, bit k standing for the sum `lowest + k`. Start from the empty
    // subset (sum 0) and, for each amount, add a copy of the set shifted by it.
    let span = span as usize; // at most EXACT_SPAN_LIMIT, fits any usize we run on
    let mut reachable = BitSet::new(span);
    reachable.set(lowest.unsigned_abs() as usize);
    for &amount in amounts.iter().filter(|&&a| a != 0) {
        reachable.or_shifted(amount);
    }
    reachable.get(target.abs_diff(lowest) as usize)
}

/// A fixed-size bitset with the one operation the subset sum needs.
struct BitSet {
    words: Vec<u64>,
    len: usize,
}

impl BitSet {
    fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    fn get(&self, bit: usize) -> bool {
        bit < self.len && self.words[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// `self |= self shifted by `by` bits` (towards higher bits when positive), in place. Bits
    /// shifted past either end fall off, which is right: no subset sums outside the span.
    fn or_shifted(&mut self, by: i64) {
        let n = self.words.len();
        let word_shift = (by.unsigned_abs() / 64) as usize;
        let bit_shift = (by.unsigned_abs() % 64) as u32;
        if word_shift >= n {
            return;
        }
        let words = &mut self.words;
        if by > 0 {
            // Word i takes its bits from words i - word_shift and the one below it; walking
            // downwards reads them before they are updated, so every amount is used at most once.
            for i in (word_shift..n).rev() {
                let mut bits = words[i - word_shift] << bit_shift;
                if bit_shift != 0 && i > word_shift {
                    bits |= words[i - word_shift - 1] >> (64 - bit_shift);
                }
                words[i] |= bits;
            }
        } else {
            // Mirror image: bits come from higher words, so walk upwards.
            for i in 0..n - word_shift {
                let mut bits = words[i + word_shift] >> bit_shift;
                if bit_shift != 0 && i + word_shift + 1 < n {
                    bits |= words[i + word_shift + 1] << (64 - bit_shift);
                }
                words[i] |= bits;
            }
        }
        // Keep bits beyond `len` clear so a later downward shift cannot bring them into range.
        let tail = self.len % 64;
        if tail != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << tail) - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balances(values: [Option<i64>; 5]) -> BTreeMap<ClientId, BalanceRead> {
        client_ids()
            .zip(values)
            .map(|(client, value)| {
                (
                    client,
                    value.ok_or_else(|| "statement answered 500".to_owned()),
                )
            })
            .collect()
    }

    fn brute_force(amounts: &[i64], target: i64) -> bool {
        (0u32..1 << amounts.len()).any(|mask| {
            amounts
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, a)| a)
                .sum::<i64>()
                == target
        })
    }

    #[test]
    fn subset_sum_agrees_with_brute_force() {
        let sets: [&[i64]; 6] = [
            &[],
            &[5000],
            &[-3, 7, 100],
            &[-10_000, -1, 64, 65, 129, 9_999],
            &[1, 1, 1, -2, 63, -63, 64, -64, 127],
            &[-4096, 4095, 4097, -1, 1],
        ];
        for amounts in sets {
            let lowest: i64 = amounts.iter().filter(|&&a| a < 0).sum();
            let highest: i64 = amounts.iter().filter(|&&a| a > 0).sum();
            for target in lowest - 3..=highest + 3 {
                assert_eq!(
                    subset_sums_to(amounts, target),
                    brute_force(amounts, target),
                    "amounts {amounts:?}, target {target}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_amount_only_excuses_a_gap_it_can_account_for() {
        assert!(subset_sums_to(&[-5000], -5000));
        assert!(
            !subset_sums_to(&[-5000], -100),
            "a bound check would wrongly accept this"
        );
        assert!(subset_sums_to(&[-5000, 300, 200], -4500));
    }

    #[test]
    fn a_balance_that_moved_by_exactly_the_accepted_amounts_passes() {
        let mut ledger = Ledger::default();
        ledger.record(1, 500, WriteEffect::Applied);
        ledger.record(1, -200, WriteEffect::Applied);
        ledger.record(1, -99_999, WriteEffect::NotApplied);
        let report = audit(
            &balances([Some(0); 5]),
            &balances([Some(300), Some(0), Some(0), Some(0), Some(0)]),
            &ledger,
            true,
        );
        assert!(report.passed, "{report:?}");
        assert_eq!(report.clients[0].verdict, ClientVerdict::Exact);
        assert_eq!(
            (report.clients[0].accepted, report.clients[0].refused),
            (2, 1)
        );
    }

    #[test]
    fn a_lost_write_fails_the_audit() {
        let mut ledger = Ledger::default();
        ledger.record(2, 700, WriteEffect::Applied);
        ledger.record(2, -100, WriteEffect::Applied);
        // The server forgot the credit of 700.
        let end = balances([Some(0), Some(-100), Some(0), Some(0), Some(0)]);
        let report = audit(&balances([Some(0); 5]), &end, &ledger, true);
        assert!(!report.passed);
        let client = &report.clients[1];
        assert_eq!(client.verdict, ClientVerdict::Unexplained);
        assert_eq!(
            (client.actual_delta, client.discrepancy),
            (Some(-100), Some(-700))
        );
    }

    #[test]
    fn unknown_transactions_explain_a_gap_only_when_a_subset_of_them_matches_it() {
        let mut ledger = Ledger::default();
        ledger.record(3, 1000, WriteEffect::Applied);
        ledger.record(3, -400, WriteEffect::Unknown);
        ledger.record(3, 250, WriteEffect::Unknown);
        let start = balances([Some(0); 5]);
        let explained = audit(
            &start,
            &balances([Some(0), Some(0), Some(850), Some(0), Some(0)]),
            &ledger,
            true,
        );
        assert!(explained.passed);
        assert_eq!(
            explained.clients[2].verdict,
            ClientVerdict::ExplainedByUnknown
        );
        assert_eq!(explained.clients[2].unknown, 2);
        let unexplained = audit(
            &start,
            &balances([Some(0), Some(0), Some(900), Some(0), Some(0)]),
            &ledger,
            true,
        );
        assert!(!unexplained.passed);
        assert_eq!(unexplained.clients[2].verdict, ClientVerdict::Unexplained);
    }

    #[test]
    fn without_reset_the_delta_from_the_start_balance_is_audited() {
        let mut ledger = Ledger::default();
        ledger.record(4, -30, WriteEffect::Applied);
        let start = balances([Some(5), Some(6), Some(7), Some(1_000), Some(9)]);
        let end = balances([Some(5), Some(6), Some(7), Some(970), Some(9)]);
        assert!(audit(&start, &end, &ledger, false).passed);
        // The same non-zero start right after a reset means the reset did not reset.
        let after_reset = audit(&start, &end, &ledger, true);
        assert!(!after_reset.passed);
        assert_eq!(after_reset.problems.len(), 5);
    }

    #[test]
    fn an_unreadable_balance_fails_the_audit() {
        let report = audit(
            &balances([Some(0); 5]),
            &balances([Some(0), None, Some(0), Some(0), Some(0)]),
            &Ledger::default(),
            true,
        );
        assert!(!report.passed);
        assert_eq!(report.clients[1].verdict, ClientVerdict::Unreadable);
        assert_eq!(
            report.problems,
            ["client 2: end balance unreadable: statement answered 500"]
        );
    }

    #[test]
    fn write_effects_follow_the_status_class() {
        assert_eq!(WriteEffect::from_status(Some(200)), WriteEffect::Applied);
        assert_eq!(WriteEffect::from_status(Some(422)), WriteEffect::NotApplied);
        assert_eq!(WriteEffect::from_status(Some(503)), WriteEffect::Unknown);
        assert_eq!(WriteEffect::from_status(None), WriteEffect::Unknown);
    }
}
