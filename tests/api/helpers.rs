//! Starting the real server for a test, and talking to it.
//!
//! [`spawn_app`] runs the server in-process on port 0 with a new, empty database of its own;
//! [`spawn_processes`] starts real `rinha-api` processes on one shared database, as the
//! deployment does.
//!
//! The backend is chosen per run by `TEST_DATABASE` ([`TestDatabase`]): `sqlite` (default) gives
//! each test a new file in a temporary directory; `postgres` gives each test a schema of its own
//! (its own `clientes` and `transacoes`, through the connection's `search_path`) in the database at
//! `TEST_POSTGRES_URL` (default [`DEFAULT_POSTGRES_URL`], what `scripts/postgres-setup` makes),
//! dropped when the test ends. A schema rather than a database because creating a database took
//! 1-2.4 s here and a schema takes milliseconds. The same suites run on both: `scripts/test` runs the
//! contract, rules and processes modules a second time with `TEST_DATABASE=postgres`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use rinha_api::config::Config;
use rinha_api::db::DatabaseSettings;
use rinha_api::startup::Application;
use serde_json::Value;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use tempfile::TempDir;

pub use crate::ports::{free_port, free_ports_in_a_row};

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

/// The PostgreSQL server the tests use when `TEST_POSTGRES_URL` is unset: `scripts/postgres-setup`.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://rinha:rinha@127.0.0.1:5432/rinha";

/// A new, empty database for one test, on the backend `TEST_DATABASE` names; gone when dropped.
#[derive(Debug)]
pub enum TestDatabase {
    /// A file in a temporary directory of its own.
    Sqlite { path: PathBuf, _dir: TempDir },
    /// A schema of its own in the test database, created empty (the API creates the tables).
    Postgres { server_url: String, schema: String },
}

impl TestDatabase {
    pub async fn new() -> Self {
        match std::env::var("TEST_DATABASE").as_deref() {
            Err(_) | Ok("" | "sqlite") => {
                let dir = tempfile::tempdir().expect("temp dir");
                Self::Sqlite {
                    path: dir.path().join("rinha.db"),
                    _dir: dir,
                }
            }
            Ok("postgres") => Self::new_postgres().await,
            Ok(other) => panic!("TEST_DATABASE={other:?}: expected sqlite or postgres"),
        }
    }

