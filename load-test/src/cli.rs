//! The command line: rlt's own options, flattened in, plus this tester's.
//!
//! rlt's `BenchCli` is embedded, so the original commands (`URL -c 14 -d 30s`, `-r 340`,
//! `-o json`, `-O FILE`, `-q`, baselines) keep rlt's spelling and meaning. Two of rlt's defaults
//! are replaced, because this tester knows its target: `-c` is [`DEFAULT_CONCURRENCY`] instead of
//! 1, and `-d` is [`DEFAULT_DURATION`] instead of "until Ctrl-C" (unless `-n` or `--profile`
//! bounds the run); the URL defaults to [`DEFAULT_URL`]. What this tester adds is validated
//! here, once, into a [`LoadPlan`]: contradictory combinations are refused by clap or by
//! [`Options::load_plan`] before anything is sent.

use std::{num::NonZeroUsize, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum, builder::ArgPredicate};
use rlt::cli::BenchCli;

use crate::{
    error::Error,
    profile,
    report::{Mode, SlaTarget},
    runner::{LoadPlan, LoadShape},
    schedule::Schedule,
    tls::Trust,
};

/// Predefined tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// The official Rinha de Backend 2024 Q1 test: /reset, the validation phase, then an open
    /// model ramping 1 -> 340 requests/s over 2 minutes and holding 2 minutes
    Rinha,
}

/// Where the stack listens: docker compose and `scripts/stack up` both publish port 9999.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9999";

/// Closed-loop workers when `-c` is not given: the concurrency of the max-throughput runs in
/// BENCHMARKS.md and of the saturating run in scripts/compose-test, enough to keep the
/// two-instance stack behind nginx busy on a small machine.
pub const DEFAULT_CONCURRENCY: &str = "14";

/// How long the load runs when neither `-d`, `-n` nor `--profile` says: long enough for a
/// steady state and stable percentiles, short enough to run often.
pub const DEFAULT_DURATION: &str = "20s";

/// Help of `-c`, replacing rlt's ("Number of workers to run concurrently").
const CONCURRENCY_HELP: &str = "Closed loop: number of workers, each sending its next request when \
     its last is answered; open model and --profile: workers of the warm-up only";

/// Help of `-d`, replacing rlt's, which has no default.
const DURATION_HELP: &str = "Stop starting requests after this long (e.g. 30s, 2m) [default: 20s, \
     unless -n is given (then the run stops after N requests) or --profile (which sets its own)]";

/// Load tester for the Rinha de Backend 2024 Q1 API contract: the 22:11:1 mix of debits, credits
/// and statements, every answer checked, balances audited at the end.
///
/// With no arguments it runs a 20s closed loop with 14 workers against http://127.0.0.1:9999
/// (where docker compose and scripts/stack publish the API) and prints the text report.
///
/// Exit status: 0 when every check passed; 1 when an answer broke the contract, the audit
/// failed, the validation phase failed, or too few requests were OK and fast (the SLA); 2 when
/// the run could not be made (bad options, target unreachable during setup).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "load-test",
    version,
    // rlt's `-c` and `-d` are reshaped here, after `BenchCli` is flattened in: clap applies
    // these command settings once every field's argument exists.
    mut_arg("concurrency", |arg| arg
        .default_value(DEFAULT_CONCURRENCY)
        .help(CONCURRENCY_HELP)
        .long_help(None::<&str>)),
    mut_arg("duration", |arg| arg
        .default_value(DEFAULT_DURATION)
        // -n alone bounds the run by count, and the profile sets its own length: a condition
        // whose value is None takes the default away.
        .default_value_ifs([
            ("iterations", ArgPredicate::IsPresent, None::<&str>),
            ("profile", ArgPredicate::IsPresent, None::<&str>),
        ])
        .hide_default_value(true)
        .help(DURATION_HELP)
        .long_help(None::<&str>)),
)]
pub struct Options {
    /// Base URL of the API under test: http://, or https:// (TLS; HTTP/2 with --http2)
    #[arg(default_value = DEFAULT_URL)]
    pub url: String,

    #[command(flatten)]
    pub bench: BenchCli,

    /// Run a predefined test instead of a plain load
    #[arg(long, value_enum, conflicts_with_all = ["duration", "iterations", "rate", "arrival_rate"])]
    pub profile: Option<Profile>,

    /// Multiply every duration of the profile's load by this factor (0.25: the 4-minute load in
    /// 1 minute, same peak rate)
    #[arg(long, default_value_t = 1.0, requires = "profile")]
    pub time_scale: f64,

