//! Group commit: transactions committed together are answered exactly as the ledger stored them,
//! and a failure inside a batch (a statement, or its COMMIT) fails only its own request.
//!
//! To make a batch happen on purpose, the test holds SQLite's write lock from its own connection
//! to the server's file: the first request sent takes the writer into a wait for the lock, the
//! requests sent next queue behind it, and when the test commits they are committed together.
//! `GET /metrics` then shows the batch's size. The failures are real SQLite failures, caused by a
//! trigger or a deferred foreign key the test adds to the schema while it holds the lock.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};

use crate::helpers::{Answer, Api, TestApp, body, spawn_app, stored_ledger};

/// A write lock held by the test on the server's database file.
struct HeldLock(SqliteConnection);

impl HeldLock {
    /// Takes the write lock, then runs `schema_change` inside the same transaction.
    async fn take(app: &TestApp, schema_change: &'static str) -> Self {
        let options = SqliteConnectOptions::new()
            .filename(app.db.sqlite_path())
            .busy_timeout(Duration::from_secs(5));
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .expect("open the file");
        connection
            .execute("BEGIN IMMEDIATE")
            .await
            .expect("take the lock");
        if !schema_change.is_empty() {
            sqlx::raw_sql(schema_change)
                .execute(&mut connection)
                .await
                .expect("schema change");
        }
        Self(connection)
    }

    async fn release(mut self) {
        self.0.execute("COMMIT").await.expect("release the lock");
    }
}

/// The writer's counters, from `GET /metrics`.
async fn writer_stats(app: &TestApp) -> Value {
    let metrics = app.metrics().await;
    let value = |name| metrics.value(name, &[]) as u64;
    json!({
        "batches": value("rinha_write_batch_size_count"),
        "largest": value("rinha_write_batch_largest"),
        "retried": value("rinha_write_batches_retried_total"),
        "waiting": value("rinha_write_queue_jobs"),
    })
}

/// Polls `/metrics` until `ready` holds of the writer's counters (10 s at most).
async fn wait_for(app: &TestApp, what: &str, ready: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = writer_stats(app).await;
        if ready(&stats) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {stats} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `plug` first, then `requests` (client id, body) once the writer has taken the plug and
/// waits for the lock; commits the lock once they all wait in the queue behind it; returns the
/// answers to `requests`, in order.
async fn batched(app: &TestApp, lock: HeldLock, requests: &[(i64, Value)]) -> Vec<Answer> {
    let plug = {
        let (address, http) = (app.address.clone(), app.http.clone());
        tokio::spawn(async move {
            http.post(format!("{address}/clientes/5/transacoes"))
                .json(&body(1, "c", "plug"))
                .send()
                .await
                .map(|response| response.status())
        })
    };
    wait_for(app, "the writer takes the plug", |stats| {
        stats["batches"] == 1 && stats["waiting"] == 0
    })
    .await;
    let answers = join_all(
        requests
            .iter()
            .map(|(client, body)| app.transaction(*client, body)),
    );
    let release = async {
        wait_for(app, "every request queues", |stats| {
            stats["waiting"] == requests.len()
        })
        .await;
        lock.release().await;
    };
    let (answers, ()) = tokio::join!(answers, release);
    assert_eq!(
        plug.await.expect("plug task").expect("plug answered"),
        StatusCode::OK
    );
    answers
}

/// The size of the largest batch the server committed so far.
async fn largest_batch(app: &TestApp) -> u64 {
    writer_stats(app)
        .await
        .get("largest")
        .and_then(Value::as_u64)
        .expect("rinha_write_batch_largest")
}

#[tokio::test]
async fn a_batch_with_refusals_answers_each_transaction_as_the_ledger_stored_it() {
    let app = spawn_app().await;
    // Client 1 (limit 100000): six debits of 60000, so exactly one fits whatever the order.
    // Client 2: four credits of 10. Client 3: four debits of 1.
    let mut requests: Vec<(i64, Value)> = (0..6)
        .map(|n| (1, body(60_000, "d", &format!("big{n}"))))
        .collect();
    requests.extend((0..4).map(|n| (2, body(10, "c", &format!("cred{n}")))));
    requests.extend((0..4).map(|n| (3, body(1, "d", &format!("deb{n}")))));

    let lock = HeldLock::take(&app, "").await;
    let answers = batched(&app, lock, &requests).await;

    assert_eq!(
        largest_batch(&app).await,
        requests.len() as u64,
        "all the requests sent while the lock was held were committed as one batch"
    );
    let ledger = stored_ledger(app.db.sqlite_path()).await;
    let stored: HashMap<&str, i64> = ledger
        .iter()
        .map(|row| (row.descricao.as_str(), row.saldo_apos))
        .collect();
    let mut accepted = HashMap::<i64, usize>::new();
    for ((client, request), answer) in requests.iter().zip(&answers) {
        let descricao = request["descricao"].as_str().expect("descricao");
        match answer.status {
            StatusCode::OK => {
                *accepted.entry(*client).or_default() += 1;
                assert_eq!(
                    stored.get(descricao),
                    Some(&answer.saldo()),
                    "{descricao}: the answered balance is the one stored right after it"
                );
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                let message = answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, descricao);
                assert!(message.contains("insufficient limit"), "{message}");
                assert!(
                    !stored.contains_key(descricao),
                    "{descricao}: refused, yet stored"
                );
            }
            status => panic!("{descricao}: unexpected {status}: {:?}", answer.body),
        }
    }
    assert_eq!(accepted.get(&1), Some(&1), "exactly one 60000 debit fits");
    assert_eq!(accepted.get(&2), Some(&4));
    assert_eq!(accepted.get(&3), Some(&4));
    // Balances chain inside the batch: each client's answers are its running balance.
    for (client, expected) in [(1, -60_000), (2, 40), (3, -4)] {
        assert_eq!(app.statement(client).await.total(), expected);
        let mut balances: Vec<i64> = requests
            .iter()
            .zip(&answers)
            .filter(|((id, _), answer)| *id == client && answer.status == StatusCode::OK)
            .map(|(_, answer)| answer.saldo())
            .collect();
        balances.sort_unstable_by_key(|balance| balance.abs());
        let step = expected / balances.len() as i64;
        let running: Vec<i64> = (1..=balances.len() as i64).map(|n| n * step).collect();
        assert_eq!(balances, running, "client {client}'s answers chain");
    }
}

