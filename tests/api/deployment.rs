//! The deployment files, checked by reading them: docker-compose.yml (parsed as YAML), nginx.conf
//! (parsed into directives, and run through `nginx -t` after the same rewrite `scripts/stack`
//! does), the Dockerfile and .dockerignore.
//!
//! `scripts/compose-test` runs the compose stack on a real Docker engine (CI does, after
//! `scripts/docker-setup`); these tests need no engine and hold the files to the rules a run may
//! not notice at once: the challenge's resource budget, the shared volume, one image built once,
//! the start order without health checks (each is an exec charged to a CPU-limited container),
//! nothing Docker Engine 20.10 refuses, the nginx settings that prevent sporadic 502s and
//! replayed POSTs. They also cross-check the files against each other, so a port or path changed
//! in one place and not the other fails here rather than in production.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_norway::Value;

use crate::helpers::{free_port, free_ports_in_a_row};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(file))
        .unwrap_or_else(|err| panic!("{file}: {err}"))
}

/// docker-compose.yml with its `<<: *anchor` merge keys applied, as Compose reads it.
fn compose() -> Value {
    compose_file("docker-compose.yml")
}

/// The PostgreSQL deployment, docker-compose.postgres.yml, likewise.
const POSTGRES_COMPOSE: &str = "docker-compose.postgres.yml";

fn compose_file(file: &str) -> Value {
    let mut value: Value =
        serde_norway::from_str(&read(file)).unwrap_or_else(|err| panic!("{file}: {err}"));
    value.apply_merge().expect("merge keys resolve");
    value
}

/// Whether a service is in the `observability` profile (outside the challenge's budget).
fn observability(service: &Value) -> bool {
    strings(&service["profiles"]) == ["observability"]
}

/// The one-shot steps of a compose file: services another waits for with
/// `condition: service_completed_successfully` (the `tls` service that makes a self-signed pair).
/// Each must never be restarted, and nginx must wait for it: it has exited before nginx starts.
fn one_shot(compose: &Value) -> BTreeSet<String> {
    let services = compose["services"].as_mapping().expect("services");
    let mut steps = BTreeSet::new();
    for service in services.values() {
        if let Some(waits) = service["depends_on"].as_mapping() {
            for (name, how) in waits {
                if how["condition"].as_str() == Some("service_completed_successfully") {
                    steps.insert(name.as_str().expect("a service name").to_owned());
                }
            }
        }
    }
    for step in &steps {
        assert_eq!(
            services[step.as_str()]["restart"].as_str(),
            Some("no"),
            "the one-shot {step} is never restarted"
        );
    }
    steps
}

/// The (CPU thousandths, MB) a compose file's challenge services (all but the observability
/// profile's and the one-shot steps, see [`one_shot`]) may use in all; panics on a service without
/// limits, a health check or a restart policy (see the test below for why).
fn budget(compose: &Value) -> (u64, u64) {
    let (mut cpus, mut memory) = (0, 0);
    let steps = one_shot(compose);
    for (name, service) in compose["services"].as_mapping().expect("services") {
        let name = name.as_str().expect("service name");
        if observability(service) || steps.contains(name) {
            continue;
        }
        assert!(
            service["healthcheck"].is_null(),
            "{name} has a health check"
        );
        assert!(
            matches!(
                service["restart"].as_str(),
                Some("always" | "unless-stopped" | "on-failure")
            ),
            "{name} is restarted when its process exits"
        );
        let limits = &service["deploy"]["resources"]["limits"];
        cpus += millicpus(&limits["cpus"], name);
        memory += megabytes(&limits["memory"], name);
    }
    (cpus, memory)
}

