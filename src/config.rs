//! Every setting of the service, read from the environment once at start and passed down.
//!
//! Names follow the original design (`DATABASE_URL`, `API_HOST`, `API_PORT`, `RUST_LOG`); the rest
//! are tuning knobs with defaults that suit the challenge's deployment (two instances, half a CPU
//! each). A value that does not parse stops the process at start with a message naming the
//! variable, rather than falling back to a default the operator did not ask for.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{DeserializeOwned, IntoDeserializer, value::Error as ChoiceError};

use crate::db::DatabaseSettings;
use crate::overload::OverloadSettings;
use crate::routes::reset::{ResetAccess, ResetSwitch};
use crate::scheduling::SchedPolicy;

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
    /// `API_WORKERS`: Actix worker threads; default, the CPUs this process may use.
    pub workers: usize,
    /// `DATABASE_URL` and the `DB_*` variables (see [`DatabaseSettings`]).
    pub database: DatabaseSettings,
    /// `MAX_IN_FLIGHT`, `MAX_QUEUED`, `RETRY_AFTER_S`: load shedding, off by default (see
    /// `overload`).
    pub overload: OverloadSettings,
    /// `API_SCHED_POLICY`: how Linux schedules the process's threads: `batch` (the default on
    /// Linux; `SCHED_BATCH`, a woken thread does not preempt the one running) or `normal` (the
    /// default policy, `SCHED_OTHER`; the only one, and the default, elsewhere). See
    /// `scheduling`.
    pub sched_policy: SchedPolicy,
    /// `API_RESET` (`on`, the default, or `off`) and `RESET_TOKEN`: who may `POST /reset`:
    /// anyone; with a token set, a caller presenting it as `Authorization: Bearer <token>`;
    /// with `off`, nobody.
    pub reset: ResetAccess,
    /// `API_METRICS_PORT`: serve `/metrics` on this port of `API_HOST` only, not on the API's
    /// listeners (so not through nginx). Unset: `/metrics` is an API route like the others.
    pub metrics_port: Option<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 9999,
            socket: None,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            database: DatabaseSettings::default(),
            overload: OverloadSettings::default(),
            sched_policy: SchedPolicy::default(),
            reset: ResetAccess::Open,
            metrics_port: None,
        }
    }
}

/// A value among named choices: an enum deriving `Deserialize` with its variants' names as
/// they are written (`#[serde(rename_all = "lowercase")]`). Its error names every choice.
#[derive(Debug)]
pub struct Choice<T>(pub T);

impl<T: DeserializeOwned> FromStr for Choice<T> {
    type Err = ChoiceError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        T::deserialize(value.into_deserializer()).map(Choice)
    }
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
            workers: parse(&lookup, "API_WORKERS")?.unwrap_or(defaults.workers),
            database: database_settings(&lookup)?,
            overload: overload_settings(&lookup)?,
            sched_policy: parse(&lookup, "API_SCHED_POLICY")?
                .map_or(defaults.sched_policy, |Choice(policy)| policy),
            reset: reset_access(&lookup)?,
            metrics_port: parse(&lookup, "API_METRICS_PORT")?,
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
        let database = &self.database;
        if self.workers == 0 {
            return Err(invalid("API_WORKERS", "0".into(), "must be at least 1"));
        }
        if database.read_connections == 0 {
            return Err(invalid(
                "DB_READ_CONNECTIONS",
                "0".into(),
                "must be at least 1",
            ));
        }
        if database.pool_size == 0 {
            return Err(invalid("DB_CONNECTIONS", "0".into(), "must be at least 1"));
        }
        if !(1..=10_000).contains(&database.write_batch_max) {
            return Err(invalid(
                "DB_WRITE_BATCH_MAX",
                database.write_batch_max.to_string(),
                "must be between 1 and 10000",
            ));
        }
        if database.busy_timeout.is_zero() || database.busy_timeout > Duration::from_secs(60) {
            return Err(invalid(
                "DB_BUSY_TIMEOUT_MS",
                database.busy_timeout.as_millis().to_string(),
                "must be between 1 and 60000",
            ));
        }
        database.check_url().map_err(|reason| {
            // The value is echoed in the message: never its password.
            invalid("DATABASE_URL", database.redacted_url(), &reason)
        })
    }
}

/// `DATABASE_URL` and the `DB_*` variables.
fn database_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<DatabaseSettings, ConfigError> {
    let defaults = DatabaseSettings::default();
    if let Some(value) = lookup("DB_WRITE_SYNC") {
        return Err(ConfigError {
            name: "DB_WRITE_SYNC",
            value,
            reason: "replaced by DB_DURABILITY (process or power)".to_owned(),
        });
    }
    Ok(DatabaseSettings {
        url: lookup("DATABASE_URL").unwrap_or(defaults.url),
        busy_timeout: parse(lookup, "DB_BUSY_TIMEOUT_MS")?
            .map_or(defaults.busy_timeout, Duration::from_millis),
        pool_size: parse(lookup, "DB_CONNECTIONS")?.unwrap_or(defaults.pool_size),
        read_connections: parse(lookup, "DB_READ_CONNECTIONS")?
            .unwrap_or(defaults.read_connections),
        write_batch_max: parse(lookup, "DB_WRITE_BATCH_MAX")?.unwrap_or(defaults.write_batch_max),
        durability: parse(lookup, "DB_DURABILITY")?
            .map_or(defaults.durability, |Choice(durability)| durability),
        checkpoint_interval: parse(lookup, "DB_CHECKPOINT_INTERVAL_MS")?
            .map_or(defaults.checkpoint_interval, Duration::from_millis),
    })
}

