//! Micro-benchmarks of what every request pays: reading and validating a body, encoding an
//! answer, recording its metrics, and committing N transactions queued together to a real SQLite
//! file (the group commit takes them as one batch), through `Database::record` as a handler does.
//!
//!   cargo bench --bench hot_path                 # all of them
//!   cargo bench --bench hot_path -- batch        # only the batches
//!
//! For the batches, criterion reports the time of one batch; the cost per transaction is that
//! time divided by N (its "thrpt" line, in transactions per second, says the same).

use std::hint::black_box;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::dev::ServiceResponse;
use actix_web::test::TestRequest;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use rinha_api::db::{Database, DatabaseSettings};
use rinha_api::domain::{
    Applied, ClientId, Kind, NewTransaction, Statement, StatementBalance, StatementEntry,
};
use rinha_api::metrics::{Metrics, StorageMetrics};

const BODY: &[u8] = br#"{"valor": 1234, "tipo": "d", "descricao": "abcdefghij"}"#;

fn parse_and_validate(c: &mut Criterion) {
    c.bench_function("parse_and_validate_body", |b| {
        b.iter(|| NewTransaction::from_json(black_box(BODY)).expect("valid body"))
    });
}

fn encode_answers(c: &mut Criterion) {
    let applied = Applied {
        limit: 100_000,
        balance: -9_098,
    };
    c.bench_function("encode_transaction_answer", |b| {
        b.iter(|| serde_json::to_vec(black_box(&applied)).expect("encodes"))
    });
    let entry = StatementEntry {
        amount: 10_000,
        kind: Kind::Debit,
        description: "abcdefghij".into(),
        committed_at: "2026-11-23T16:00:00.123Z".into(),
    };
    let statement = Statement {
        balance: StatementBalance {
            total: -9_098,
            read_at: "2026-11-23T16:00:00.456Z".into(),
            limit: 100_000,
        },
        last_transactions: vec![entry; 10],
    };
    c.bench_function("encode_full_statement", |b| {
        b.iter(|| serde_json::to_vec(black_box(&statement)).expect("encodes"))
    });
}

/// What the metrics middleware adds to one request: in-flight up and down, the route lookup, the
/// duration histogram and the requests counter; and a transaction's outcome counter.
fn record_metrics(c: &mut Criterion) {
    let metrics = Metrics::new(&["/clientes/{id}/transacoes", "/clientes/{id}/extrato"]);
    let answer: Result<ServiceResponse, actix_web::Error> =
        Ok(TestRequest::default().to_srv_response(HttpResponse::Ok().finish()));
    c.bench_function("record_request_metrics", |b| {
        b.iter(|| metrics.start_request().finish(black_box(&answer)))
    });
    c.bench_function("record_transaction_outcome", |b| {
        b.iter(|| metrics.transaction(black_box(Kind::Debit), black_box(true)))
    });
}

fn batches(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = DatabaseSettings {
        url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..DatabaseSettings::default()
    };
    let db = runtime
        .block_on(Database::connect(&settings, StorageMetrics::default()))
        .expect("database");
    let client = db.client(ClientId(4)).expect("client 4");
    // Credits and debits in turn, so the balance stays near 0 however long it runs.
    let credit = NewTransaction::from_json(br#"{"valor": 100, "tipo": "c", "descricao": "bench"}"#)
        .expect("valid");
    let debit = NewTransaction::from_json(br#"{"valor": 100, "tipo": "d", "descricao": "bench"}"#)
        .expect("valid");
    let mut group = c.benchmark_group("batch");
    for n in [1usize, 8, 64] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                // Queued together before the committer runs, so committed as one batch.
                let writes = (0..n).map(|i| {
                    let transaction = if i % 2 == 0 { &credit } else { &debit };
                    db.record(client, transaction.clone())
                });
                let results = runtime.block_on(join_all(writes));
                assert!(results.iter().all(Result::is_ok));
            })
        });
    }
    group.finish();
    runtime.block_on(db.close());
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = parse_and_validate, encode_answers, record_metrics, batches
}
criterion_main!(benches);