#[test]
fn docker_compose_postgres_runs_the_same_image_and_nginx_on_postgres_within_the_budget() {
    let sqlite = compose();
    let compose = compose_file(POSTGRES_COMPOSE);

    let services: BTreeSet<&str> = compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .filter(|(_, service)| !observability(service))
        .filter_map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from(["api01", "api02", "nginx", "postgres", "tls"])
    );
    assert_eq!(one_shot(&compose), BTreeSet::from(["tls".to_owned()]));
    assert_eq!(service(&compose, "tls"), service(&sqlite, "tls"));
    // The observability profile is docker-compose.yml's, service for service (the same
    // prometheus.yml scrapes the same service names).
    for name in ["prometheus", "nginx-exporter"] {
        assert_eq!(
            service(&compose, name),
            service(&sqlite, name),
            "{name} as in docker-compose.yml"
        );
    }
    let (cpus, memory) = budget(&compose);
    assert!(cpus <= 1500, "CPU limits sum to {cpus} thousandths");
    assert!(memory <= 550, "memory limits sum to {memory} MB");

    // The same image and nginx as the SQLite deployment, built and pulled alike: only the
    // database differs.
    for name in ["api01", "api02", "nginx"] {
        for key in ["image", "build", "pull_policy", "ports"] {
            assert_eq!(
                service(&compose, name)[key],
                service(&sqlite, name)[key],
                "{name}: {key}"
            );
        }
        assert_eq!(
            strings(&service(&compose, name)["volumes"])
                .iter()
                .find(|mount| mount.contains("nginx.conf") || mount.contains("/run/rinha")),
            strings(&service(&sqlite, name)["volumes"])
                .iter()
                .find(|mount| mount.contains("nginx.conf") || mount.contains("/run/rinha")),
            "{name} mounts what it mounts in docker-compose.yml"
        );
    }
    let postgres = service(&compose, "postgres");
    let credentials = environment(postgres);
    for name in ["api01", "api02"] {
        let api = service(&compose, name);
        let settings = environment(api);
        assert_eq!(
            settings.get("API_SOCKET"),
            environment(service(&sqlite, name)).get("API_SOCKET"),
            "{name} listens where nginx.conf sends requests"
        );
        let expected = format!(
            "postgres://{}:{}@postgres:5432/{}",
            credentials["POSTGRES_USER"],
            credentials["POSTGRES_PASSWORD"],
            credentials["POSTGRES_DB"]
        );
        assert_eq!(settings["DATABASE_URL"], expected, "{name}");
        assert_eq!(
            api["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_started"),
            "{name} starts with postgres (it retries its connection), not after a health check"
        );
        // Compose fills `${NAME:-default}` from the caller's environment; here, the default.
        let config = rinha_api::config::Config::from_lookup(|key| {
            settings.get(key).map(|value| compose_default(value))
        });
        assert!(config.is_ok(), "{name}: {config:?}");
        assert_eq!(
            settings.get("DB_DURABILITY").map(String::as_str),
            environment(postgres)
                .get("DB_DURABILITY")
                .map(String::as_str),
            "{name} and the server take their durability from the same variable"
        );
    }
    // The database keeps its data on a named volume at the image's PGDATA.
    assert!(
        strings(&postgres["volumes"])
            .iter()
            .any(|mount| mount.ends_with(":/var/lib/postgresql/data")),
        "{:?}",
        postgres["volumes"]
    );
}

/// A value with each `${NAME:-default}` replaced by its default, as Compose reads it when NAME is
/// not set.
fn compose_default(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("service {name} is missing"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A service's environment as a map, whether written as a map or as `KEY=value` lines.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(text) => text.clone(),
                    other => serde_norway::to_string(other)
                        .expect("scalar")
                        .trim()
                        .to_owned(),
                };
                (key.as_str().expect("variable name").to_owned(), value)
            })
            .collect(),
        Value::Sequence(_) => strings(&service["environment"])
            .iter()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// CPUs in thousandths, so the budget is compared without floating-point rounding.
fn millicpus(value: &Value, service: &str) -> u64 {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => panic!("{service}: deploy.resources.limits.cpus is missing"),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    assert!(
        fraction.len() <= 3,
        "{service}: cpus {text} has more than 3 decimals"
    );
    let whole: u64 = whole
        .parse()
        .unwrap_or_else(|_| panic!("{service}: cpus {text}"));
    let fraction: u64 = format!("{fraction:0<3}").parse().expect("digits");
    whole * 1000 + fraction
}

/// Memory in MB; the challenge states its budget in MB, so any other unit is refused.
fn megabytes(value: &Value, service: &str) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{service}: deploy.resources.limits.memory is missing"));
    let number = text
        .strip_suffix("MB")
        .unwrap_or_else(|| panic!("{service}: memory {text:?} must be written in MB"));
    number
        .parse()
        .unwrap_or_else(|_| panic!("{service}: memory {text:?}"))
}