/// `API_RESET` and `RESET_TOKEN`. An empty token counts as unset (compose passes `${RESET_TOKEN:-}`
/// through as an empty string); a token with `API_RESET=off` is a contradiction, refused.
fn reset_access(lookup: &impl Fn(&str) -> Option<String>) -> Result<ResetAccess, ConfigError> {
    let token = lookup("RESET_TOKEN").filter(|token| !token.is_empty());
    let switch = parse(lookup, "API_RESET")?.map_or(ResetSwitch::On, |Choice(switch)| switch);
    match (switch, token) {
        (ResetSwitch::On, None) => Ok(ResetAccess::Open),
        (ResetSwitch::On, Some(token)) => Ok(ResetAccess::Token(token)),
        (ResetSwitch::Off, None) => Ok(ResetAccess::Off),
        (ResetSwitch::Off, Some(_)) => Err(ConfigError {
            name: "API_RESET",
            value: "off".to_owned(),
            reason: "RESET_TOKEN is set too: unset it, or API_RESET".to_owned(),
        }),
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
    use crate::db::Durability;

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
        assert_eq!(config.database.url, "sqlite://rinha.db");
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
            ("DB_DURABILITY", "power"),
            ("DB_BUSY_TIMEOUT_MS", "250"),
            ("DB_CHECKPOINT_INTERVAL_MS", "0"),
            ("MAX_IN_FLIGHT", "64"),
            ("MAX_QUEUED", "128"),
            ("RETRY_AFTER_S", "2"),
            ("DB_CONNECTIONS", "6"),
            ("API_SCHED_POLICY", "normal"),
            ("RESET_TOKEN", "s3cret"),
            ("API_METRICS_PORT", "9100"),
        ])
        .expect("valid settings");
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8080);
        assert_eq!(
            config.socket.as_deref(),
            Some(std::path::Path::new("/run/rinha/api01.sock"))
        );
        assert_eq!(config.database.url, "sqlite:///shared/rinha.db");
        assert_eq!(config.workers, 3);
        assert_eq!(config.database.read_connections, 4);
        assert_eq!(config.database.write_batch_max, 8);
        assert_eq!(config.database.durability, Durability::Power);
        assert_eq!(config.database.busy_timeout, Duration::from_millis(250));
        assert_eq!(config.database.checkpoint_interval, Duration::ZERO);
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
        assert_eq!(config.database.pool_size, 6);
        assert_eq!(config.sched_policy, SchedPolicy::Normal);
        assert_eq!(config.reset, ResetAccess::Token("s3cret".into()));
        assert_eq!(config.metrics_port, Some(9100));
        let reset = |vars| config_from(vars).expect("valid").reset;
        assert_eq!(reset(&[]), ResetAccess::Open);
        assert_eq!(
            reset(&[("RESET_TOKEN", "")]),
            ResetAccess::Open,
            "empty is unset"
        );
        assert_eq!(reset(&[("API_RESET", "off")]), ResetAccess::Off);
        #[cfg(target_os = "linux")]
        assert_eq!(Config::default().sched_policy, SchedPolicy::Batch);
        for policy in [SchedPolicy::Batch, SchedPolicy::Normal] {
            let Choice::<SchedPolicy>(read) = policy.to_string().parse().expect("a policy");
            assert_eq!(read, policy, "named as it is read");
        }
    }

    #[test]
    fn a_postgres_url_selects_postgres() {
        for url in [
            "postgres://rinha:rinha@db:5432/rinha",
            "postgresql://localhost/rinha",
        ] {
            let config = config_from(&[("DATABASE_URL", url)]).expect(url);
            assert_eq!(config.database.url, url);
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
            ("DB_DURABILITY", "disk", "unknown durability"),
            ("DB_WRITE_SYNC", "normal", "replaced by DB_DURABILITY"),
            ("API_SCHED_POLICY", "fifo", "a real-time policy"),
            ("API_RESET", "token", "on or off"),
            ("API_METRICS_PORT", "65536", "port out of range"),
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
        let contradiction = config_from(&[("API_RESET", "off"), ("RESET_TOKEN", "s3cret")])
            .expect_err("a token for a route that is off");
        assert!(
            contradiction.to_string().contains("API_RESET"),
            "{contradiction}"
        );
        assert!(
            !contradiction.to_string().contains("s3cret"),
            "the token is not echoed"
        );
    }
}
