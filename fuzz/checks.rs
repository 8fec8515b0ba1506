//! The properties the fuzz targets check, shared with `cargo test` (tests/api/fuzz_regressions.rs
//! includes this file), so every input kept in `fuzz/regressions/` is replayed by the ordinary
//! test suite: a crash the fuzzer finds becomes a test by saving the input there.

// Each fuzz target uses one of these checks.
#![allow(dead_code)]

use actix_web::dev::{Path, ResourceDef, Url};
use actix_web::http::Uri;
use rinha_api::domain::{ClientId, Kind, MAX_AMOUNT, NewTransaction};

/// `NewTransaction::from_json` on arbitrary bytes: never panics, and whatever it accepts obeys
/// the contract and survives a round trip through its canonical JSON unchanged.
pub fn transaction_body(body: &[u8]) {
    let Ok(transaction) = NewTransaction::from_json(body) else {
        return;
    };
    assert!((1..=MAX_AMOUNT).contains(&transaction.amount()));
    assert!((1..=10).contains(&transaction.description().chars().count()));
    let canonical = serde_json::json!({
        "valor": transaction.amount(),
        "tipo": Kind::code(transaction.kind()),
        "descricao": transaction.description(),
    });
    let again = NewTransaction::from_json(canonical.to_string().as_bytes())
        .expect("the canonical form of an accepted body is accepted");
    assert_eq!(again, transaction);
}

/// The path/id parser: Actix's router matching a request path against the two client routes
/// (percent-decoding included), then `ClientId::parse` on the `{id}` it extracts. Never panics;
/// an id it accepts is an `i64` whose decimal form names the same client.
pub fn client_path(path: &[u8]) {
    let Ok(uri) = Uri::try_from(path) else {
        return;
    };
    for route in ["/clientes/{id}/transacoes", "/clientes/{id}/extrato"] {
        let mut matched = Path::new(Url::new(uri.clone()));
        if !ResourceDef::new(route).capture_match_info(&mut matched) {
            continue;
        }
        let segment = matched.get("id").expect("a matched route has its id");
        assert!(!segment.contains('/'), "{segment:?} spans segments");
        if let Some(ClientId(id)) = ClientId::parse(segment) {
            assert_eq!(ClientId::parse(&id.to_string()), Some(ClientId(id)));
        }
    }
}