#[test]
fn docker_compose_runs_nginx_and_two_instances_on_one_volume_within_the_budget() {
    let compose = compose();

    let services: BTreeSet<&str> = compose["services"]
        .as_mapping()
        .expect("services")
        .keys()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        services,
        BTreeSet::from([
            "api01",
            "api02",
            "nginx",
            "nginx-exporter",
            "prometheus",
            "tls"
        ])
    );
    // The challenge's stack is what a plain `docker compose up` starts; Prometheus and nginx's
    // exporter only come with `--profile observability`, outside the budget.
    let observability: BTreeSet<&str> = services
        .iter()
        .copied()
        .filter(|name| observability(service(&compose, name)))
        .collect();
    assert_eq!(
        observability,
        BTreeSet::from(["nginx-exporter", "prometheus"])
    );
    let services: BTreeSet<&str> = services.difference(&observability).copied().collect();
    // The one-shot step that makes a self-signed pair for the TLS port before nginx starts,
    // then exits: not a service of the running stack (see below).
    assert_eq!(one_shot(&compose), BTreeSet::from(["tls".to_owned()]));
    let services: BTreeSet<&str> = services.into_iter().filter(|name| *name != "tls").collect();

    // Both instances run one image, built from this repository once: by api01 only. (Two
    // `build:` sections build it twice, in parallel.) It is built, never pulled: api01 builds it
    // at every `up` (`pull_policy: build`, so `up` after a change to the sources runs the new
    // code), and api02 never pulls it (otherwise the first `up` tries to, from a registry that
    // has no such image). Compose builds before it creates any container, so api02 finds it.
    let (api01, api02) = (service(&compose, "api01"), service(&compose, "api02"));
    assert!(
        !api01["build"].is_null(),
        "api01 builds the image from the Dockerfile"
    );
    assert_eq!(
        api01["pull_policy"].as_str(),
        Some("build"),
        "api01 builds the image at every up and never pulls it"
    );
    assert_eq!(
        api02["pull_policy"].as_str(),
        Some("never"),
        "api02 never pulls the image api01 builds"
    );
    let builders: Vec<&&str> = services
        .iter()
        .filter(|name| !service(&compose, name)["build"].is_null())
        .collect();
    assert_eq!(builders, [&"api01"], "one service builds the image");
    assert!(
        api01["image"].as_str().is_some(),
        "the built image is named, so api02 can run it"
    );
    assert_eq!(api01["image"], api02["image"], "same image");
    // Same settings, but for the socket each listens on.
    let settings = |api| {
        let mut settings = environment(api);
        settings.remove("API_SOCKET");
        settings
    };
    assert_eq!(settings(api01), settings(api02), "same settings");
    assert_ne!(
        environment(api01).get("API_SOCKET"),
        environment(api02).get("API_SOCKET"),
        "a socket each"
    );

    // One named volume, mounted in both instances, holding the file DATABASE_URL names (the
    // other one holds the sockets: see the_instances_listen_where_nginx_conf_sends_requests).
    let volumes: Vec<&str> = compose["volumes"]
        .as_mapping()
        .expect("top-level volumes")
        .keys()
        .filter_map(Value::as_str)
        .filter(|name| *name != "rinha-sockets")
        .collect();
    assert_eq!(volumes.len(), 1, "one named volume for data: {volumes:?}");
    for (name, api) in [("api01", api01), ("api02", api02)] {
        let mounts = strings(&api["volumes"]);
        let target = mounts
            .iter()
            .find_map(|mount| mount.strip_prefix(&format!("{}:", volumes[0])))
            .unwrap_or_else(|| panic!("{name} mounts {}: {mounts:?}", volumes[0]));
        let target = target.trim_end_matches(":rw");
        let url = &environment(api)["DATABASE_URL"];
        let file = url.strip_prefix("sqlite://").expect("a sqlite:// URL");
        assert!(
            file.starts_with(&format!("{target}/")),
            "{name}: DATABASE_URL {url} is not on the volume mounted at {target}"
        );
    }

    // nginx publishes 9999 and, for TLS, 9443, and reads the top-level nginx.conf.
    let nginx = service(&compose, "nginx");
    assert_eq!(
        strings(&nginx["ports"]),
        ["9999:9999", "9443:9443"],
        "nginx publishes 9999 and 9443"
    );
    // The TLS port's pair from ./tls, where the user puts one, or the tls step makes one (with
    // the script scripts/stack uses) before nginx starts.
    assert!(
        strings(&nginx["volumes"]).contains(&"./tls:/etc/nginx/tls:ro".to_owned()),
        "nginx mounts ./tls read-only: {:?}",
        nginx["volumes"]
    );
    let tls = service(&compose, "tls");
    assert_eq!(
        nginx["depends_on"]["tls"]["condition"].as_str(),
        Some("service_completed_successfully"),
        "nginx starts once the tls step has made or kept a pair"
    );
    assert!(
        strings(&tls["volumes"]).contains(&"./tls:/tls".to_owned())
            && strings(&tls["entrypoint"])
                .iter()
                .any(|arg| arg.ends_with("tls-selfsigned")),
        "the tls step runs scripts/tls-selfsigned on ./tls: {tls:?}"
    );
    assert!(
        strings(&nginx["volumes"])
            .iter()
            .any(|mount| mount.starts_with("./nginx.conf:/etc/nginx/nginx.conf")),
        "nginx mounts ./nginx.conf: {:?}",
        nginx["volumes"]
    );
    // nginx resolves api01 and api02 when it starts: it starts after both containers have
    // started (Docker's DNS answers for a started container), not after they are healthy.
    for api in ["api01", "api02"] {
        assert_eq!(
            nginx["depends_on"][api]["condition"].as_str(),
            Some("service_started"),
            "nginx starts after {api}"
        );
    }

    // The instances start together: neither waits for the other.
    for api in [api01, api02] {
        assert!(api["depends_on"].is_null(), "{:?}", api["depends_on"]);
    }

    // Every service: no health check, a restart policy, and limits within the budget. A health
    // check is an exec into the container, charged to its CPU quota: at 340 req/s the probes
    // every 10 s took p99.9 from about 5 ms to 8 ms (docs/DEPLOYMENT.md). Docker restarts a
    // container whose process exits, never an unhealthy one, so the restart policy is what
    // recovers a crash.
    let (mut cpus, mut memory) = (0, 0);
    for name in &services {
        let service = service(&compose, name);
        assert!(
            service["healthcheck"].is_null(),
            "{name} has a health check: {:?}",
            service["healthcheck"]
        );
        assert!(
            matches!(
                service["restart"].as_str(),
                Some("always" | "unless-stopped" | "on-failure")
            ),
            "{name} is restarted when its process exits: {:?}",
            service["restart"]
        );
        let limits = &service["deploy"]["resources"]["limits"];
        assert!(
            limits.is_mapping(),
            "{name} declares deploy.resources.limits"
        );
        cpus += millicpus(&limits["cpus"], name);
        memory += megabytes(&limits["memory"], name);
    }
    assert!(
        cpus <= 1500,
        "CPU limits sum to {cpus} thousandths, more than 1.5"
    );
    assert!(
        memory <= 550,
        "memory limits sum to {memory} MB, more than 550"
    );
}

