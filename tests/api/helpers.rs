//! Starting the real server for a test, and talking to it.
//!
//! [`spawn_app`] runs the server in-process on port 0 with a fresh SQLite file in a temporary
//! directory; [`spawn_processes`] starts real `rinha-api` processes on one shared file, as the
//! deployment does.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use rinha_api::config::Config;
use rinha_api::startup::Application;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tempfile::TempDir;

/// The clients of script.sql: (id, limite).
pub const CLIENTS: [(i64, i64); 5] = [
    (1, 100_000),
    (2, 80_000),
    (3, 1_000_000),
    (4, 10_000_000),
    (5, 500_000),
];

/// A small deterministic generator, so a failing run can be replayed.
#[derive(Debug)]
pub struct Xorshift(pub u64);

impl Xorshift {
    /// The next number, below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A running API and a client for it.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub http: Client,
    /// The SQLite file the server writes.
    pub db_path: PathBuf,
    _dir: TempDir,
}

/// Starts the server in this process on a free port and a new database file.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("rinha.db");
    let config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        database_url: sqlite_url(&db_path),
        workers: 2,
        ..Config::default()
    };
    let app = Application::build(config).await.expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        http: http_client(),
        db_path,
        _dir: dir,
    }
}

pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

pub fn http_client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// An answer: status and parsed JSON body (or `Value::Null` if the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Answer {
    async fn read(response: Response) -> Self {
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            content_type,
            body,
        }
    }

    /// Asserts the answer is a JSON error with this status, and returns its message.
    pub fn assert_error(&self, status: StatusCode, context: &str) -> String {
        assert_eq!(self.status, status, "{context}: {:?}", self.body);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/json"),
            "{context}"
        );
        let message = self.body["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            !message.is_empty(),
            "{context}: no error message in {:?}",
            self.body
        );
        message
    }

    pub fn saldo(&self) -> i64 {
        self.body["saldo"].as_i64().expect("saldo")
    }

    pub fn total(&self) -> i64 {
        self.body["saldo"]["total"].as_i64().expect("total")
    }

    pub fn entries(&self) -> Vec<Value> {
        self.body["ultimas_transacoes"]
            .as_array()
            .expect("ultimas_transacoes")
            .clone()
    }

    /// The `descricao` of each listed transaction, newest first.
    pub fn descriptions(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|entry| entry["descricao"].as_str().expect("descricao").to_owned())
            .collect()
    }
}

/// Requests against one base address.
pub trait Api {
    fn base(&self) -> &str;
    fn client(&self) -> &Client;

    /// `POST /clientes/{id}/transacoes` with a JSON body.
    async fn transaction(&self, id: impl std::fmt::Display, body: &Value) -> Answer {
        self.transaction_raw(id, body.to_string(), Some("application/json"))
            .await
    }

    /// `POST /clientes/{id}/transacoes` with any body and content type.
    async fn transaction_raw(
        &self,
        id: impl std::fmt::Display,
        body: impl Into<reqwest::Body>,
        content_type: Option<&str>,
    ) -> Answer {
        let mut request = self
            .client()
            .post(format!("{}/clientes/{id}/transacoes", self.base()))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        Answer::read(request.send().await.expect("request sent")).await
    }

    /// `GET /clientes/{id}/extrato`.
    async fn statement(&self, id: impl std::fmt::Display) -> Answer {
        self.get(&format!("/clientes/{id}/extrato")).await
    }

    async fn get(&self, path: &str) -> Answer {
        let response = self
            .client()
            .get(format!("{}{path}", self.base()))
            .send()
            .await
            .expect("request sent");
        Answer::read(response).await
    }

    /// `GET path`, its status and body as text.
    async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .client()
            .get(format!("{}{path}", self.base()))
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        (status, response.text().await.expect("a text body"))
    }

    /// `GET /metrics`, parsed.
    async fn metrics(&self) -> Samples {
        let (status, text) = self.get_text("/metrics").await;
        assert_eq!(status, StatusCode::OK, "GET /metrics: {text}");
        Samples::parse(&text)
    }

    async fn request(&self, method: reqwest::Method, path: &str) -> Answer {
        let response = self
            .client()
            .request(method, format!("{}{path}", self.base()))
            .send()
            .await
            .expect("request sent");
        Answer::read(response).await
    }
}

impl Api for TestApp {
    fn base(&self) -> &str {
        &self.address
    }
    fn client(&self) -> &Client {
        &self.http
    }
}

/// A transaction body.
pub fn body(valor: i64, tipo: &str, descricao: &str) -> Value {
    serde_json::json!({"valor": valor, "tipo": tipo, "descricao": descricao})
}

