//! Every setting of the service, read from the environment once at start and passed down.
//!
//! Names follow the original design (`DATABASE_URL`, `API_HOST`, `API_PORT`, `RUST_LOG`); the rest
//! are tuning knobs with defaults that suit the challenge's deployment (two instances, half a CPU
//! each). A value that does not parse stops the process at start with a message naming the
//! variable, rather than falling back to a default the operator did not ask for.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::overload::OverloadSettings;

/// The service's settings. `Config::default()` is what an empty environment gives.
#[derive(Debug, Clone)]
pub struct Config {
    /// `API_HOST`: address to listen on.
    pub host: String,
    /// `API_PORT`: port to listen on; 0 picks a free one (tests).
    pub port: u16,
    /// `API_SOCKET`: a Unix socket path to listen on as well (nginx's way in when both run on
    /// one host; cheaper than TCP loopback). Unset: TCP only. A stale socket file is replaced.
    pub socket: Option<PathBuf>,
    /// `DATABASE_URL`: the SQLite file, as `sqlite://path` (relative to the working directory) or
    /// `sqlite:///absolute/path`, created if missing; or a PostgreSQL database,
    /// `postgres://user:password@host:port/database`, which must exist (the schema is created).
    pub database_url: String,
    /// `DB_CONNECTIONS`: PostgreSQL only, the connections of this instance's pool (each write
    /// and each statement holds one for one round trip).
    pub pg_connections: u32,
    /// `API_WORKERS`: Actix worker threads; default, the CPUs this process may use.
    pub workers: usize,
    /// `DB_READ_CONNECTIONS`: connections for checkpoints, health checks, and statements when the
    /// write connection answers busy (each has its own thread).
    pub read_connections: u32,
    /// `DB_WRITE_BATCH_MAX`: the most transactions the writer commits together (group commit).
    /// It bounds how long one process holds the write lock at once; 1 turns grouping off.
    pub write_batch_max: usize,
    /// `DB_WRITE_LOCK`: how writers in different processes take turns: `sqlite` (default;
    /// SQLite's lock alone) or `flock` (an exclusive `flock` on a file beside the database around
    /// each batch, taken first). Either way the writer tries, and pauses between tries.
    pub write_lock: WriteLockKind,
    /// `DB_BUSY_HANDLER`: what a reader connection (statements, checkpoints) does while another
    /// holds a lock it needs: `backoff` (default; retries after 20 µs, backing off to 1 ms) or
    /// `sqlite` (SQLite's own handler, which sleeps 1, 2, 5, 10... ms; kept to measure the
    /// difference). The writer always waits with the backoff's pauses (`db::busy::Wait`).
    pub busy_handler: BusyHandler,
    /// `DB_BUSY_TIMEOUT_MS`: how long a write waits for another process's write lock before the
    /// request fails with 503.
    pub busy_timeout: Duration,
    /// `DB_WRITE_SYNC`: `off` (default) or `normal`, the write connection's `synchronous`. In WAL
    /// mode a commit is never synced at either level; what `normal` adds is an fsync of the WAL
    /// header each time the WAL starts over after a complete checkpoint, inside the next write
    /// (4-5 ms here, up to 30). Checkpoints always run at `normal` (on the readers), so the
    /// database file is synced before the WAL is reused either way.
    pub write_sync: WriteSync,
    /// `DB_CHECKPOINT_INTERVAL_MS`: how often a background task copies the WAL into the database
    /// file, so that no request pays for a checkpoint. 0 leaves it to SQLite's own
    /// auto-checkpoint, which runs inside a committing write.
    pub checkpoint_interval: Duration,
    /// `MAX_IN_FLIGHT`, `MAX_QUEUED`, `RETRY_AFTER_S`: load shedding, off by default (see
    /// `overload`).
    pub overload: OverloadSettings,
    /// `API_SCHED_POLICY`: how Linux schedules the process's threads: `batch` (the default on
    /// Linux; `SCHED_BATCH`, a woken thread does not preempt the one running) or `normal` (the
    /// default policy, `SCHED_OTHER`; the only one, and the default, elsewhere). See
    /// `scheduling`.
    pub sched_policy: SchedPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 9999,
            socket: None,
            database_url: "sqlite://rinha.db".to_owned(),
            pg_connections: 4,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            read_connections: 2,
            write_batch_max: 64,
            write_lock: WriteLockKind::Sqlite,
            busy_handler: BusyHandler::Backoff,
            busy_timeout: Duration::from_secs(5),
            checkpoint_interval: Duration::from_millis(1000),
            write_sync: WriteSync::Off,
            overload: OverloadSettings::default(),
            sched_policy: if cfg!(target_os = "linux") {
                SchedPolicy::Batch
            } else {
                SchedPolicy::Normal
            },
        }
    }
}

/// What a connection does while another connection holds SQLite's write lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyHandler {
    /// Short sleeps doubling from 20 µs to 1 ms (see `db::busy`).
    Backoff,
    /// SQLite's built-in `sqlite3_busy_timeout` handler (1, 2, 5, 10, ... ms sleeps).
    Sqlite,
}