    /// Open model: start requests at this many per second on a fixed timetable, whatever the
    /// server does, and measure latency from each scheduled start, for -d (not with -n alone;
    /// -r does not apply, -c only sizes the warm-up)
    #[arg(long, value_name = "RATE", conflicts_with = "rate")]
    pub arrival_rate: Option<f64>,

    /// Open model: ramp linearly from 1 request/s up to --arrival-rate over this long, then hold
    /// it for the rest of -d
    #[arg(long, value_name = "DURATION", requires = "arrival_rate")]
    pub ramp_up: Option<humantime::Duration>,

    /// Open model: most requests in flight at once; a request due while the cap is reached
    /// starts as soon as one finishes, is counted as a cap wait, and its latency still counts
    /// from its scheduled instant
    #[arg(long, value_name = "N", default_value = "4096")]
    pub max_in_flight: NonZeroUsize,

    /// Per-request timeout; a request that takes longer is a failure
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub timeout: humantime::Duration,

    /// Open a new connection for every request (as the official Gatling test effectively did);
    /// over TLS each makes a full handshake, with no session resumed
    #[arg(long)]
    pub no_keepalive: bool,

    /// Speak HTTP/2 instead of HTTP/1.1: https:// only, where ALPN offers h2 alone, so a server
    /// without HTTP/2 fails the handshake rather than answer in HTTP/1.1
    #[arg(long)]
    pub http2: bool,

    /// Trust only the CA certificates in this PEM file for https:// (e.g. the self-signed stack's
    /// data/tls/ca.pem) instead of the system's
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,

    /// Accept any certificate for https://, for any name: encrypted, but not authenticated
    #[arg(long)]
    pub insecure: bool,

    /// POST /reset before the run, so every balance must start at 0 (implied by --profile)
    #[arg(long)]
    pub reset: bool,

    /// The token a deployment with RESET_TOKEN set wants for POST /reset, sent as
    /// `Authorization: Bearer <token>` (from the environment, it stays out of `ps`)
    #[arg(
        long,
        env = "RESET_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub reset_token: Option<String>,

    /// A response counts towards the SLA only if OK and faster than this
    #[arg(long, value_name = "DURATION", default_value = "250ms")]
    pub sla_latency: humantime::Duration,

    /// Percentage of responses that must be OK and under --sla-latency (the challenge's is 98)
    #[arg(long, value_name = "PERCENT", default_value_t = 98.0, value_parser = parse_percent)]
    pub sla_share: f64,

    /// How many failures and inconsistencies to print in full
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub show_failures: usize,

    /// Also write the report as one self-contained HTML page, with charts of the run second by
    /// second (opens offline: no script, no network)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Also write the JSON report (the document -o json prints) to FILE; the report -o chooses
    /// (text by default) still goes to stdout, or to -O
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl Options {
    /// How the load is generated, checked for consistency.
    pub fn load_plan(&self) -> Result<(Mode, LoadPlan), Error> {
        let bench = &self.bench;
        if Duration::from(self.timeout).is_zero() {
            return Err(Error::InvalidOptions(
                "--timeout must be longer than 0s".into(),
            ));
        }
        let max_in_flight = self.max_in_flight.get();
        let (mode, shape) = match (self.profile, self.arrival_rate) {
            (Some(Profile::Rinha), _) => (
                Mode::RinhaProfile,
                LoadShape::Open {
                    schedule: profile::schedule(self.time_scale)?,
                    max_in_flight,
                },
            ),
            (None, Some(rate)) => {
                let total: Duration = bench
                    .duration
                    .ok_or_else(|| Error::InvalidOptions("--arrival-rate needs -d with -n".into()))?
                    .into();
                let schedule = match self.ramp_up {
                    Some(ramp) => Schedule::ramp_then_hold(1.0, rate, ramp.into(), total)?,
                    None => Schedule::constant(rate, total)?,
                };
                (
                    Mode::OpenModel,
                    LoadShape::Open {
                        schedule,
                        max_in_flight,
                    },
                )
            }
            (None, None) => (
                Mode::ClosedLoop,
                LoadShape::Closed {
                    duration: bench.duration.map(Into::into),
                    rate: bench.rate,
                },
            ),
        };
        let plan = LoadPlan {
            shape,
            concurrency: bench.concurrency,
            iterations: bench.iterations.map(|n| n.get()),
            warmup: bench.warmup,
        };
        Ok((mode, plan))
    }

    /// Which certificates an https:// target may present, when the options say.
    pub fn trust(&self) -> Option<Trust> {
        match (&self.cacert, self.insecure) {
            (Some(file), _) => Some(Trust::CaFile(file.clone())),
            (None, true) => Some(Trust::Anyone),
            (None, false) => None,
        }
    }

    /// Whether `/reset` is posted before the run.
    pub fn resets(&self) -> bool {
        self.reset || self.profile.is_some()
    }

    /// The SLA the run is judged against.
    pub fn sla(&self) -> SlaTarget {
        SlaTarget {
            latency: self.sla_latency.into(),
            required_share: self.sla_share / 100.0,
        }
    }
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a percentage between 0 and 100"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("load-test").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Options::command().debug_assert();
    }

