//! A small in-memory implementation of the contract, with one deliberate fault at a time.
//!
//! The tester is only trustworthy if it fails the servers it should fail and passes the ones it
//! should pass, so the same implementation serves both: [`Fault::None`] is a correct server
//! (the control), every other variant breaks exactly one promise of the contract.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{net::TcpListener, time::Instant};

/// The contract's clients and limits, duplicated on purpose: the fake must not share the
/// tester's idea of the contract, or a mistake in one would hide in both.
const LIMITS: [i64; 5] = [100_000, 80_000, 1_000_000, 10_000_000, 500_000];

/// Which promise the server breaks.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// None: a correct server.
    None,
    /// Accepts every debit, letting balances go below `-limite`.
    IgnoresLimit,
    /// Answers every n-th accepted transaction with a correct-looking `200` but never stores it.
    LosesEveryNthWrite(u64),
    /// Applies every n-th transaction, then drops the connection without answering.
    AppliesThenDropsEveryNth(u64),
    /// When request number `after` arrives, stops answering for `stall`: every request that
    /// arrives meanwhile is held until the stall ends.
    StallsOnce { after: u64, stall: Duration },
    /// Lists statement entries oldest first instead of newest first.
    ListsOldestFirst,
}

#[derive(Debug, Clone)]
struct Entry {
    valor: i64,
    tipo: String,
    descricao: String,
    realizada_em: String,
}

#[derive(Debug, Default)]
struct Account {
    saldo: i64,
    /// Newest first, at most 10.
    recent: VecDeque<Entry>,
}

#[derive(Debug)]
struct State {
    fault: Fault,
    accounts: Mutex<[Account; 5]>,
    requests: AtomicU64,
    writes: AtomicU64,
    stall_until: Mutex<Option<Instant>>,
}

/// A running fake server; it stops when the test's runtime does.
#[derive(Debug)]
pub struct FakeServer {
    pub address: SocketAddr,
}

impl FakeServer {
    /// The base URL to give the tester.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

/// Starts a fake server with `fault` on a free loopback port.
pub async fn spawn(fault: Fault) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("bound address");
    let state = Arc::new(State {
        fault,
        accounts: Mutex::new(Default::default()),
        requests: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        stall_until: Mutex::new(None),
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = service_fn(move |request| handle(Arc::clone(&state), request));
                // A connection ending in an error is expected for the dropping fault.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FakeServer { address }
}

/// The error a handler returns to make hyper drop the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

type Answer = Result<Response<Full<Bytes>>, DropConnection>;

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Answer {
    let number = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if let Fault::StallsOnce { after, stall } = state.fault {
        let until = {
            let mut stall_until = state
                .stall_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if number == after {
                *stall_until = Some(Instant::now() + stall);
            }
            *stall_until
        };
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::POST, ["reset"]) => {
            *lock(&state.accounts) = Default::default();
            Ok(reply(StatusCode::OK, json!({})))
        }
        (Method::GET, ["clientes", id, "extrato"]) => Ok(match account_index(id) {
            Some(index) => statement(&state, index),
            None => reply(StatusCode::NOT_FOUND, json!({"error": "unknown client"})),
        }),
        (Method::POST, ["clientes", id, "transacoes"]) => match account_index(id) {
            Some(index) => transaction(&state, index, &body),
            None => Ok(reply(
                StatusCode::NOT_FOUND,
                json!({"error": "unknown client"}),
            )),
        },
        _ => Ok(reply(
            StatusCode::NOT_FOUND,
            json!({"error": "no such route"}),
        )),
    }
}

fn account_index(id: &str) -> Option<usize> {
    let id: usize = id.parse().ok()?;
    (1..=LIMITS.len()).contains(&id).then(|| id - 1)
}

fn statement(state: &State, index: usize) -> Response<Full<Bytes>> {
    let accounts = lock(&state.accounts);
    let account = &accounts[index];
    let mut entries: Vec<&Entry> = account.recent.iter().collect();
    if matches!(state.fault, Fault::ListsOldestFirst) {
        entries.reverse();
    }
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| json!({"valor": e.valor, "tipo": e.tipo, "descricao": e.descricao, "realizada_em": e.realizada_em}))
        .collect();
    reply(
        StatusCode::OK,
        json!({
            "saldo": {"total": account.saldo, "data_extrato": "2024-01-17T02:34:41.217753Z", "limite": LIMITS[index]},
            "ultimas_transacoes": entries,
        }),
    )
}

fn transaction(state: &State, index: usize, body: &[u8]) -> Answer {
    let Some((valor, tipo, descricao)) = parse_transaction(body) else {
        return Ok(reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "invalid body"}),
        ));
    };
    let limit = LIMITS[index];
    let mut accounts = lock(&state.accounts);
    let account = &mut accounts[index];
    let saldo = if tipo == "c" {
        account.saldo + valor
    } else {
        account.saldo - valor
    };
    if saldo < -limit && !matches!(state.fault, Fault::IgnoresLimit) {
        return Ok(reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "limit"}),
        ));
    }
    let write = state.writes.fetch_add(1, Ordering::SeqCst) + 1;
    let lost = matches!(state.fault, Fault::LosesEveryNthWrite(n) if write.is_multiple_of(n));
    if !lost {
        account.saldo = saldo;
        account.recent.push_front(Entry {
            valor,
            tipo: tipo.clone(),
            descricao,
            realizada_em: format!("2024-01-17T02:34:38.{write:06}Z"),
        });
        account.recent.truncate(10);
    }
    if matches!(state.fault, Fault::AppliesThenDropsEveryNth(n) if write.is_multiple_of(n)) {
        return Err(DropConnection);
    }
    Ok(reply(
        StatusCode::OK,
        json!({"limite": limit, "saldo": saldo}),
    ))
}

/// `(valor, tipo, descricao)` when the body follows the contract.
fn parse_transaction(body: &[u8]) -> Option<(i64, String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let valor = value.get("valor")?.as_i64().filter(|v| *v > 0)?;
    let tipo = value
        .get("tipo")?
        .as_str()
        .filter(|t| *t == "c" || *t == "d")?;
    let descricao = value
        .get("descricao")?
        .as_str()
        .filter(|d| (1..=10).contains(&d.chars().count()))?;
    Some((valor, tipo.to_owned(), descricao.to_owned()))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
