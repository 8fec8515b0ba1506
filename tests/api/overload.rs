//! `MAX_IN_FLIGHT` / `MAX_QUEUED`: past the bounds, a JSON 503 with `Retry-After`; a queued
//! request is served once a slot frees; with the defaults nothing is ever shed.
//!
//! A slot is held by a POST whose body never finishes arriving (the handler waits for it inside
//! the limit), sent on a raw socket so the test decides when it ends.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use reqwest::StatusCode;
use rinha_api::config::Config;
use rinha_api::db::DatabaseSettings;
use rinha_api::overload::OverloadSettings;
use rinha_api::startup::Application;

use crate::helpers::{http_client, sqlite_url};

struct Limited {
    port: u16,
    _dir: tempfile::TempDir,
}

async fn spawn_limited(overload: OverloadSettings) -> Limited {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        database: DatabaseSettings {
            url: sqlite_url(&dir.path().join("rinha.db")),
            ..DatabaseSettings::default()
        },
        workers: 2,
        overload,
        ..Config::default()
    };
    let app = Application::build(config).await.expect("the app starts");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    Limited { port, _dir: dir }
}

/// A POST holding a slot until `finish` sends the rest of its body (a blocking socket: the few
/// bytes written never fill its buffer).
async fn hold_a_slot(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let body = r#"{"valor": 1, "tipo": "c", "descricao": "held"}"#;
    let head = format!(
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..5]
    );
    stream.write_all(head.as_bytes()).expect("write");
    // Let the server start the handler (and take the slot) before the next request.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
}

async fn finish(mut stream: TcpStream) {
    let body = r#"{"valor": 1, "tipo": "c", "descricao": "held"}"#;
    stream.write_all(&body.as_bytes()[5..]).expect("write");
}

async fn statement(port: u16) -> reqwest::Response {
    http_client()
        .get(format!("http://127.0.0.1:{port}/clientes/1/extrato"))
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn past_max_in_flight_and_max_queued_a_request_gets_a_json_503_with_retry_after() {
    let app = spawn_limited(OverloadSettings {
        max_in_flight: 1,
        max_queued: 0,
        retry_after_s: 3,
    })
    .await;
    let held = hold_a_slot(app.port).await;
    let shed = statement(app.port).await;
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "3");
    let body: serde_json::Value = shed.json().await.expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("overloaded"))
    );
    finish(held).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(statement(app.port).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_queued_request_is_served_when_a_slot_frees() {
    let app = spawn_limited(OverloadSettings {
        max_in_flight: 1,
        max_queued: 1,
        retry_after_s: 1,
    })
    .await;
    let held = hold_a_slot(app.port).await;
    let queued = tokio::spawn(statement(app.port));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One in flight, one queued: the third is shed.
    assert_eq!(
        statement(app.port).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        !queued.is_finished(),
        "the queued request waits for the slot"
    );
    finish(held).await;
    let queued = queued.await.expect("the queued request");
    assert_eq!(queued.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_the_defaults_nothing_is_shed() {
    let app = spawn_limited(OverloadSettings::default()).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(hold_a_slot(app.port).await);
    }
    assert_eq!(statement(app.port).await.status(), StatusCode::OK);
    for stream in held {
        finish(stream).await;
    }
}
