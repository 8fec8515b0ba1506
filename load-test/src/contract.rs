//! The fixed facts of the contract under test (docs/CONTRACT.md): which clients exist and their limits.
//!
//! They are hard-coded rather than learned from the server on purpose: a tester that believed
//! whatever limit the server reported could not catch a server that reports the wrong one.

/// A client id as it appears in the URL.
pub type ClientId = u32;

/// The five clients that exist from the start, with their credit limits in cents.
pub const CLIENT_LIMITS: [(ClientId, i64); 5] = [
    (1, 100_000),
    (2, 80_000),
    (3, 1_000_000),
    (4, 10_000_000),
    (5, 500_000),
];

/// A client id the contract says does not exist (must answer 404).
pub const UNKNOWN_CLIENT: ClientId = 6;

/// The most entries a statement may list.
pub const STATEMENT_MAX_ENTRIES: usize = 10;

/// The longest `descricao`, in characters (Unicode scalar values).
pub const DESCRIPTION_MAX_CHARS: usize = 10;

/// The ids of every existing client, in order.
pub fn client_ids() -> impl Iterator<Item = ClientId> {
    CLIENT_LIMITS.iter().map(|&(id, _)| id)
}

/// The credit limit of `client`, or `None` when the contract has no such client.
pub fn limit_of(client: ClientId) -> Option<i64> {
    CLIENT_LIMITS
        .iter()
        .find(|&&(id, _)| id == client)
        .map(|&(_, limit)| limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_client_has_its_limit_and_client_6_has_none() {
        assert_eq!(limit_of(1), Some(100_000));
        assert_eq!(limit_of(4), Some(10_000_000));
        assert_eq!(limit_of(UNKNOWN_CLIENT), None);
        assert_eq!(client_ids().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    }
}
