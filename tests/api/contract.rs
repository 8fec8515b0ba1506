//! The challenge's official checks, in their order, against one in-process server.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Api, CLIENTS, body, spawn_app};

/// The official test's validation phase, steps 1 to 3, against a fresh state. Also run through
/// nginx by `stack`.
pub async fn official_validation_phase(app: &impl Api) {
    // 1. 25 simultaneous debits of 1 on client 1, then 25 simultaneous credits.
    for (tipo, expected_total) in [("d", -25), ("c", 0)] {
        let request = body(1, tipo, "validacao");
        let answers = join_all((0..25).map(|_| app.transaction(1, &request))).await;
        for answer in &answers {
            assert_eq!(answer.status, StatusCode::OK, "{tipo}: {:?}", answer.body);
        }
        let statement = app.statement(1).await;
        assert_eq!(statement.status, StatusCode::OK);
        assert_eq!(statement.total(), expected_total, "after 25 {tipo}");
    }

    // 2. Every client, at once.
    join_all(CLIENTS.iter().map(|&(id, limite)| async move {
        let statement = app.statement(id).await;
        assert_eq!(statement.status, StatusCode::OK);
        assert_eq!(statement.body["saldo"]["limite"], limite);
        assert_eq!(statement.total(), 0);

        for (tipo, descricao) in [("c", "toma"), ("d", "devolve")] {
            let answer = app.transaction(id, &body(1, tipo, descricao)).await;
            assert_eq!(answer.status, StatusCode::OK, "{descricao}");
            assert_eq!(answer.body["limite"], limite);
            assert!(answer.saldo() >= -limite);
        }
        let statement = app.statement(id).await;
        let entries = statement.entries();
        assert_eq!(entries[0]["descricao"], "devolve");
        assert_eq!(entries[0]["tipo"], "d");
        assert_eq!(entries[0]["valor"], 1);
        assert_eq!(entries[1]["descricao"], "toma");
        assert_eq!(entries[1]["tipo"], "c");
        assert_eq!(entries[1]["valor"], 1);

        let danada = app.transaction(id, &body(1, "c", "danada")).await;
        assert_eq!(danada.status, StatusCode::OK);
        let statements = join_all((0..4).map(|_| app.statement(id))).await;
        for statement in statements {
            assert_eq!(statement.status, StatusCode::OK);
            assert_eq!(statement.entries()[0]["descricao"], "danada");
            assert_eq!(statement.total(), danada.saldo());
            assert_eq!(statement.body["saldo"]["limite"], danada.body["limite"]);
        }

        let invalid = [
            json!({"valor": 1.2, "tipo": "d", "descricao": "devolve"}),
            json!({"valor": 1, "tipo": "x", "descricao": "devolve"}),
            json!({"valor": 1, "tipo": "c", "descricao": "123456789 e mais um pouco"}),
            json!({"valor": 1, "tipo": "c", "descricao": ""}),
            json!({"valor": 1, "tipo": "c", "descricao": null}),
        ];
        for bad in &invalid {
            let answer = app.transaction(id, bad).await;
            answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, &bad.to_string());
        }
    }))
    .await;

    // 3. There is no client 6.
    app.statement(6)
        .await
        .assert_error(StatusCode::NOT_FOUND, "client 6");
}

#[tokio::test]
async fn the_official_validation_phase_passes_in_order() {
    let app = spawn_app().await;

    official_validation_phase(&app).await;
}

#[tokio::test]
async fn a_statement_has_the_shape_of_the_contract() {
    let app = spawn_app().await;
    app.transaction(1, &body(10, "c", "descricao")).await;

    let statement = app.statement(1).await;

    assert_eq!(statement.status, StatusCode::OK);
    assert_eq!(statement.content_type.as_deref(), Some("application/json"));
    let saldo = &statement.body["saldo"];
    assert_eq!(saldo["total"], 10);
    assert_eq!(saldo["limite"], 100_000);
    let data_extrato = saldo["data_extrato"].as_str().expect("data_extrato");
    let entry = &statement.entries()[0];
    assert_eq!(
        entry,
        &json!({
            "valor": 10,
            "tipo": "c",
            "descricao": "descricao",
            "realizada_em": entry["realizada_em"],
        })
    );
    let realizada_em = entry["realizada_em"].as_str().expect("realizada_em");
    for timestamp in [data_extrato, realizada_em] {
        let parsed = chrono::DateTime::parse_from_rfc3339(timestamp).expect("RFC 3339");
        assert_eq!(parsed.offset().local_minus_utc(), 0, "UTC: {timestamp}");
    }
    assert!(data_extrato >= realizada_em, "read after the transaction");
}

#[tokio::test]
async fn health_reports_healthy_with_a_timestamp() {
    let app = spawn_app().await;

    let health = app.get("/health").await;

    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy");
    let timestamp = health.body["timestamp"].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(timestamp).expect("RFC 3339");
}

#[tokio::test]
async fn reset_restores_the_initial_state() {
    let app = spawn_app().await;
    for &(id, _) in &CLIENTS {
        app.transaction(id, &body(500, "d", "antes")).await;
    }

    let reset = app.request(reqwest::Method::POST, "/reset").await;

    assert_eq!(reset.status, StatusCode::OK);
    for &(id, limite) in &CLIENTS {
        let statement = app.statement(id).await;
        assert_eq!(statement.total(), 0);
        assert_eq!(statement.body["saldo"]["limite"], limite);
        assert!(statement.entries().is_empty());
    }
    let after = app.transaction(1, &body(7, "c", "depois")).await;
    assert_eq!(after.saldo(), 7, "the ledger works after a reset");
}
