//! HTTP access to the API under test: the four calls the tester makes, and nothing that judges them.
//!
//! Every call returns either the raw answer (status and body) or a [`CallError`] saying why
//! there is none. Judging the answer is `validate`'s job; keeping the two apart is what lets the
//! validation phase, the load and the audit share one definition of a correct answer. The one
//! decision made here is the connection policy: by default connections are pooled and reused
//! (keep-alive); `--no-keepalive` keeps no idle connection, so every request opens its own, as
//! the official Gatling test effectively did, and over TLS makes a full handshake, since each
//! request stands for a new client. `https://` targets speak HTTP/1.1 or, with `--http2`,
//! HTTP/2, each the only protocol offered by ALPN ([`crate::tls`]); every connection opened and
//! every answer's protocol is counted ([`crate::transport`]).

use std::time::Duration;

use reqwest::header::{CONNECTION, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::{
    contract::ClientId,
    error::Error,
    tls::{self, TlsOptions, Trust},
    transport::TransportCounters,
};

/// A status and body received from the server.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The full body.
    pub body: Vec<u8>,
}

/// Why a call produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No complete answer within the per-request timeout.
    Timeout,
    /// The connection failed or broke (refused, reset, closed mid-answer, malformed HTTP).
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("timed out"),
            CallError::Transport(detail) => write!(f, "transport error: {detail}"),
        }
    }
}

/// How the HTTP client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Limit for one whole request, connect to last body byte.
    pub timeout: Duration,
    /// Reuse connections between requests.
    pub keepalive: bool,
    /// Speak HTTP/2 (negotiated by ALPN, so `https://` only) instead of HTTP/1.1.
    pub http2: bool,
    /// Which certificates an `https://` target may present; `None`: the system's roots
    /// (`--cacert` and `--insecure` apply to `https://` only).
    pub trust: Option<Trust>,
}

/// The API under test, reached at one base URL.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    protocol: &'static str,
    tls: bool,
    transport: TransportCounters,
}

impl Api {
    /// A client for the API at `base_url` (e.g. `http://127.0.0.1:9999` or
    /// `https://localhost:9443`).
    pub fn new(base_url: &str, options: ClientOptions) -> Result<Self, Error> {
        let url = reqwest::Url::parse(base_url)
            .map_err(|e| Error::InvalidOptions(format!("target URL {base_url:?}: {e}")))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(Error::InvalidOptions(format!(
                    "target URL {base_url:?}: only http:// and https:// are supported"
                )));
            }
        };
        if !tls && options.http2 {
            return Err(Error::InvalidOptions(format!(
                "--http2 needs an https:// target: HTTP/2 is agreed in the TLS handshake (ALPN), \
                 and {base_url} is plain http"
            )));
        }
        if !tls && options.trust.is_some() {
            return Err(Error::InvalidOptions(format!(
                "--cacert and --insecure are for https:// targets; {base_url} is plain http"
            )));
        }
        // reqwest builds a TLS configuration even for a plain http:// client, from the process's
        // crypto provider.
        tls::install_crypto_provider();
        let transport = TransportCounters::default();
        let mut headers = HeaderMap::new();
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            // The target is given explicitly; never route it through a proxy from the environment.
            .no_proxy()
            .tcp_nodelay(true)
            .connector_layer(transport.layer());
        builder = if options.http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        if tls {
            builder = builder.tls_backend_preconfigured(tls::client_config(&TlsOptions {
                trust: options.trust.clone().unwrap_or(Trust::System),
                http2: options.http2,
                resumption: options.keepalive,
            })?);
        }
        if !options.keepalive {
            // No connection goes back to the pool, so each request dials anew, HTTP/2 included
            // (a connection no request uses is closed). `Connection: close` also tells an
            // HTTP/1.1 server not to hold the socket open for a request that will never come;
            // HTTP/2 has no such header.
            builder = builder.pool_max_idle_per_host(0);
            if !options.http2 {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let http = builder
            .default_headers(headers)
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            protocol: if options.http2 { "HTTP/2" } else { "HTTP/1.1" },
            tls,
            transport,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The protocol asked for: "HTTP/1.1" or "HTTP/2".
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// Whether the target is `https://`.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Connections opened and answers by protocol, so far.
    pub fn transport(&self) -> &TransportCounters {
        &self.transport
    }

    /// `POST /clientes/{client}/transacoes` with a JSON body.
    pub async fn transaction(
        &self,
        client: ClientId,
        body: &serde_json::Value,
    ) -> Result<Answer, CallError> {
        self.post_raw(&format!("/clientes/{client}/transacoes"), body.to_string())
            .await
    }

    /// `POST path` with `body` sent verbatim as JSON (used for deliberately invalid bodies).
    pub async fn post_raw(&self, path: &str, body: String) -> Result<Answer, CallError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        self.answer(request).await
    }

    /// `GET /clientes/{client}/extrato`.
    pub async fn statement(&self, client: ClientId) -> Result<Answer, CallError> {
        self.answer(
            self.http
                .get(format!("{}/clientes/{client}/extrato", self.base)),
        )
        .await
    }

    /// `POST /reset`, with `token` as `Authorization: Bearer` when given.
    pub async fn reset(&self, token: Option<&str>) -> Result<Answer, CallError> {
        let mut request = self.http.post(format!("{}/reset", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.answer(request).await
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<Answer, CallError> {
        let response = request.send().await.map_err(classify)?;
        self.transport.answered(response.version());
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(classify)?;
        Ok(Answer {
            status,
            body: body.to_vec(),
        })
    }
}

fn classify(error: reqwest::Error) -> CallError {
    if error.is_timeout() {
        return CallError::Timeout;
    }
    // reqwest's Display only names the outermost layer ("error sending request"); the cause
    // chain says what actually happened ("connection refused", "connection closed before
    // message completed").
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    CallError::Transport(detail)
}