#[test]
fn the_instances_listen_where_nginx_conf_sends_requests() {
    let compose = compose();
    let conf = Nginx::parse(&read("nginx.conf"));
    let servers: Vec<String> = conf
        .find(&["http", "upstream"], "server")
        .iter()
        .map(|args| args[0].clone())
        .collect();
    for name in ["api01", "api02"] {
        let api = service(&compose, name);
        let socket = &environment(api)["API_SOCKET"];
        assert!(
            servers.contains(&format!("unix:{socket}")),
            "nginx.conf's upstream {servers:?} has no unix:{socket}"
        );
        // nginx and the instance share the socket's directory through one volume.
        let directory = socket.rsplit_once('/').expect("an absolute path").0;
        let mount = strings(&api["volumes"])
            .into_iter()
            .find(|volume| volume.ends_with(&format!(":{directory}")))
            .unwrap_or_else(|| panic!("{name} mounts nothing at {directory}"));
        assert!(
            strings(&service(&compose, "nginx")["volumes"]).contains(&mount),
            "nginx does not mount {mount}"
        );
    }
}

/// nginx.conf as a list of directives, each with the blocks it sits in.
#[derive(Debug)]
struct Nginx {
    directives: Vec<(Vec<String>, Vec<String>)>,
}

impl Nginx {
    /// Splits the file into directives (`;`-terminated) and blocks (`name args { ... }`),
    /// skipping comments and honouring quotes. Enough for this file, not a general parser.
    fn parse(text: &str) -> Self {
        let mut directives = Vec::new();
        let mut blocks: Vec<String> = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut word = String::new();
        let mut quote = None;
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some(q), c) if c == q => {
                    quote = None;
                    words.push(std::mem::take(&mut word));
                }
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                (None, c) if c.is_whitespace() || matches!(c, ';' | '{' | '}') => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    match c {
                        ';' => directives.push((blocks.clone(), std::mem::take(&mut words))),
                        '{' => blocks.push(std::mem::take(&mut words).join(" ")),
                        '}' => {
                            blocks.pop().expect("balanced braces");
                        }
                        _ => {}
                    }
                }
                (None, c) => word.push(c),
            }
        }
        assert!(
            blocks.is_empty() && words.is_empty(),
            "nginx.conf ends inside a block"
        );
        Self { directives }
    }

    /// The arguments of every `name` directive in a block whose path starts with `context`
    /// (each element a prefix of the block's header, e.g. "upstream" for "upstream api").
    fn find(&self, context: &[&str], name: &str) -> Vec<Vec<String>> {
        self.directives
            .iter()
            .filter(|(blocks, words)| {
                words.first().is_some_and(|word| word == name)
                    && blocks.len() == context.len()
                    && blocks
                        .iter()
                        .zip(context)
                        .all(|(block, want)| block.starts_with(want))
            })
            .map(|(_, words)| words[1..].to_vec())
            .collect()
    }

    fn one(&self, context: &[&str], name: &str) -> Vec<String> {
        let found = self.find(context, name);
        assert_eq!(found.len(), 1, "one {name} in {context:?}: {found:?}");
        found[0].clone()
    }
}

fn seconds(value: &str) -> u64 {
    let digits = value.strip_suffix('s').unwrap_or(value);
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a duration in seconds: {value}"))
}

