//! `MAX_IN_FLIGHT` / `MAX_QUEUED`: past the bounds, a JSON 503 with `Retry-After`; a queued
//! request is served once a slot frees; with the defaults nothing is ever shed.
//!
//! A slot is held by a POST whose body never finishes arriving (the handler waits for it inside
//! the limit), sent on a raw socket so the test decides when it ends. The tests wait for the
//! server to have taken each request by reading `rinha_http_requests_in_flight` on the metrics
//! port (outside the limiter), not for a fixed time.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rinha_api::config::Config;
use rinha_api::db::DatabaseSettings;
use rinha_api::overload::OverloadSettings;
use rinha_api::startup::Application;

use crate::helpers::{free_port, http_client, metrics_at, sqlite_url};

struct Limited {
    port: u16,
    metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl Limited {
    /// Waits until the server counts exactly `count` requests in flight (held, queued or being
    /// answered): the gauge moves in the outermost middleware, in the same poll as the limiter
    /// takes or queues for a slot.
    async fn wait_in_flight(&self, count: u32) {
        let (http, base) = (
            http_client(),
            format!("http://127.0.0.1:{}", self.metrics_port),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = metrics_at(&http, &base)
                .await
                .value("rinha_http_requests_in_flight", &[]);
            if now == f64::from(count) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{now} requests in flight after 10 s, {count} expected"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
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
        metrics_port: Some(free_port()),
        ..Config::default()
    };
    let metrics_port = config.metrics_port.expect("set above");
    let app = Application::build(config).await.expect("the app starts");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    Limited {
        port,
        metrics_port,
        _dir: dir,
    }
}

/// A POST holding a slot until `finish` sends the rest of its body (a blocking socket: the few
/// bytes written never fill its buffer). Returns once the server counts `in_flight` requests,
/// this one included.
async fn hold_a_slot(app: &Limited, in_flight: u32) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).expect("connect");
    let body = r#"{"valor": 1, "tipo": "c", "descricao": "held"}"#;
    let head = format!(
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..5]
    );
    stream.write_all(head.as_bytes()).expect("write");
    app.wait_in_flight(in_flight).await;
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
    let held = hold_a_slot(&app, 1).await;
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
    app.wait_in_flight(0).await;
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
    let held = hold_a_slot(&app, 1).await;
    let queued = tokio::spawn(statement(app.port));
    app.wait_in_flight(2).await;
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
    for in_flight in 1..=8 {
        held.push(hold_a_slot(&app, in_flight).await);
    }
    assert_eq!(statement(app.port).await.status(), StatusCode::OK);
    for stream in held {
        finish(stream).await;
    }
}