    #[test]
    fn the_original_commands_parse_as_a_closed_loop() {
        let options = parse(&["http://127.0.0.1:9999", "-c", "14", "-d", "30s"]).expect("valid");
        let (mode, plan) = options.load_plan().expect("consistent");
        assert_eq!(mode, Mode::ClosedLoop);
        assert_eq!(plan.concurrency.get(), 14);
        assert!(matches!(
            plan.shape,
            LoadShape::Closed { duration: Some(d), rate: None } if d == Duration::from_secs(30)
        ));

        let options =
            parse(&["http://127.0.0.1:9999", "-c", "14", "-d", "2m", "-r", "340"]).expect("valid");
        let (_, plan) = options.load_plan().expect("consistent");
        assert!(matches!(plan.shape, LoadShape::Closed { rate: Some(r), .. } if r.get() == 340));
    }

    #[test]
    fn the_arrival_rate_builds_an_open_model_with_an_optional_ramp() {
        let options = parse(&[
            "http://127.0.0.1:9999",
            "-d",
            "4m",
            "--arrival-rate",
            "340",
            "--ramp-up",
            "2m",
        ])
        .expect("valid");
        let (mode, plan) = options.load_plan().expect("consistent");
        assert_eq!(mode, Mode::OpenModel);
        let LoadShape::Open {
            schedule,
            max_in_flight,
        } = plan.shape
        else {
            panic!("open model expected")
        };
        assert_eq!(max_in_flight, 4096);
        assert_eq!(schedule.duration(), Duration::from_secs(240));
        assert_eq!(schedule.arrival_count(), 20_460 + 40_800);
    }

    #[test]
    fn the_rinha_profile_implies_reset_and_scales_its_load() {
        let options = parse(&[
            "http://127.0.0.1:9999",
            "--profile",
            "rinha",
            "--time-scale",
            "0.25",
        ])
        .expect("valid");
        assert!(options.resets());
        let (mode, plan) = options.load_plan().expect("consistent");
        assert_eq!(mode, Mode::RinhaProfile);
        let LoadShape::Open { schedule, .. } = plan.shape else {
            panic!("open model expected")
        };
        assert_eq!(schedule.duration(), Duration::from_secs(60));
    }