#[test]
fn nginx_conf_keeps_upstream_connections_alive_and_never_replays_a_post() {
    let conf = Nginx::parse(&read("nginx.conf"));
    let upstream = ["http", "upstream"];
    let location = ["http", "server", "location /"];

    assert_eq!(
        conf.one(&[], "worker_processes"),
        ["1"],
        "fits nginx's CPU share"
    );
    assert_eq!(conf.one(&["http"], "access_log"), ["off"]);
    assert_eq!(conf.one(&["http"], "gzip"), ["off"]);
    let listens: Vec<String> = conf
        .find(&["http", "server"], "listen")
        .iter()
        .map(|args| args[0].clone())
        .collect();
    assert_eq!(
        listens,
        ["9999", "9443", "8080"],
        "the public port, its TLS twin, then stub_status's"
    );
    // The TLS port: HTTP/2 offered by ALPN, only protocol versions without known weaknesses, and
    // resumption, so a returning client skips the costly part of the handshake.
    let server = ["http", "server"];
    let tls_listen = conf
        .find(&server, "listen")
        .into_iter()
        .find(|args| args[0] == "9443")
        .expect("listen 9443");
    assert!(
        tls_listen.contains(&"ssl".to_owned()) && tls_listen.contains(&"http2".to_owned()),
        "{tls_listen:?}"
    );
    assert_eq!(conf.one(&server, "ssl_protocols"), ["TLSv1.2", "TLSv1.3"]);
    assert!(conf.one(&server, "ssl_session_cache")[0].starts_with("shared:"));
    assert_eq!(conf.one(&server, "ssl_session_tickets"), ["off"]);
    assert_eq!(
        conf.find(
            &["http", "server", "location = /stub_status"],
            "stub_status"
        )
        .len(),
        1
    );

    // Balancing and failover: both instances, each taken out after failing.
    assert_eq!(conf.one(&upstream, "least_conn"), Vec::<String>::new());
    let servers = conf.find(&upstream, "server");
    assert_eq!(servers.len(), 2, "two instances: {servers:?}");
    for server in &servers {
        assert!(
            server.iter().any(|arg| arg.starts_with("max_fails="))
                && server.iter().any(|arg| arg.starts_with("fail_timeout=")),
            "{server:?} is taken out of rotation when it fails"
        );
    }

    // Upstream keep-alive, done right.
    let pool: u32 = conf.one(&upstream, "keepalive")[0]
        .parse()
        .expect("keepalive N");
    assert!(pool > 0);
    assert_eq!(conf.one(&location, "proxy_http_version"), ["1.1"]);
    assert!(
        conf.find(&location, "proxy_set_header")
            .contains(&vec!["Connection".to_owned(), String::new()]),
        "proxy_set_header Connection \"\" clears the hop-by-hop header"
    );
    // nginx must close idle upstream connections before the API does, or it may send a request
    // into a connection the API is closing (the sporadic 502).
    let idle = seconds(&conf.one(&upstream, "keepalive_timeout")[0]);
    let api_idle = rinha_api::startup::KEEP_ALIVE.as_secs();
    assert!(
        idle < api_idle,
        "upstream keepalive_timeout {idle}s must be below the API's {api_idle}s"
    );

    // A failed GET may go to the other instance; a POST that reached an instance never does.
    let next = conf.one(&location, "proxy_next_upstream");
    assert!(next.contains(&"error".to_owned()), "{next:?}");
    assert!(
        !next.contains(&"non_idempotent".to_owned()),
        "a POST is not idempotent and must not be replayed: {next:?}"
    );
}

/// Runs `scripts/stack config` with a temporary STACK_DIR, fresh ports and
/// `STACK_UPSTREAM=upstream`.
fn derive_stack_config(dir: &Path, upstream: &str) -> (std::process::Output, [u16; 3]) {
    derive_stack_config_from(dir, upstream, None)
}

/// [`derive_stack_config`] from `source` (`STACK_NGINX_CONF`) instead of the top-level nginx.conf.
fn derive_stack_config_from(
    dir: &Path,
    upstream: &str,
    source: Option<&Path>,
) -> (std::process::Output, [u16; 3]) {
    // `nginx -t` on the derived config really binds STACK_PORT and the TLS and stub_status
    // ports derived from it (STACK_PORT+6, +3): a run of seven free ports, none handed to
    // another test's stack.
    let port = free_ports_in_a_row(7);
    let ports = [port, free_port(), free_port()];
    let mut command = Command::new(Path::new(ROOT).join("scripts/stack"));
    command
        .arg("config")
        .env("STACK_DIR", dir)
        .env("STACK_PORT", ports[0].to_string())
        .env("STACK_API_PORTS", format!("{} {}", ports[1], ports[2]))
        .env("STACK_UPSTREAM", upstream);
    if let Some(source) = source {
        command.env("STACK_NGINX_CONF", source);
    }
    (command.output().expect("scripts/stack runs"), ports)
}

#[test]
fn the_config_scripts_stack_derives_from_nginx_conf_passes_nginx_t() {
    for upstream in ["tcp", "unix"] {
        check_derived_config(upstream);
    }
}