    async fn new_postgres() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CREATED: AtomicU64 = AtomicU64::new(0);
        let server_url =
            std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let schema = format!(
            "rinha_test_{}_{}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "TEST_DATABASE=postgres: cannot reach {server_url} ({err}); \
                 run scripts/postgres-setup or set TEST_POSTGRES_URL"
                )
            });
        // A leftover of an earlier run with the same pid goes first.
        let statement = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .expect("create the test schema");
        admin.close().await.ok();
        Self::Postgres { server_url, schema }
    }

    /// What `DATABASE_URL` the API gets.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => sqlite_url(path),
            Self::Postgres { server_url, schema } => {
                let separator = if server_url.contains('?') { '&' } else { '?' };
                format!("{server_url}{separator}options[search_path]={schema}")
            }
        }
    }

    /// The SQLite file, for the tests of SQLite's own machinery (the writer's batches).
    pub fn sqlite_path(&self) -> &Path {
        match self {
            Self::Sqlite { path, .. } => path,
            Self::Postgres { .. } => panic!("a SQLite-only test ran with TEST_DATABASE=postgres"),
        }
    }

    /// Every client and its limit, read directly from the database, by id.
    pub async fn clients(&self) -> Vec<(i64, i64)> {
        const QUERY: &str = "SELECT id, limite FROM clientes ORDER BY id";
        match self {
            Self::Sqlite { path, .. } => {
                let pool = open_read_only(path).await;
                let clients = sqlx::query_as(QUERY)
                    .fetch_all(&pool)
                    .await
                    .expect("clients");
                pool.close().await;
                clients
            }
            Self::Postgres { .. } => {
                let mut connection = self.connect_postgres().await;
                let clients = sqlx::query_as(QUERY)
                    .fetch_all(&mut connection)
                    .await
                    .expect("clients");
                connection.close().await.ok();
                clients
            }
        }
    }

    /// Every stored transaction, read directly from the database, each client's in its commit
    /// order (SQLite's rowid order is the commit order of every client at once; PostgreSQL
    /// numbers each client's transactions under that client's row lock).
    pub async fn stored_ledger(&self) -> Vec<StoredTransaction> {
        match self {
            Self::Sqlite { path, .. } => stored_ledger(path).await,
            Self::Postgres { .. } => {
                let mut connection = self.connect_postgres().await;
                let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
                    "SELECT cliente_id, valor, tipo, descricao, saldo_apos
                     FROM transacoes ORDER BY cliente_id, numero",
                )
                .fetch_all(&mut connection)
                .await
                .expect("read ledger");
                connection.close().await.ok();
                rows.into_iter().map(StoredTransaction::from).collect()
            }
        }
    }

    /// Checks each client's numbering on PostgreSQL: its transactions are numbered 1, 2, ...
    /// with no gap and no repeat, and `clientes.ultima` is the last number. (SQLite numbers
    /// nothing: its order is the rowid's.)
    pub async fn assert_numbering_contiguous(&self) {
        let Self::Postgres { .. } = self else {
            return;
        };
        let mut connection = self.connect_postgres().await;
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT c.id, c.ultima, count(t.numero),
                    coalesce(min(t.numero), 1), coalesce(max(t.numero), 0)
             FROM clientes AS c LEFT JOIN transacoes AS t ON t.cliente_id = c.id
             GROUP BY c.id, c.ultima ORDER BY c.id",
        )
        .fetch_all(&mut connection)
        .await
        .expect("read the numbering");
        connection.close().await.ok();
        for (client, ultima, count, first, last) in rows {
            // (cliente_id, numero) is the primary key, so no repeat: count, first and last
            // together say 1..=ultima, every one.
            assert_eq!(
                (first, last, count),
                (1, ultima, ultima),
                "client {client}: numbers {first}..={last}, {count} rows, ultima {ultima}"
            );
        }
    }

    /// Holds what a write to client `client` must wait for, until the returned guard is
    /// released: SQLite's write lock on the whole file, or PostgreSQL's lock on the client's row.
    pub async fn hold_write_lock(&self, client: i64) -> HeldWriteLock {
        match self {
            Self::Sqlite { path, .. } => hold_sqlite_write_lock(path, Duration::from_secs(5)).await,
            Self::Postgres { .. } => {
                let mut connection = self.connect_postgres().await;
                sqlx::raw_sql("BEGIN")
                    .execute(&mut connection)
                    .await
                    .expect("begin");
                sqlx::query("SELECT 1 FROM clientes WHERE id = $1 FOR UPDATE")
                    .bind(client)
                    .execute(&mut connection)
                    .await
                    .expect("lock the client's row");
                HeldWriteLock::Postgres(connection)
            }
        }
    }

    async fn connect_postgres(&self) -> PgConnection {
        PgConnection::connect(&self.url())
            .await
            .expect("connect to the test database")
    }
}

/// SQLite's write lock on the file at `path`, taken from a connection of the test's own
/// (`BEGIN IMMEDIATE`), waiting at most `busy_timeout` for whoever holds it now.
pub async fn hold_sqlite_write_lock(path: &Path, busy_timeout: Duration) -> HeldWriteLock {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(busy_timeout);
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("open the file");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut connection)
        .await
        .expect("take the write lock");
    HeldWriteLock::Sqlite(connection)
}

/// A lock held by a test on the database (see [`TestDatabase::hold_write_lock`]).
#[derive(Debug)]
pub enum HeldWriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(PgConnection),
}