/// Real `rinha-api` processes sharing one database file; killed when dropped.
#[derive(Debug)]
pub struct Processes {
    pub instances: Vec<Instance>,
    pub db_path: PathBuf,
    _dir: TempDir,
}

/// One running `rinha-api` process.
#[derive(Debug)]
pub struct Instance {
    pub address: String,
    pub http: Client,
    child: Child,
}

impl Instance {
    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {timeout:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Api for Instance {
    fn base(&self) -> &str {
        &self.address
    }
    fn client(&self) -> &Client {
        &self.http
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for instance in &mut self.instances {
            let _ = instance.child.kill();
            let _ = instance.child.wait();
        }
    }
}

/// Starts `count` `rinha-api` processes at the same moment on one new database file and waits
/// until each answers `/health`.
pub async fn spawn_processes(count: usize) -> Processes {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("rinha.db");
    let mut processes = Processes {
        instances: Vec::new(),
        db_path: db_path.clone(),
        _dir: dir,
    };
    for _ in 0..count {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rinha-api"))
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .env("API_WORKERS", "2")
            .env("DATABASE_URL", sqlite_url(&db_path))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("rinha-api starts");
        processes.instances.push(Instance {
            address: format!("http://127.0.0.1:{port}"),
            http: http_client(),
            child,
        });
    }
    for instance in &mut processes.instances {
        wait_until_healthy(instance).await;
    }
    processes
}

async fn wait_until_healthy(instance: &mut Instance) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = instance.child.try_wait().expect("process status") {
            panic!("rinha-api exited at start with {status}");
        }
        let health = instance
            .http
            .get(format!("{}/health", instance.address))
            .send()
            .await;
        if health.is_ok_and(|response| response.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "rinha-api not healthy in 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens a database file read-only, beside the processes that write it.
pub async fn open_read_only(db_path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(db_path)
        .read_only(true);
    SqlitePool::connect_with(options).await.expect("open db")
}

/// A transaction row as stored.
#[derive(Debug)]
pub struct StoredTransaction {
    pub cliente_id: i64,
    pub valor: i64,
    pub tipo: String,
    pub descricao: String,
    pub saldo_apos: i64,
}

impl StoredTransaction {
    /// `+valor` for a credit, `-valor` for a debit.
    pub fn signed(&self) -> i64 {
        if self.tipo == "c" {
            self.valor
        } else {
            -self.valor
        }
    }
}

/// Every stored transaction, in commit order, read directly from the database file.
pub async fn stored_ledger(db_path: &Path) -> Vec<StoredTransaction> {
    let pool = open_read_only(db_path).await;
    let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
        "SELECT cliente_id, valor, tipo, descricao, saldo_apos FROM transacoes ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("read ledger");
    pool.close().await;
    rows.into_iter()
        .map(
            |(cliente_id, valor, tipo, descricao, saldo_apos)| StoredTransaction {
                cliente_id,
                valor,
                tipo,
                descricao,
                saldo_apos,
            },
        )
        .collect()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// The samples of a Prometheus text exposition: `name{label="value",...} value` lines. Only
/// what the tests read; `promtool check metrics` is the validity check (tests/api/metrics.rs).
#[derive(Debug, Clone)]
pub struct Samples(pub Vec<Sample>);

/// One sample: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

impl Samples {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                let value: f64 = value.parse().expect("a sample value");
                let (name, labels) = match series.split_once('{') {
                    None => (series.to_owned(), Vec::new()),
                    Some((name, rest)) => {
                        let labels = rest
                            .trim_end_matches('}')
                            .split("\",")
                            .filter(|pair| !pair.is_empty())
                            .map(|pair| {
                                let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                                (key.to_owned(), value.trim_end_matches('"').to_owned())
                            })
                            .collect();
                        (name.to_owned(), labels)
                    }
                };
                (name, labels, value)
            })
            .collect();
        Self(samples)
    }

    /// The value of the one series `name` with exactly these labels (in any order); 0 when
    /// there is none (a counter not yet registered has not moved).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut matching = self.0.iter().filter(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(key, value)| l.iter().any(|(k, v)| k == key && v == value))
        });
        let value = matching.next().map_or(0.0, |(_, _, value)| *value);
        assert!(matching.next().is_none(), "two series {name}{labels:?}");
        value
    }

    /// Every value of label `label` among the series named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> std::collections::BTreeSet<String> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .flat_map(|(_, labels, _)| labels.iter().filter(|(k, _)| k == label))
            .map(|(_, value)| value.clone())
            .collect()
    }
}