    #[test]
    fn contradictory_options_are_refused() {
        let url = "http://127.0.0.1:9999";
        let refused: [&[&str]; 7] = [
            &[url, "-d", "5s", "--arrival-rate", "10", "-r", "5"], // open and closed at once
            &[url, "--profile", "rinha", "-d", "10s"], // the profile sets its own duration
            &[url, "--profile", "rinha", "--arrival-rate", "5"], // ... and its own rate
            &[url, "--time-scale", "0.5"],             // only meaningful with a profile
            &[url, "-d", "5s", "--ramp-up", "1s"],     // a ramp needs --arrival-rate
            &[url, "--sla-share", "101"],              // not a percentage
            &[url, "--cacert", "ca.pem", "--insecure"], // trust a CA, or anyone
        ];
        for args in refused {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
        // -n takes the default duration away, and the open model's timetable needs one.
        let no_duration = parse(&[url, "-n", "10", "--arrival-rate", "10"]).expect("parses");
        assert!(no_duration.load_plan().is_err());
        let zero_rate = parse(&[url, "-d", "5s", "--arrival-rate", "0"]).expect("parses");
        assert!(zero_rate.load_plan().is_err());
        let zero_timeout = parse(&[url, "--timeout", "0s"]).expect("parses");
        assert!(zero_timeout.load_plan().is_err());
    }

    #[test]
    fn with_no_arguments_it_loads_the_local_stack_for_the_default_duration() {
        let options = parse(&[]).expect("valid");
        assert_eq!(options.url, "http://127.0.0.1:9999");
        assert_eq!(options.url, DEFAULT_URL);
        assert_eq!(options.json, None);
        let (mode, plan) = options.load_plan().expect("consistent");
        assert_eq!(mode, Mode::ClosedLoop);
        assert_eq!(plan.concurrency.get(), 14);
        assert_eq!(plan.iterations, None);
        assert!(matches!(
            plan.shape,
            LoadShape::Closed { duration: Some(d), rate: None } if d == Duration::from_secs(20)
        ));

        // Options without a URL keep the default target.
        let options = parse(&["-d", "3s", "-q"]).expect("valid");
        assert_eq!(options.url, DEFAULT_URL);
        let (_, plan) = options.load_plan().expect("consistent");
        assert!(matches!(
            plan.shape,
            LoadShape::Closed { duration: Some(d), .. } if d == Duration::from_secs(3)
        ));
    }

    #[test]
    fn the_default_duration_yields_to_iterations_and_the_profile() {
        let (_, plan) = parse(&["-n", "500"])
            .expect("valid")
            .load_plan()
            .expect("consistent");
        assert_eq!(plan.iterations, Some(500));
        assert!(matches!(
            plan.shape,
            LoadShape::Closed { duration: None, .. }
        ));

        let options = parse(&["--profile", "rinha"]).expect("valid");
        assert_eq!(options.url, DEFAULT_URL);
        assert_eq!(options.bench.duration, None);
        let (mode, plan) = options.load_plan().expect("consistent");
        assert_eq!(mode, Mode::RinhaProfile);
        let LoadShape::Open { schedule, .. } = plan.shape else {
            panic!("open model expected")
        };
        assert_eq!(schedule.duration(), Duration::from_secs(240));

        let (mode, plan) = parse(&["--arrival-rate", "340"])
            .expect("valid")
            .load_plan()
            .expect("consistent");
        assert_eq!(mode, Mode::OpenModel);
        let LoadShape::Open { schedule, .. } = plan.shape else {
            panic!("open model expected")
        };
        assert_eq!(schedule.duration(), Duration::from_secs(20));
    }

    #[test]
    fn json_names_a_file_beside_the_text_report() {
        let options = parse(&["--json", "report.json"]).expect("valid");
        assert_eq!(options.json, Some(PathBuf::from("report.json")));
        assert!(matches!(options.bench.output, rlt::cli::ReportFormat::Text));
        assert_eq!(options.bench.output_file, None);
        assert_eq!(options.url, DEFAULT_URL);

        let options = parse(&["http://10.0.0.2:9999", "-o", "json", "--json", "r.json"])
            .expect("valid: JSON on stdout and in a file");
        assert_eq!(options.url, "http://10.0.0.2:9999");
        assert_eq!(options.json, Some(PathBuf::from("r.json")));
    }

    #[test]
    fn the_help_states_every_default() {
        let help = Options::command().render_long_help().to_string();
        for default in [
            format!("[default: {DEFAULT_URL}]"),
            format!("[default: {DEFAULT_CONCURRENCY}]"),
            format!("[default: {DEFAULT_DURATION},"),
            "[default: 2s]".to_owned(),
            "[default: 250ms]".to_owned(),
            "[default: 4096]".to_owned(),
            "[default: text]".to_owned(),
            format!(
                "it runs a {DEFAULT_DURATION} closed loop with {DEFAULT_CONCURRENCY} workers \
                 against {DEFAULT_URL} "
            ),
        ] {
            assert!(help.contains(&default), "no {default:?} in:\n{help}");
        }
    }

    #[test]
    fn tls_options_parse_into_a_trust() {
        let url = "https://localhost:9443";
        let options = parse(&[url, "--http2", "--cacert", "data/tls/ca.pem"]).expect("valid");
        assert!(options.http2);
        assert_eq!(
            options.trust(),
            Some(Trust::CaFile(PathBuf::from("data/tls/ca.pem")))
        );
        let options = parse(&[url, "--insecure"]).expect("valid");
        assert!(!options.http2);
        assert_eq!(options.trust(), Some(Trust::Anyone));
        assert_eq!(parse(&[url]).expect("valid").trust(), None);
    }

    #[test]
    fn the_sla_defaults_to_the_challenges() {
        let sla = parse(&["http://127.0.0.1:9999"]).expect("valid").sla();
        assert_eq!(sla.latency, Duration::from_millis(250));
        assert!((sla.required_share - 0.98).abs() < 1e-12);
    }
}