impl FromStr for BusyHandler {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        one_of(
            value,
            &[("backoff", Self::Backoff), ("sqlite", Self::Sqlite)],
        )
    }
}

/// How writers in different processes take turns on the shared file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteLockKind {
    /// SQLite's own write lock, waited for through the busy handler.
    Sqlite,
    /// An exclusive `flock` around each batch, then SQLite's lock.
    Flock,
}

impl FromStr for WriteLockKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        one_of(value, &[("sqlite", Self::Sqlite), ("flock", Self::Flock)])
    }
}

/// The write connection's `synchronous` level (see [`Config::write_sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteSync {
    Off,
    Normal,
}

impl FromStr for WriteSync {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        one_of(value, &[("off", Self::Off), ("normal", Self::Normal)])
    }
}

/// How Linux schedules the process's threads (see [`Config::sched_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedPolicy {
    /// `SCHED_BATCH`: a woken thread does not preempt the running one (Linux only).
    Batch,
    /// Linux's default policy, `SCHED_OTHER`.
    Normal,
}

impl std::fmt::Display for SchedPolicy {
    /// The name `API_SCHED_POLICY` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Batch => "batch",
            Self::Normal => "normal",
        })
    }
}

impl FromStr for SchedPolicy {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        one_of(value, &[("batch", Self::Batch), ("normal", Self::Normal)])
    }
}

/// The value named `value` among `choices`, or "expected a or b" naming them all.
pub(crate) fn one_of<T: Copy>(value: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, choice)| *choice)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            format!("expected {}", names.join(" or "))
        })
}

