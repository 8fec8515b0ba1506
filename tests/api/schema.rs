//! The schema over time: a database file made by an earlier version of the service is converted
//! at start, keeping every balance and statement.

use rinha_api::config::Config;
use rinha_api::startup::Application;
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::helpers::{body, http_client, sqlite_url};

/// The first schema, as `script.sql` read before the per-client lists: the latest transactions
/// were found through an index.
const INDEXED_SCHEMA: &str = "
    CREATE TABLE clientes (
        id INTEGER PRIMARY KEY, limite INTEGER NOT NULL CHECK (limite >= 0),
        saldo INTEGER NOT NULL DEFAULT 0 CHECK (saldo >= -limite)) STRICT;
    CREATE TABLE transacoes (
        id INTEGER PRIMARY KEY, cliente_id INTEGER NOT NULL REFERENCES clientes (id),
        valor INTEGER NOT NULL CHECK (valor > 0), tipo TEXT NOT NULL CHECK (tipo IN ('c', 'd')),
        descricao TEXT NOT NULL CHECK (length(descricao) BETWEEN 1 AND 10),
        saldo_apos INTEGER NOT NULL, realizada_em TEXT NOT NULL) STRICT;
    CREATE INDEX transacoes_por_cliente ON transacoes (cliente_id, id DESC);
    CREATE TRIGGER transacoes_aplica_saldo AFTER INSERT ON transacoes BEGIN
        UPDATE clientes SET saldo = NEW.saldo_apos WHERE id = NEW.cliente_id;
    END;
    INSERT INTO clientes (id, limite, saldo) VALUES
        (1, 100000, 0), (2, 80000, 0), (3, 1000000, 0), (4, 10000000, 0), (5, 500000, 0);";

#[tokio::test]
async fn a_file_with_the_indexed_schema_keeps_its_ledger_and_takes_new_transactions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("rinha.db");
    // 25 transactions interleaved over clients 1, 2 and 3, written with the old schema.
    let mut old = SqliteConnectOptions::new()
        .filename(&db_path)
        .create_if_missing(true)
        .connect()
        .await
        .expect("a new file");
    sqlx::raw_sql(INDEXED_SCHEMA)
        .execute(&mut old)
        .await
        .expect("the old schema");
    for n in 1..=25_i64 {
        let client = n % 3 + 1;
        sqlx::query(
            "INSERT INTO transacoes (cliente_id, valor, tipo, descricao, saldo_apos, realizada_em)
             SELECT id, ?2, 'c', ?3, saldo + ?2, '2026-01-01T00:00:00.000Z' FROM clientes
             WHERE id = ?1",
        )
        .bind(client)
        .bind(n)
        .bind(format!("old{n}"))
        .execute(&mut old)
        .await
        .expect("an old transaction");
    }
    old.close().await.expect("closed");

    let config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        database_url: sqlite_url(&db_path),
        workers: 1,
        ..Config::default()
    };
    let app = Application::build(config)
        .await
        .expect("the app starts on the old file");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let http = http_client();
    let statement = |id: i64| {
        let (http, address) = (http.clone(), address.clone());
        async move {
            let response = http
                .get(format!("{address}/clientes/{id}/extrato"))
                .send()
                .await
                .expect("statement");
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.expect("json")
        }
    };
    let descriptions = |statement: &Value| -> Vec<String> {
        statement["ultimas_transacoes"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|entry| entry["descricao"].as_str().expect("text").to_owned())
            .collect()
    };

    // Client 1 had n = 3, 6, ..., 24: 8 transactions, newest first, balance their sum.
    let one = statement(1).await;
    assert_eq!(one["saldo"]["total"], (3..=24).step_by(3).sum::<i64>());
    let expected: Vec<String> = (1..=8_i64).rev().map(|k| format!("old{}", 3 * k)).collect();
    assert_eq!(descriptions(&one), expected);
    // Client 2 had 9 (n = 1, 4, ..., 25): the 10-entry cap is not reached, all 9 listed.
    assert_eq!(descriptions(&statement(2).await).len(), 9);
    assert!(descriptions(&statement(4).await).is_empty());

    // New transactions chain on from the old ones.
    for n in 0..3 {
        let response = http
            .post(format!("{address}/clientes/1/transacoes"))
            .json(&body(1, "c", &format!("new{n}")))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200);
    }
    let one = statement(1).await;
    assert_eq!(one["saldo"]["total"], (3..=24).step_by(3).sum::<i64>() + 3);
    let listed = descriptions(&one);
    assert_eq!(listed.len(), 10);
    assert_eq!(&listed[..4], ["new2", "new1", "new0", "old24"]);
    assert_eq!(listed[9], "old6");
}