/// The minimal front `scripts/bench-stack` prices nginx.conf against (`BENCH_FRONTS`) goes
/// through the same rewrite and `nginx -t`, and points at the stack's two sockets.
#[test]
fn the_minimal_front_scripts_bench_stack_uses_passes_the_same_rewrite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let minimal = Path::new(ROOT).join("scripts/nginx-minimal.conf");
    let (output, _) = derive_stack_config_from(dir.path(), "unix", Some(&minimal));
    assert!(
        output.status.success(),
        "scripts/stack config with the minimal front failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let conf = Nginx::parse(
        &std::fs::read_to_string(dir.path().join("nginx.conf")).expect("the derived config"),
    );
    let socket = |name: &str| format!("unix:{}/{name}.sock", dir.path().display());
    assert_eq!(upstream_servers(&conf), [socket("api01"), socket("api02")]);
}

/// The addresses of the `upstream` block's servers.
fn upstream_servers(conf: &Nginx) -> Vec<String> {
    conf.find(&["http", "upstream"], "server")
        .iter()
        .map(|args| args[0].clone())
        .collect()
}

fn check_derived_config(upstream: &str) {
    let dir = tempfile::tempdir().expect("temp dir");

    let (output, [port, api01, api02]) = derive_stack_config(dir.path(), upstream);

    assert!(
        output.status.success(),
        "scripts/stack config failed (is nginx installed? CI installs it):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let conf = Nginx::parse(
        &std::fs::read_to_string(dir.path().join("nginx.conf")).expect("the derived config"),
    );
    let listens: Vec<String> = conf
        .find(&["http", "server"], "listen")
        .iter()
        .map(|args| args[0].clone())
        .collect();
    assert_eq!(
        listens,
        [
            format!("127.0.0.1:{port}"),
            format!("127.0.0.1:{}", port + 6),
            format!("127.0.0.1:{}", port + 3)
        ],
        "the public port, the TLS port (STACK_PORT+6) and stub_status's (STACK_PORT+3), on \
         loopback only"
    );
    // With no STACK_TLS_CERT / STACK_TLS_KEY, the self-signed pair made in STACK_DIR/tls.
    for (directive, file) in [
        ("ssl_certificate", "cert.pem"),
        ("ssl_certificate_key", "key.pem"),
    ] {
        let path = dir.path().join("tls").join(file);
        assert_eq!(
            conf.one(&["http", "server"], directive),
            [path.display().to_string()]
        );
        assert!(path.is_file(), "{} was made", path.display());
    }
    let servers = upstream_servers(&conf);
    let expected = if upstream == "tcp" {
        [format!("127.0.0.1:{api01}"), format!("127.0.0.1:{api02}")]
    } else {
        let socket = |name: &str| format!("unix:{}/{name}.sock", dir.path().display());
        [socket("api01"), socket("api02")]
    };
    assert_eq!(servers, expected, "STACK_UPSTREAM={upstream}");
    // Everything else is the top-level file's: the rewrite only relocates.
    let original = Nginx::parse(&read("nginx.conf"));
    for (context, name) in [
        (&["http", "upstream"][..], "keepalive_timeout"),
        (&["http", "server", "location /"][..], "proxy_next_upstream"),
        (&["http"][..], "access_log"),
    ] {
        assert_eq!(
            conf.find(context, name),
            original.find(context, name),
            "{name}"
        );
    }
}

/// The Dockerfile's instructions as (instruction, arguments), continuation lines joined and
/// comments dropped.
fn dockerfile_instructions() -> Vec<(String, String)> {
    read("Dockerfile")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ")
        .lines()
        .filter_map(|line| line.trim().split_once(char::is_whitespace))
        .map(|(op, args)| (op.to_ascii_uppercase(), args.trim().to_owned()))
        .collect()
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_as_a_non_root_user_who_owns_the_volume() {
    let owned = dockerfile_instructions();
    let instructions: Vec<(&str, &str)> = owned
        .iter()
        .map(|(op, args)| (op.as_str(), args.as_str()))
        .collect();

    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op.eq_ignore_ascii_case("FROM"))
        .map(|(index, _)| index)
        .collect();
    assert!(stages.len() >= 2, "multi-stage");
    let runtime = &instructions[*stages.last().expect("a stage")..];

    let builds: Vec<&str> = instructions
        .iter()
        .filter(|(op, args)| *op == "RUN" && args.contains("cargo build"))
        .map(|(_, args)| *args)
        .collect();
    assert_eq!(
        builds.len(),
        2,
        "dependencies, then the service: {builds:?}"
    );
    assert!(
        builds
            .iter()
            .all(|args| args.contains("--release") && args.contains("--locked"))
    );
    // The SQLite compile flags (LIBSQLITE3_FLAGS) reach the image's build: the workspace's
    // cargo config is copied before the first `cargo build`, which is when SQLite is compiled.
    let config_copied = instructions
        .iter()
        .position(|(op, args)| *op == "COPY" && args.starts_with(".cargo/config.toml"))
        .expect("the Dockerfile copies .cargo/config.toml");
    let first_build = instructions
        .iter()
        .position(|(op, args)| *op == "RUN" && args.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        config_copied < first_build,
        ".cargo/config.toml is copied before the first cargo build"
    );

    let user = runtime
        .iter()
        .filter(|(op, _)| *op == "USER")
        .map(|(_, args)| args.trim())
        .next_back()
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().expect("uid");
    assert!(uid != "root" && uid != "0", "runs as non-root, not {user}");
    assert!(
        runtime.iter().any(|(op, args)| *op == "COPY"
            && args.contains(&format!("--chown={user}"))
            && args.trim_end().ends_with(" /shared")),
        "/shared is owned by {user}, so the named volume is writable"
    );

    // Every file copied from the build context is in .dockerignore's allow-list.
    let allowed: BTreeSet<String> = read(".dockerignore")
        .lines()
        .filter_map(|line| line.strip_prefix('!'))
        .map(|path| path.trim_end_matches('/').to_owned())
        .collect();
    for (_, args) in instructions
        .iter()
        .filter(|(op, args)| *op == "COPY" && !args.contains("--from"))
    {
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|word| !word.starts_with("--"))
            .collect();
        for source in &words[..words.len() - 1] {
            assert!(
                allowed.contains(source.trim_end_matches('/')),
                "COPY {source}: not in .dockerignore's allow-list {allowed:?}"
            );
        }
    }
}