/// A setting that is present but unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub(crate) name: &'static str,
    pub(crate) value: String,
    pub(crate) reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let config = Self {
            host: lookup("API_HOST").unwrap_or(defaults.host),
            port: parse(&lookup, "API_PORT")?.unwrap_or(defaults.port),
            socket: lookup("API_SOCKET")
                .filter(|path| !path.is_empty())
                .map(PathBuf::from),
            database_url: lookup("DATABASE_URL").unwrap_or(defaults.database_url),
            pg_connections: parse(&lookup, "DB_CONNECTIONS")?.unwrap_or(defaults.pg_connections),
            workers: parse(&lookup, "API_WORKERS")?.unwrap_or(defaults.workers),
            read_connections: parse(&lookup, "DB_READ_CONNECTIONS")?
                .unwrap_or(defaults.read_connections),
            write_batch_max: parse(&lookup, "DB_WRITE_BATCH_MAX")?
                .unwrap_or(defaults.write_batch_max),
            write_lock: parse(&lookup, "DB_WRITE_LOCK")?.unwrap_or(defaults.write_lock),
            busy_handler: parse(&lookup, "DB_BUSY_HANDLER")?.unwrap_or(defaults.busy_handler),
            busy_timeout: parse(&lookup, "DB_BUSY_TIMEOUT_MS")?
                .map_or(defaults.busy_timeout, Duration::from_millis),
            checkpoint_interval: parse(&lookup, "DB_CHECKPOINT_INTERVAL_MS")?
                .map_or(defaults.checkpoint_interval, Duration::from_millis),
            write_sync: parse(&lookup, "DB_WRITE_SYNC")?.unwrap_or(defaults.write_sync),
            overload: overload_settings(&lookup)?,
            sched_policy: parse(&lookup, "API_SCHED_POLICY")?.unwrap_or(defaults.sched_policy),
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |name, value: String, reason: &str| ConfigError {
            name,
            value,
            reason: reason.to_owned(),
        };
        if self.workers == 0 {
            return Err(invalid("API_WORKERS", "0".into(), "must be at least 1"));
        }
        if self.read_connections == 0 {
            return Err(invalid(
                "DB_READ_CONNECTIONS",
                "0".into(),
                "must be at least 1",
            ));
        }
        if self.pg_connections == 0 {
            return Err(invalid("DB_CONNECTIONS", "0".into(), "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.write_batch_max) {
            return Err(invalid(
                "DB_WRITE_BATCH_MAX",
                self.write_batch_max.to_string(),
                "must be between 1 and 10000",
            ));
        }
        if self.busy_timeout.is_zero() || self.busy_timeout > Duration::from_secs(60) {
            return Err(invalid(
                "DB_BUSY_TIMEOUT_MS",
                self.busy_timeout.as_millis().to_string(),
                "must be between 1 and 60000",
            ));
        }
        crate::db::check_url(&self.database_url).map_err(|reason| {
            // The value is echoed in the message: never its password.
            let shown = crate::db::redacted_url(&self.database_url);
            invalid("DATABASE_URL", shown, &reason)
        })
    }
}

/// The shedding bounds; `MAX_QUEUED` defaults to `MAX_IN_FLIGHT`.
fn overload_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<OverloadSettings, ConfigError> {
    let defaults = OverloadSettings::default();
    let max_in_flight = parse(lookup, "MAX_IN_FLIGHT")?.unwrap_or(defaults.max_in_flight);
    Ok(OverloadSettings {
        max_in_flight,
        max_queued: parse(lookup, "MAX_QUEUED")?.unwrap_or(max_in_flight),
        retry_after_s: parse(lookup, "RETRY_AFTER_S")?.unwrap_or(defaults.retry_after_s),
    })
}

/// Parses variable `name` if it is set.
fn parse<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let Some(value) = lookup(name) else {
        return Ok(None);
    };
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|err: T::Err| ConfigError {
            name,
            value,
            reason: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn an_empty_environment_gives_the_defaults() {
        let config = config_from(&[]).expect("defaults are valid");
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.port, 9999);
        assert_eq!(config.database_url, "sqlite://rinha.db");
    }

    #[test]
    fn every_variable_is_read() {
        let config = config_from(&[
            ("API_HOST", "127.0.0.1"),
            ("API_PORT", "8080"),
            ("API_SOCKET", "/run/rinha/api01.sock"),
            ("DATABASE_URL", "sqlite:///shared/rinha.db"),
            ("API_WORKERS", "3"),
            ("DB_READ_CONNECTIONS", "4"),
            ("DB_WRITE_BATCH_MAX", "8"),
            ("DB_WRITE_LOCK", "flock"),
            ("DB_WRITE_SYNC", "normal"),
            ("DB_BUSY_HANDLER", "sqlite"),
            ("DB_BUSY_TIMEOUT_MS", "250"),
            ("DB_CHECKPOINT_INTERVAL_MS", "0"),
            ("MAX_IN_FLIGHT", "64"),
            ("MAX_QUEUED", "128"),
            ("RETRY_AFTER_S", "2"),
            ("DB_CONNECTIONS", "6"),
            ("API_SCHED_POLICY", "normal"),
        ])
        .expect("valid settings");
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8080);
        assert_eq!(
            config.socket.as_deref(),
            Some(std::path::Path::new("/run/rinha/api01.sock"))
        );
        assert_eq!(config.database_url, "sqlite:///shared/rinha.db");
        assert_eq!(config.workers, 3);
        assert_eq!(config.read_connections, 4);
        assert_eq!(config.write_batch_max, 8);
        assert_eq!(config.write_lock, WriteLockKind::Flock);
        assert_eq!(config.write_sync, WriteSync::Normal);
        assert_eq!(config.busy_handler, BusyHandler::Sqlite);
        assert_eq!(config.busy_timeout, Duration::from_millis(250));
        assert_eq!(config.checkpoint_interval, Duration::ZERO);
        assert_eq!(
            config.overload,
            OverloadSettings {
                max_in_flight: 64,
                max_queued: 128,
                retry_after_s: 2
            }
        );
        assert!(
            !Config::default().overload.enabled(),
            "shedding is off by default"
        );
        let queued = config_from(&[("MAX_IN_FLIGHT", "32")]).expect("valid");
        assert_eq!(
            queued.overload.max_queued, 32,
            "MAX_QUEUED defaults to MAX_IN_FLIGHT"
        );
        assert_eq!(config.pg_connections, 6);
        assert_eq!(config.sched_policy, SchedPolicy::Normal);
        #[cfg(target_os = "linux")]
        assert_eq!(Config::default().sched_policy, SchedPolicy::Batch);
        for policy in [SchedPolicy::Batch, SchedPolicy::Normal] {
            assert_eq!(
                policy.to_string().parse(),
                Ok(policy),
                "named as it is read"
            );
        }
    }

    #[test]
    fn a_postgres_url_selects_postgres() {
        for url in [
            "postgres://rinha:rinha@db:5432/rinha",
            "postgresql://localhost/rinha",
        ] {
            let config = config_from(&[("DATABASE_URL", url)]).expect(url);
            assert_eq!(config.database_url, url);
        }
    }

    #[test]
    fn invalid_values_are_refused_with_the_variable_named() {
        let cases = [
            ("API_PORT", "99999", "port out of range"),
            ("API_PORT", "http", "not a number"),
            ("API_WORKERS", "0", "no workers"),
            ("DB_READ_CONNECTIONS", "0", "no readers"),
            ("DB_WRITE_BATCH_MAX", "0", "empty batches"),
            ("DB_WRITE_LOCK", "mutex", "unknown lock"),
            ("DB_WRITE_SYNC", "full", "unknown sync level"),
            ("DB_BUSY_HANDLER", "spin", "unknown handler"),
            ("API_SCHED_POLICY", "fifo", "a real-time policy"),
            ("DB_BUSY_TIMEOUT_MS", "0", "no patience"),
            ("MAX_IN_FLIGHT", "-1", "negative bound"),
            (
                "DATABASE_URL",
                "mysql://localhost/rinha",
                "no MySQL backend",
            ),
            ("DATABASE_URL", "postgres://host:port/rinha", "not a port"),
            ("DB_CONNECTIONS", "0", "an empty pool"),
            (
                "DATABASE_URL",
                "sqlite::memory:",
                "memory is per connection",
            ),
        ];
        for (name, value, why) in cases {
            let err = config_from(&[(name, value)]).expect_err(why);
            let message = err.to_string();
            assert!(message.contains(name), "{why}: {message}");
        }
    }
}
