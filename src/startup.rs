//! Builds the application (metrics, storage, listeners, routes) and runs it until it is told to
//! stop.
//!
//! [`Application::build`] binds the listener before anything runs, so a caller that asked for
//! port 0 (the tests) learns the real port from [`Application::port`], and the production binary
//! and the tests start the server the same way. [`Application::run_until`] takes the stop signal
//! as an argument (mini-redis's `server::run(listener, shutdown)`); `main` passes SIGINT/SIGTERM.
//!
//! Stopping: the server stops accepting connections and finishes the requests in flight (for up
//! to [`SHUTDOWN_TIMEOUT`]) while storage stops taking writes, commits the ones it has queued,
//! and closes. A request that reaches storage after that is answered 503, "stopping".

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::dev::{Server, Service as _};
use actix_web::http::KeepAlive;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, web};

use crate::config::Config;
use crate::db::{Database, StorageError};
use crate::metrics::Metrics;
use crate::openapi::{self, Document, ROUTES};
use crate::overload::{self, Limiter};
use crate::routes::metrics::MetricsOnApi;
use crate::routes::{fallback, metrics as metrics_route};

/// How long an idle client connection is kept open. nginx's upstream `keepalive_timeout` must be
/// shorter, so nginx never reuses a connection the API has just closed (the sporadic-502 race).
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// How long a stopping server waits for the requests in flight before it drops them.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the metrics' histograms are drained into their buckets when nobody scrapes (each
/// sample is held until then: at 10,000 requests a second, 5 s hold under a megabyte).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// A built, listening, not yet running server.
pub struct Application {
    port: u16,
    socket: Option<PathBuf>,
    server: Server,
    /// The `/metrics`-only server on `API_METRICS_PORT`, when that is set.
    metrics_server: Option<Server>,
    db: Database,
    metrics: Metrics,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database {database}: {source}")]
    Database {
        /// The database's URL, password hidden: which file or server it is.
        database: String,
        source: StorageError,
    },
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: io::Error },
}