#[tokio::test]
async fn a_statement_failing_inside_a_batch_fails_only_its_own_request() {
    let app = spawn_app().await;
    // A real SQLite failure for one row: a trigger that aborts its INSERT.
    let lock = HeldLock::take(
        &app,
        "CREATE TRIGGER poison BEFORE INSERT ON transacoes WHEN NEW.descricao = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END;",
    )
    .await;
    let requests = [
        (1, body(100, "c", "before")),
        (1, body(100, "c", "poison")),
        (1, body(100, "c", "after")),
        (2, body(999_999, "d", "refused")),
    ];
    let answers = batched(&app, lock, &requests).await;

    assert_eq!(largest_batch(&app).await, requests.len() as u64);
    assert_eq!(
        writer_stats(&app).await["retried"],
        1,
        "the failed batch was applied again one request at a time"
    );
    let statuses: Vec<StatusCode> = answers.iter().map(|answer| answer.status).collect();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::OK,
            StatusCode::UNPROCESSABLE_ENTITY
        ]
    );
    answers[1].assert_error(StatusCode::INTERNAL_SERVER_ERROR, "poison");
    assert_eq!(answers[0].saldo() + answers[2].saldo(), 100 + 200);
    let stored: Vec<String> = stored_ledger(app.db.sqlite_path())
        .await
        .into_iter()
        .map(|row| row.descricao)
        .collect();
    assert!(stored.contains(&"before".to_owned()) && stored.contains(&"after".to_owned()));
    assert!(!stored.contains(&"poison".to_owned()));
    assert!(!stored.contains(&"refused".to_owned()));
    assert_eq!(app.statement(1).await.total(), 200);
}

#[tokio::test]
async fn a_batch_whose_commit_fails_answers_no_200_for_what_failed() {
    let app = spawn_app().await;
    // A failure only COMMIT can see: a deferred foreign key left dangling by one row's trigger.
    let lock = HeldLock::take(
        &app,
        "CREATE TABLE dangling (ref INTEGER REFERENCES clientes (id) DEFERRABLE INITIALLY DEFERRED);
         CREATE TRIGGER dangle AFTER INSERT ON transacoes WHEN NEW.descricao = 'late'
         BEGIN INSERT INTO dangling (ref) VALUES (404); END;",
    )
    .await;
    let requests = [
        (3, body(7, "c", "first")),
        (3, body(7, "c", "late")),
        (3, body(7, "c", "last")),
    ];
    let answers = batched(&app, lock, &requests).await;

    assert_eq!(largest_batch(&app).await, requests.len() as u64);
    let statuses: Vec<StatusCode> = answers.iter().map(|answer| answer.status).collect();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::OK
        ]
    );
    let stored: Vec<String> = stored_ledger(app.db.sqlite_path())
        .await
        .into_iter()
        .filter(|row| row.cliente_id == 3)
        .map(|row| row.descricao)
        .collect();
    // The three requests are sent at once, so they may reach the queue in any order.
    let mut stored = stored;
    stored.sort();
    assert_eq!(stored, ["first", "last"]);
    let mut balances = [answers[0].saldo(), answers[2].saldo()];
    balances.sort();
    assert_eq!(balances, [7, 14]);
    assert_eq!(app.statement(3).await.total(), 14);
}
