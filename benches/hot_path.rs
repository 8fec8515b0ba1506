//! Micro-benchmarks of what every request pays: reading and validating a body, encoding an
//! answer, recording its metrics, and committing a batch of N transactions to a real SQLite file
//! (the group commit).
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
use rinha_api::config::Config;
use rinha_api::db::Database;
use rinha_api::domain::{
    Applied, ClientId, Kind, NewTransaction, Statement, StatementBalance, StatementEntry,
};
use rinha_api::metrics::Metrics;

const BODY: &[u8] = br#"{"valor": 1234, "tipo": "d", "descricao": "abcdefghij"}"#;

fn parse_and_validate(c: &mut Criterion) {
    c.bench_function("parse_and_validate_body", |b| {
        b.iter(|| NewTransaction::from_json(black_box(BODY)).expect("valid body"))
    });
}

fn encode_answers(c: &mut Criterion) {
    let applied = Applied {
        limite: 100_000,
        saldo: -9_098,
    };
    c.bench_function("encode_transaction_answer", |b| {
        b.iter(|| serde_json::to_vec(black_box(&applied)).expect("encodes"))
    });
    let entry = StatementEntry {
        valor: 10_000,
        tipo: Kind::Debit,
        descricao: "abcdefghij".into(),
        realizada_em: "2026-11-23T16:00:00.123Z".into(),
    };
    let statement = Statement {
        saldo: StatementBalance {
            total: -9_098,
            data_extrato: "2026-11-23T16:00:00.456Z".into(),
            limite: 100_000,
        },
        ultimas_transacoes: vec![entry; 10],
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
    let config = Config {
        database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..Config::default()
    };
    let db = runtime
        .block_on(Database::connect(&config, Default::default()))
        .expect("database");
    let client = db.client(ClientId(4)).expect("client 4");
    let mut group = c.benchmark_group("batch");
    for n in [1usize, 8, 64] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                // Credits and debits in turn, so the balance stays near 0 however long it runs.
                let transactions = (0..n)
                    .map(|i| {
                        let kind = if i % 2 == 0 {
                            Kind::Credit
                        } else {
                            Kind::Debit
                        };
                        let transaction = NewTransaction {
                            amount: 100,
                            kind,
                            description: "bench".into(),
                        };
                        (client, transaction)
                    })
                    .collect();
                let results = runtime.block_on(db.record_all(transactions));
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