/// The Dockerfile's `ARG NAME=DEFAULT` lines before its first FROM, which its FROM lines can use.
fn dockerfile_global_args() -> BTreeMap<String, String> {
    dockerfile_instructions()
        .into_iter()
        .take_while(|(op, _)| op != "FROM")
        .filter(|(op, _)| op == "ARG")
        .filter_map(|(_, args)| {
            let (name, value) = args.split_once('=')?;
            Some((
                name.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            ))
        })
        .collect()
}

/// `${NAME:-DEFAULT}` (a whole compose value) as (NAME, DEFAULT).
fn variable_with_default(value: &Value) -> Option<(&str, &str)> {
    let (name, default) = value
        .as_str()?
        .strip_prefix("${")?
        .strip_suffix('}')?
        .split_once(":-")?;
    Some((name, default))
}

/// The base images, as (variable, default): the Dockerfile's stages start `FROM ${NAME}` of an
/// `ARG NAME=DEFAULT` (stage names and `scratch` left out), the compose files' services that
/// are not built here run `image: ${NAME:-DEFAULT}`. Panics on a base image named without a
/// variable: the variable is how a machine without a registry uses a stand-in of its own name.
fn base_images() -> Vec<(String, String)> {
    let args = dockerfile_global_args();
    let mut stages = BTreeSet::new();
    let mut images: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, default: &str| {
        let entry = (name.to_owned(), default.to_owned());
        if !images.contains(&entry) {
            images.push(entry);
        }
    };
    for (op, args_text) in dockerfile_instructions() {
        if op != "FROM" {
            continue;
        }
        let words: Vec<&str> = args_text
            .split_whitespace()
            .filter(|word| !word.starts_with("--"))
            .collect();
        if !stages.contains(words[0]) && words[0] != "scratch" {
            let name = words[0]
                .strip_prefix("${")
                .and_then(|rest| rest.strip_suffix('}'))
                .unwrap_or_else(|| panic!("FROM {}: a base image named without an ARG", words[0]));
            let default = args.get(name).unwrap_or_else(|| {
                panic!("FROM ${{{name}}}: no ARG {name}=... before the first FROM")
            });
            add(name, default);
        }
        if let [.., as_, name] = words[..]
            && as_.eq_ignore_ascii_case("as")
        {
            stages.insert(name.to_owned());
        }
    }
    for (file, compose) in [
        ("docker-compose.yml", compose()),
        (POSTGRES_COMPOSE, compose_file(POSTGRES_COMPOSE)),
    ] {
        let services = compose["services"].as_mapping().expect("services");
        let built: BTreeSet<&str> = services
            .values()
            .filter(|service| !service["build"].is_null())
            .filter_map(|service| service["image"].as_str())
            .collect();
        for (name, service) in services {
            let image = &service["image"];
            if service["build"].is_null() && !image.as_str().is_some_and(|i| built.contains(i)) {
                let (variable, default) = variable_with_default(image).unwrap_or_else(|| {
                    panic!("{file}: {name:?} runs {image:?}, not ${{NAME_IMAGE:-upstream image}}")
                });
                add(variable, default);
            }
        }
    }
    images
}