impl Application {
    /// Binds the listeners, then opens the database (applying `script.sql`).
    ///
    /// Listening first: a connection that arrives while the database is still being opened (a
    /// PostgreSQL server still initialising its volume, the API waiting for it) waits in the
    /// listen queue and is served once the database is open, instead of being refused. nginx
    /// counts a refused connection as a failure and takes the instance out of rotation for its
    /// `fail_timeout`, so refusing would delay the stack's first answer by up to that much after
    /// the instance is ready (2.8 s of the 7.5 s to the first 200 on docker-compose.postgres.yml
    /// when measured).
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let metrics = Metrics::new(&ROUTES);
        let address = format!("{}:{}", config.host, config.port);
        let listen_error = |source| StartupError::Listen {
            address: address.clone(),
            source,
        };
        let listener = TcpListener::bind(&address).map_err(listen_error)?;
        let port = listener.local_addr().map_err(listen_error)?.port();
        let unix_listener = match &config.socket {
            Some(path) => Some(bind_unix(path).map_err(|source| StartupError::Listen {
                address: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        let metrics_listener = match config.metrics_port {
            Some(port) => {
                let address = format!("{}:{port}", config.host);
                match TcpListener::bind(&address) {
                    Ok(listener) => Some((listener, address)),
                    Err(source) => return Err(StartupError::Listen { address, source }),
                }
            }
            None => None,
        };
        let db = Database::connect(&config.database, metrics.storage())
            .await
            .map_err(|source| StartupError::Database {
                database: config.database.redacted_url(),
                source,
            })?;
        let server = serve(
            Listeners {
                tcp: listener,
                unix: unix_listener,
            },
            db.clone(),
            metrics.clone(),
            &config,
        )
        .map_err(listen_error)?;
        let metrics_server = match metrics_listener {
            Some((listener, address)) => Some(
                serve_metrics(listener, metrics.clone())
                    .map_err(|source| StartupError::Listen { address, source })?,
            ),
            None => None,
        };
        Ok(Self {
            port,
            socket: config.socket,
            server,
            metrics_server,
            db,
            metrics,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then stops (see the module's header).
    pub async fn run_until_stopped(self) -> io::Result<()> {
        self.run_until(stop_signal()).await
    }

    /// Serves until `stop` completes (or the server fails), then stops: the server finishes the
    /// requests in flight while storage commits its queued writes and closes.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> io::Result<()> {
        let server = self.server.handle();
        let mut serving = tokio::spawn(self.server);
        let metrics_server = self.metrics_server.map(|server| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let upkeep = tokio::spawn(metrics_upkeep(self.metrics.clone()));
        let early = tokio::select! {
            served = &mut serving => Some(served),
            () = stop => None,
        };
        if early.is_none() {
            tracing::info!("stopping");
        }
        let (_, ()) = tokio::join!(server.stop(true), self.db.close());
        if let Some(metrics_server) = metrics_server {
            metrics_server.stop(false).await;
        }
        let served = match early {
            Some(served) => served,
            None => serving.await,
        };
        upkeep.abort();
        if let Some(path) = &self.socket {
            std::fs::remove_file(path).ok();
        }
        served.unwrap_or_else(|err| Err(io::Error::other(err)))
    }
}

/// Completes at the first SIGINT or SIGTERM (Ctrl-C, `docker stop`, `kill`).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(error = %err, "cannot listen for SIGINT/SIGTERM; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Listens on a Unix socket at `path`, replacing the socket file a killed instance left behind
/// (but not one a live process answers on, nor anything that is not a socket), and lets any local
/// user connect: nginx's workers run as another user than the API.
fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket()) {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is listening on this socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Where the API listens: TCP, and a Unix socket when `API_SOCKET` is set.
#[derive(Debug)]
pub struct Listeners {
    pub tcp: TcpListener,
    pub unix: Option<UnixListener>,
}

/// Starts the Actix server on `listeners` with `config`'s workers, shedding load past its
/// bounds when they are set, and `/reset` and `/metrics` served as it says.
pub fn serve(
    listeners: Listeners,
    db: Database,
    metrics: Metrics,
    config: &Config,
) -> io::Result<Server> {
    let overload = config.overload;
    let reset = web::Data::new(config.reset.clone());
    let metrics_on_api = web::Data::new(MetricsOnApi(config.metrics_port.is_none()));
    let db = web::Data::new(db);
    let metrics = web::Data::new(metrics);
    let limiter = web::Data::new(Limiter::new(overload));
    let document = web::Data::new(Document::render());
    let server = HttpServer::new(move || {
        let timing = metrics.clone();
        App::new()
            .app_data(db.clone())
            .app_data(metrics.clone())
            .app_data(document.clone())
            .app_data(limiter.clone())
            .app_data(reset.clone())
            .app_data(metrics_on_api.clone())
            .configure(openapi::routes)
            .default_service(web::to(fallback::not_found))
            // Off (the default): `Condition` passes every request straight to the app.
            .wrap(Condition::new(overload.enabled(), from_fn(overload::limit)))
            // Registered last, so outermost: it sees every request, routed, shed or not, and the
            // status it got.
            .wrap_fn(move |request, service| {
                let timer = timing.start_request();
                let answer = service.call(request);
                async move {
                    let answer = answer.await;
                    timer.finish(&answer);
                    answer
                }
            })
    })
    .workers(config.workers)
    .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
    .backlog(4096)
    .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
    // `Application::run_until` decides when to stop.
    .disable_signals()
    .listen(listeners.tcp)?;
    let server = match listeners.unix {
        Some(unix_listener) => server.listen_uds(unix_listener)?,
        None => server,
    };
    Ok(server.run())
}

/// Serves `GET /metrics` alone on `listener` (`API_METRICS_PORT`), one worker thread: a port an
/// operator exposes to the scraper only, where the API's listeners (and so nginx) answer 404.
fn serve_metrics(listener: TcpListener, metrics: Metrics) -> io::Result<Server> {
    let metrics = web::Data::new(metrics);
    let exposed = web::Data::new(MetricsOnApi(true));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(metrics.clone())
            .app_data(exposed.clone())
            .route("/metrics", web::get().to(metrics_route::show))
            .default_service(web::to(fallback::not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?;
    Ok(server.run())
}

/// Drains the metrics' histograms every [`METRICS_UPKEEP`], so their pending samples stay
/// bounded whether or not anything scrapes `/metrics`.
async fn metrics_upkeep(metrics: Metrics) {
    let mut ticks = tokio::time::interval(METRICS_UPKEEP);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        metrics.upkeep();
    }
}