impl HeldWriteLock {
    /// Rolls back the test's transaction, which releases the lock.
    pub async fn release(self) {
        match self {
            Self::Sqlite(mut connection) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .expect("release the write lock");
                connection.close().await.ok();
            }
            Self::Postgres(mut connection) => {
                sqlx::raw_sql("ROLLBACK")
                    .execute(&mut connection)
                    .await
                    .expect("release the row lock");
                connection.close().await.ok();
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Self::Postgres { server_url, schema } = self else {
            return;
        };
        // Drop may run inside the test's runtime, which cannot block on itself: a thread with a
        // runtime of its own.
        let (server_url, statement) = (
            server_url.clone(),
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        );
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server_url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {schema}: {dropped:?}");
        }
    }
}

/// A running API and a client for it.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub http: Client,
    /// The database the server writes.
    pub db: TestDatabase,
}

/// Starts the server in this process on a free port and a new database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The same, with `adjust` applied to the configuration first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDatabase::new().await;
    let mut config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        database: DatabaseSettings {
            url: db.url(),
            ..DatabaseSettings::default()
        },
        workers: 2,
        ..Config::default()
    };
    adjust(&mut config);
    let app = Application::build(config).await.expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        http: http_client(),
        db,
    }
}

pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A reqwest client builder. Built in one workspace with the load tester, reqwest carries rustls
/// without a crypto provider (Cargo unifies a dependency's features across the workspace), and
/// building any client, a plain http:// one included, then needs a process-wide default: ring's,
/// installed here once.
pub fn client_builder() -> reqwest::ClientBuilder {
    #[allow(deprecated)] // ring lacks post-quantum key exchange; these clients speak plain HTTP.
    let provider = rustls::crypto::ring::default_provider();
    // Err means a provider is installed already: this one, by an earlier call.
    let _ = provider.install_default();
    Client::builder()
}

pub fn http_client() -> Client {
    client_builder()
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
        metrics_at(self.client(), self.base()).await
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

/// Real `rinha-api` processes sharing one database; killed when dropped (then the database is).
#[derive(Debug)]
pub struct Processes {
    pub instances: Vec<Instance>,
    pub db: TestDatabase,
}

/// One running `rinha-api` process.
#[derive(Debug)]
pub struct Instance {
    pub address: String,
    pub http: Client,
    child: Child,
}

impl Instance {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_for_exit(timeout)
    }

    /// Sends SIGTERM, without waiting.
    pub fn send_sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
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

/// Starts `count` `rinha-api` processes at the same moment on one new database and waits until
/// each answers `/health`.
pub async fn spawn_processes(count: usize) -> Processes {
    spawn_processes_with(count, &[]).await
}

/// [`spawn_processes`], each process with the settings `env` added to its environment.
pub async fn spawn_processes_with(count: usize, env: &[(&str, &str)]) -> Processes {
    let db = TestDatabase::new().await;
    let database_url = db.url();
    let mut processes = Processes {
        instances: Vec::new(),
        db,
    };
    for _ in 0..count {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rinha-api"))
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .env("API_WORKERS", "2")
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
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

/// Reads an HTTP/1.1 answer on `socket` until the server closes it (send `Connection: close`, or
/// half-close), within 10 s: its status and its body.
pub async fn read_answer(socket: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("the answer is read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
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

impl From<(i64, i64, String, String, i64)> for StoredTransaction {
    fn from(
        (cliente_id, valor, tipo, descricao, saldo_apos): (i64, i64, String, String, i64),
    ) -> Self {
        Self {
            cliente_id,
            valor,
            tipo,
            descricao,
            saldo_apos,
        }
    }
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

/// Every stored transaction, in commit order, read directly from a SQLite file.
pub async fn stored_ledger(db_path: &Path) -> Vec<StoredTransaction> {
    let pool = open_read_only(db_path).await;
    let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
        "SELECT cliente_id, valor, tipo, descricao, saldo_apos FROM transacoes ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("read ledger");
    pool.close().await;
    rows.into_iter().map(StoredTransaction::from).collect()
}

/// `GET {base}/metrics`, parsed: the API's own port, or the one `API_METRICS_PORT` names.
pub async fn metrics_at(client: &Client, base: &str) -> Samples {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    let status = response.status();
    let text = response.text().await.expect("a text body");
    assert_eq!(status, StatusCode::OK, "GET /metrics: {text}");
    Samples::parse(&text)
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