#[test]
fn base_images_are_variables_whose_defaults_are_the_upstream_images() {
    // scripts/docker-setup names its stand-ins with this prefix, a domain that resolves nowhere:
    // a stand-in never takes an upstream name, and its own name cannot be pulled from anywhere.
    let setup = read("scripts/docker-setup");
    let prefix = setup
        .lines()
        .find_map(|line| line.strip_prefix("standin_prefix="))
        .expect("scripts/docker-setup sets standin_prefix");
    assert!(prefix.ends_with(".invalid"), "stand-ins' prefix {prefix}");

    let images = base_images();
    let mut defaults: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, default) in &images {
        assert!(
            name.ends_with("_IMAGE"),
            "{name}: a base image's variable ends in _IMAGE"
        );
        assert!(
            !default.is_empty() && !default.starts_with(prefix),
            "{name}: the default is the upstream image, not {default:?}"
        );
        let known = defaults.entry(name).or_insert(default);
        assert_eq!(known, default, "{name} has one default in every file");
    }

    // The compose files pass the Dockerfile's base image variables to the build, with the
    // Dockerfile's defaults, so that one variable names a base image for the build and for `up`.
    let args = dockerfile_global_args();
    let dockerfile_images: Vec<&(String, String)> = images
        .iter()
        .filter(|(name, _)| args.contains_key(name))
        .collect();
    assert_eq!(
        dockerfile_images.len(),
        2,
        "the build and the runtime image: {images:?}"
    );
    for file in ["docker-compose.yml", POSTGRES_COMPOSE] {
        let compose = compose_file(file);
        let build = &service(&compose, "api01")["build"];
        assert_eq!(
            build["context"].as_str(),
            Some("."),
            "{file}: api01 builds this repository"
        );
        for (name, default) in &dockerfile_images {
            assert_eq!(
                variable_with_default(&build["args"][name.as_str()]),
                Some((name.as_str(), default.as_str())),
                "{file}: api01's build argument {name} is ${{{name}:-{default}}}"
            );
        }
    }
}

#[test]
fn the_dockerfile_and_compose_file_run_on_docker_engine_20_10_offline() {
    let dockerfile = read("Dockerfile");
    // A `# syntax=` directive makes every build pull that frontend image from a registry.
    for line in dockerfile.lines().map(str::trim) {
        let squeezed: String = line.split_whitespace().collect();
        assert!(
            !squeezed.to_ascii_lowercase().starts_with("#syntax="),
            "{line}: the build would pull a frontend image; Engine 20.10's own frontend is enough"
        );
    }
    // Only flags the classic builder knows too (no BuildKit-only --mount, --link, --chmod...),
    // and no heredocs.
    for (op, args) in dockerfile_instructions() {
        for flag in args
            .split_whitespace()
            .take_while(|word| word.starts_with("--"))
        {
            let name = flag.split('=').next().unwrap_or(flag);
            assert!(
                ["--from", "--chown", "--platform"].contains(&name),
                "{op} {flag}: not understood by every builder of Engine 20.10"
            );
        }
        assert!(!args.contains("<<"), "{op} {args}: a heredoc");
    }

    // Nothing in the compose file that Engine 20.10 or an older Compose v2 refuses:
    // healthcheck.start_interval (Engine 25+) was one.
    fn keys(value: &Value, found: &mut BTreeSet<String>) {
        match value {
            Value::Mapping(map) => {
                for (key, value) in map {
                    if let Some(key) = key.as_str() {
                        found.insert(key.to_owned());
                    }
                    keys(value, found);
                }
            }
            Value::Sequence(items) => items.iter().for_each(|item| keys(item, found)),
            _ => {}
        }
    }
    let mut found = BTreeSet::new();
    keys(&compose(), &mut found);
    keys(&compose_file(POSTGRES_COMPOSE), &mut found);
    for key in ["start_interval", "develop", "include"] {
        assert!(
            !found.contains(key),
            "docker-compose.yml uses {key}, which Engine 20.10 or an older Compose refuses"
        );
    }

    // CI reaches no container registry: every base image needs a stand-in recipe in
    // scripts/docker-setup (the `case` patterns of its `recipe` function, e.g. `rust:*) echo rust`).
    let setup = read("scripts/docker-setup");
    let patterns: Vec<String> = setup
        .lines()
        .skip_while(|line| !line.starts_with("recipe() {"))
        .take_while(|line| *line != "}")
        .filter_map(|line| line.trim().split_once(") echo "))
        .flat_map(|(patterns, _)| patterns.split('|').map(|p| p.trim().to_owned()))
        .collect();
    assert!(!patterns.is_empty(), "no stand-in recipe found");
    let images: Vec<String> = base_images().into_iter().map(|(_, image)| image).collect();
    assert!(
        images.iter().any(|image| image.starts_with("rust:"))
            && images
                .iter()
                .any(|image| image.starts_with("gcr.io/distroless/")),
        "{images:?}"
    );
    for image in &images {
        assert!(
            patterns
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => image.starts_with(prefix),
                    None => image == pattern,
                }),
            "{image} has no stand-in recipe in scripts/docker-setup ({patterns:?})"
        );
    }
}
