//! Several real `rinha-api` processes on one database (one SQLite file, or one PostgreSQL server
//! with `TEST_DATABASE=postgres`): the deployment's shape. Whatever instance answers, no accepted
//! transaction is lost or doubled, no refused one is applied, every 200 reports the balance right
//! after that transaction, and statements list exactly the last ten committed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{
    Api, CLIENTS, TestDatabase, Xorshift, body, read_answer, spawn_processes, spawn_processes_with,
};

fn limit_of(client: i64) -> i64 {
    CLIENTS
        .iter()
        .find(|(id, _)| *id == client)
        .map(|(_, limit)| *limit)
        .expect("known client")
}

/// What one client-side request saw.
#[derive(Debug)]
struct Accepted {
    client: i64,
    signed: i64,
    saldo: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_keep_the_ledger_exact_under_concurrent_mixed_load() {
    ledger_stays_exact_under_concurrent_mixed_load(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_keep_the_ledger_exact_under_concurrent_mixed_load() {
    ledger_stays_exact_under_concurrent_mixed_load(4).await;
}

/// 16 tasks send 2,400 mixed transactions round-robin through `count` processes, then the stored
/// ledger is replayed in each client's commit order against every answer.
async fn ledger_stays_exact_under_concurrent_mixed_load(count: u64) {
    const TASKS: u64 = 16;
    const REQUESTS_PER_TASK: u64 = 150;
    let processes = spawn_processes(count as usize).await;
    let instances = &processes.instances;

    let outcomes = join_all((0..TASKS).map(|task| async move {
        let mut random = Xorshift(0x9E37_79B9_7F4A_7C15 ^ (task + 1));
        let mut accepted = HashMap::new();
        let mut refused = HashSet::new();
        for n in 0..REQUESTS_PER_TASK {
            let instance = &instances[((task + n) % count) as usize];
            let client = random.below(5) as i64 + 1;
            let limit = limit_of(client);
            let tipo = if random.below(3) == 0 { "c" } else { "d" };
            let valor = random.below(60_000) as i64 + 1;
            let descricao = format!("t{task:02}n{n:04}");
            let answer = instance
                .transaction(client, &body(valor, tipo, &descricao))
                .await;
            match answer.status {
                StatusCode::OK => {
                    assert_eq!(answer.body["limite"], limit);
                    assert!(answer.saldo() >= -limit, "overdraft answered: {answer:?}");
                    let signed = if tipo == "c" { valor } else { -valor };
                    let saldo = answer.saldo();
                    accepted.insert(
                        descricao,
                        Accepted {
                            client,
                            signed,
                            saldo,
                        },
                    );
                }
                StatusCode::UNPROCESSABLE_ENTITY => {
                    assert_eq!(tipo, "d", "a credit was refused: {answer:?}");
                    refused.insert(descricao);
                }
                other => panic!("unexpected {other}: {:?}", answer.body),
            }
            if n % 10 == 0 {
                let other = &instances[((task + n + 1) % count) as usize];
                let statement = other.statement(client).await;
                assert_eq!(statement.status, StatusCode::OK);
                assert!(statement.total() >= -limit);
                assert!(statement.entries().len() <= 10);
            }
        }
        (accepted, refused)
    }))
    .await;
    let mut accepted: HashMap<String, Accepted> = HashMap::new();
    let mut refused: HashSet<String> = HashSet::new();
    for (task_accepted, task_refused) in outcomes {
        accepted.extend(task_accepted);
        refused.extend(task_refused);
    }
    assert!(!refused.is_empty(), "the load must reach the limits");
    assert!(
        accepted.len() > refused.len(),
        "most transactions are accepted"
    );

    // The stored ledger is exactly the accepted transactions, each once, and replaying it in
    // commit order gives every balance a 200 reported.
    let rows = processes.db.stored_ledger().await;
    assert_eq!(rows.len(), accepted.len(), "no transaction lost or doubled");
    let mut balances: HashMap<i64, i64> = HashMap::new();
    let mut latest: HashMap<i64, Vec<String>> = HashMap::new();
    for row in &rows {
        assert!(
            !refused.contains(&row.descricao),
            "refused but applied: {row:?}"
        );
        let seen = accepted
            .get(&row.descricao)
            .unwrap_or_else(|| panic!("stored but never accepted: {row:?}"));
        let signed = row.signed();
        assert_eq!(
            (seen.client, seen.signed),
            (row.cliente_id, signed),
            "{row:?}"
        );
        let balance = balances.entry(row.cliente_id).or_default();
        *balance += signed;
        assert_eq!(row.saldo_apos, *balance, "stored running balance: {row:?}");
        assert_eq!(
            seen.saldo, *balance,
            "the 200 reported this balance: {row:?}"
        );
        assert!(*balance >= -limit_of(row.cliente_id));
        latest
            .entry(row.cliente_id)
            .or_default()
            .insert(0, row.descricao.clone());
    }

    processes.db.assert_numbering_contiguous().await;

    // Every instance's statement agrees with the ledger.
    for instance in instances {
        for &(client, _) in &CLIENTS {
            let statement = instance.statement(client).await;
            let expected_total: i64 = accepted
                .values()
                .filter(|seen| seen.client == client)
                .map(|seen| seen.signed)
                .sum();
            assert_eq!(statement.total(), expected_total, "client {client}");
            let mut expected_latest = latest.remove(&client).unwrap_or_default();
            expected_latest.truncate(10);
            assert_eq!(statement.descriptions(), expected_latest, "client {client}");
            latest.insert(client, expected_latest);
        }
        let metrics = instance.metrics().await;
        eprintln!(
            "{} lock waits: {} ({} s)",
            instance.address,
            metrics.value("rinha_lock_waits_total", &[]),
            metrics.value("rinha_lock_wait_seconds", &[]),
        );
    }
}

/// The largest write batch each instance committed so far (`GET /metrics`).
async fn largest_batches(instances: &[crate::helpers::Instance]) -> Vec<u64> {
    join_all(instances.iter().map(|instance| async {
        let metrics = instance.metrics().await;
        metrics.value("rinha_write_batch_largest", &[]) as u64
    }))
    .await
}

/// Writes queued in two processes behind a lock the test holds are committed in batches, several
/// for one client in one batch: each is accepted or refused against the balance the ones before
/// it left, whichever process's batch it was in, and answered as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_from_two_processes_chain_exactly_per_client() {
    let processes = spawn_processes(2).await;
    let instances = &processes.instances;
    // Client 1 (limit 100000): six debits of 60000 and six credits of 10, so exactly one debit
    // fits whatever the order. Client 2: four credits of 10. Client 3: four debits of 1.
    let mut requests: Vec<(i64, &str, i64, String)> = Vec::new();
    for n in 0..6 {
        requests.push((1, "d", 60_000, format!("big{n}")));
        requests.push((1, "c", 10, format!("small{n}")));
    }
    for n in 0..4 {
        requests.push((2, "c", 10, format!("cred{n}")));
        requests.push((3, "d", 1, format!("deb{n}")));
    }

    let lock = processes.db.hold_write_lock(1).await;
    let answers = join_all(requests.iter().enumerate().map(
        |(n, (client, tipo, valor, descricao))| async move {
            instances[n % 2]
                .transaction(*client, &body(*valor, tipo, descricao))
                .await
        },
    ));
    let release = async {
        // Every write has reached its process (answered, or waiting on the lock) before the
        // lock goes: the ones queued behind the waiting batches make the next, larger ones.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = join_all(instances.iter().map(|instance| instance.metrics())).await;
            let arrived: f64 = metrics
                .iter()
                .map(|metrics| metrics.value("rinha_write_queue_jobs", &[]))
                .sum();
            if arrived >= 4.0 || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        lock.release().await;
    };
    let (answers, ()) = tokio::join!(answers, release);

    assert!(
        largest_batches(instances)
            .await
            .iter()
            .any(|&size| size > 1),
        "some writes were committed together"
    );
    let ledger = processes.db.stored_ledger().await;
    let stored: HashMap<&str, i64> = ledger
        .iter()
        .map(|row| (row.descricao.as_str(), row.saldo_apos))
        .collect();
    let mut accepted_debits = 0;
    for ((client, tipo, _, descricao), answer) in requests.iter().zip(&answers) {
        match answer.status {
            StatusCode::OK => {
                assert_eq!(
                    stored.get(descricao.as_str()),
                    Some(&answer.saldo()),
                    "{descricao}: the answered balance is the one stored right after it"
                );
                if *client == 1 && *tipo == "d" {
                    accepted_debits += 1;
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!((*client, *tipo), (1, "d"), "{descricao}: refused");
                assert!(
                    !stored.contains_key(descricao.as_str()),
                    "{descricao}: refused, yet stored"
                );
            }
            status => panic!("{descricao}: unexpected {status}: {:?}", answer.body),
        }
    }
    assert_eq!(accepted_debits, 1, "exactly one 60000 debit fits");
    // The stored order replays to every stored balance, within the limit at every step.
    let mut balances: HashMap<i64, i64> = HashMap::new();
    for row in &ledger {
        let balance = balances.entry(row.cliente_id).or_default();
        *balance += row.signed();
        assert_eq!(row.saldo_apos, *balance, "{row:?}");
        assert!(*balance >= -limit_of(row.cliente_id), "{row:?}");
    }
    processes.db.assert_numbering_contiguous().await;
    for (client, expected) in [(1, -60_000 + 60), (2, 40), (3, -4)] {
        assert_eq!(balances.get(&client), Some(&expected), "client {client}");
        for instance in instances {
            assert_eq!(instance.statement(client).await.total(), expected);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_from_either_process_shows_a_transaction_answered_by_the_other() {
    let processes = spawn_processes(2).await;
    let [first, second] = &processes.instances[..] else {
        panic!("two instances");
    };

    for n in 0..100_i64 {
        let (writer, reader) = if n % 2 == 0 {
            (first, second)
        } else {
            (second, first)
        };
        let client = n % 5 + 1;
        let descricao = format!("ryw{n}");
        let answer = writer
            .transaction(client, &body(n + 1, "c", &descricao))
            .await;
        assert_eq!(answer.status, StatusCode::OK);

        let statement = reader.statement(client).await;

        assert_eq!(statement.descriptions().first(), Some(&descricao), "n={n}");
        assert_eq!(statement.total(), answer.saldo(), "n={n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_on_a_new_file_all_come_up_with_five_clients() {
    // Real processes, so also the cross-process file locks; the tight version of this race is
    // `instances_opening_a_new_file_at_the_same_instant_all_come_up` below.
    for round in 0..5 {
        let processes = spawn_processes(3).await;

        let statements = join_all(
            processes
                .instances
                .iter()
                .flat_map(|instance| CLIENTS.iter().map(move |&(id, _)| instance.statement(id))),
        )
        .await;

        for statement in statements {
            assert_eq!(statement.status, StatusCode::OK, "round {round}");
            assert_eq!(statement.total(), 0);
        }
        let clients = processes.db.clients().await;
        assert_eq!(clients, CLIENTS, "round {round}: exactly the five clients");
    }
}

#[test]
fn the_binary_refuses_invalid_configuration_naming_the_variable() {
    let cases = [
        ("API_PORT", "http"),
        ("API_WORKERS", "0"),
        ("DATABASE_URL", "mysql://localhost/rinha"),
        ("DB_DURABILITY", "disk"),
        ("API_SCHED_POLICY", "fifo"),
    ];
    for (name, value) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_rinha-api"))
            .env(name, value)
            .env("API_PORT", if name == "API_PORT" { value } else { "0" })
            .env("RUST_LOG", "error")
            .output()
            .expect("rinha-api runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{name}={value} must stop the process"
        );
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
    }
}

/// Each thread of process `pid` by name, with its scheduling policy (field 41 of its `stat`).
#[cfg(target_os = "linux")]
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    // A thread that ends between the listing and its reading is skipped.
    tasks
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // The fields after the name, which is in parentheses and may hold spaces: the
            // third field of the line first, so the 41st is the 39th of these.
            let after_name = &stat[stat.rfind(") ").expect("a stat line") + 2..];
            let policy = after_name
                .split_whitespace()
                .nth(38)
                .and_then(|field| field.parse().ok())
                .expect("a policy field");
            Some((name.trim().to_owned(), policy))
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_thread_of_a_process_runs_under_the_scheduling_policy_it_was_given() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    // Both policies expected in turn: a child starts with its parent's (this test's) policy, so
    // a process that set nothing would fail at least one case whatever this test runs under.
    for (setting, expected) in [
        (None, SCHED_BATCH),
        (Some("normal"), SCHED_OTHER),
        (Some("batch"), SCHED_BATCH),
    ] {
        let env: Vec<(&str, &str)> = setting
            .map(|value| ("API_SCHED_POLICY", value))
            .into_iter()
            .collect();
        let processes = spawn_processes_with(1, &env).await;
        let instance = &processes.instances[0];
        // A write and a statement first, so that every thread their paths start is running.
        assert_eq!(
            instance.transaction(1, &body(5, "c", "sched")).await.status,
            StatusCode::OK
        );
        assert_eq!(instance.statement(1).await.status, StatusCode::OK);

        let threads = thread_policies(instance.pid());

        let names: HashSet<&str> = threads.iter().map(|(name, _)| name.as_str()).collect();
        let expected_threads: &[&str] = match processes.db {
            TestDatabase::Sqlite { .. } => &["actix-server wo", "sqlx-sqlite-wor"],
            TestDatabase::Postgres { .. } => &["actix-server wo"],
        };
        for part in expected_threads {
            assert!(
                names.contains(part),
                "{setting:?}: no {part} thread in {names:?}"
            );
        }
        for (name, policy) in &threads {
            assert_eq!(
                *policy, expected,
                "API_SCHED_POLICY={setting:?}: thread {name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_stops_cleanly_on_sigterm() {
    let mut processes = spawn_processes(1).await;
    let instance = &mut processes.instances[0];
    let answer = instance.transaction(1, &body(5, "c", "antes")).await;
    assert_eq!(answer.status, StatusCode::OK);

    let status = instance.terminate(std::time::Duration::from_secs(10));

    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// SIGTERM while one write waits for its turn and another's body is still arriving: the waiting
/// write is committed and answered 200; the one completed after the signal is refused with a 503
/// that says the instance is stopping (not that the database is busy); the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_arrives_while_the_instance_stops_gets_a_503_saying_so() {
    use tokio::io::AsyncWriteExt;
    // Long enough that the first write is still waiting when the second completes.
    let mut processes = spawn_processes_with(1, &[("DB_BUSY_TIMEOUT_MS", "20000")]).await;
    let lock = processes.db.hold_write_lock(1).await;
    let instance = &processes.instances[0];
    let first = {
        let (http, url) = (
            instance.http.clone(),
            format!("{}/clientes/1/transacoes", instance.address),
        );
        tokio::spawn(async move {
            let answer = http.post(url).json(&body(5, "c", "antes")).send().await;
            answer.expect("the first write is answered").status()
        })
    };
    // The second write's headers and half its body, before the signal: a request in flight,
    // which a stopping server still finishes.
    let address = instance.address.trim_start_matches("http://").to_owned();
    let mut late = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let payload = r#"{"valor": 7, "tipo": "c", "descricao": "depois"}"#;
    let (head, tail) = payload.split_at(payload.len() / 2);
    let request = format!(
        "POST /clientes/1/transacoes HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        payload.len()
    );
    late.write_all(request.as_bytes()).await.expect("sent");
    // The first write must reach storage before the signal, and the signal must stop storage
    // before the rest of the late write goes. Each takes a few milliseconds; no metric shows the
    // first (it is taken from the queue at once and waits on the lock), so a second each leaves
    // room for a busy machine.
    tokio::time::sleep(Duration::from_secs(1)).await;
    instance.send_sigterm();
    tokio::time::sleep(Duration::from_secs(1)).await;

    late.write_all(tail.as_bytes())
        .await
        .expect("the rest sent");
    let (status, answer) = read_answer(&mut late).await;
    assert_eq!(status, 503, "a write completed after SIGTERM: {answer}");
    let error: serde_json::Value = serde_json::from_str(&answer).expect("a JSON error");
    let message = error["error"].as_str().expect("an error message");
    assert!(message.contains("stopping"), "{message}");
    assert!(!message.contains("busy"), "{message}");

    // The write queued before the stop is still committed and answered.
    lock.release().await;
    let first = first.await.expect("the first write's task");
    assert_eq!(first, StatusCode::OK);
    let status = processes.instances[0].wait_for_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let ledger = processes.db.stored_ledger().await;
    let descriptions: Vec<&str> = ledger.iter().map(|t| t.descricao.as_str()).collect();
    assert_eq!(
        descriptions,
        ["antes"],
        "only the write answered 200 is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_opening_a_new_file_at_the_same_instant_all_come_up() {
    // The same race as between processes, made tight: every instance opens the file in the same
    // few microseconds (SQLite's locks behave the same between connections of one process).
    for round in 0..20 {
        let db = TestDatabase::new().await;
        let database_url = db.url();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        let starts = (0..4).map(|_| {
            let config = rinha_api::config::Config {
                host: "127.0.0.1".into(),
                port: 0,
                database: rinha_api::db::DatabaseSettings {
                    url: database_url.clone(),
                    ..rinha_api::db::DatabaseSettings::default()
                },
                workers: 1,
                ..rinha_api::config::Config::default()
            };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                rinha_api::startup::Application::build(config).await
            })
        });
        for started in join_all(starts).await {
            let app = started
                .expect("task")
                .unwrap_or_else(|err| panic!("round {round}: {err}"));
            assert_ne!(app.port(), 0);
        }
    }
}
