//! The command line: rlt's own options, flattened in unchanged, plus this tester's.
//!
//! rlt's `BenchCli` is embedded as is, so the original commands (`URL -c 14 -d 30s`, `-r 340`,
//! `-o json`, `-O FILE`, `-q`, baselines) keep rlt's exact spelling and meaning. What this tester
//! adds is validated here, once, into a [`LoadPlan`]: contradictory combinations are refused by
//! clap or by [`Options::load_plan`] before anything is sent.

use std::{num::NonZeroUsize, time::Duration};

use clap::{Parser, ValueEnum};
use rlt::cli::BenchCli;

use crate::{
    error::Error,
    profile,
    report::{Mode, SlaTarget},
    runner::{LoadPlan, LoadShape},
    schedule::Schedule,
};

/// Predefined tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// The official Rinha de Backend 2024 Q1 test: /reset, the validation phase, then an open
    /// model ramping 1 -> 340 requests/s over 2 minutes and holding 2 minutes
    Rinha,
}

/// Load tester for the Rinha de Backend 2024 Q1 API contract: the 22:11:1 mix of debits, credits
/// and statements, every answer checked, balances audited at the end.
///
/// Exit status: 0 when every check passed; 1 when an answer broke the contract, the audit
/// failed, the validation phase failed, or too few requests were OK and fast (the SLA); 2 when
/// the run could not be made (bad options, target unreachable during setup).
#[derive(Debug, Clone, Parser)]
#[command(name = "load-test", version)]
pub struct Options {
    /// Base URL of the API under test, e.g. http://127.0.0.1:9999
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
    /// server does, and measure latency from each scheduled start (needs -d; -r does not apply,
    /// -c only sizes the warm-up)
    #[arg(
        long,
        value_name = "RATE",
        conflicts_with = "rate",
        requires = "duration"
    )]
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

    /// Open a new connection for every request (as the official Gatling test effectively did)
    #[arg(long)]
    pub no_keepalive: bool,

    /// POST /reset before the run, so every balance must start at 0 (implied by --profile)
    #[arg(long)]
    pub reset: bool,

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
    pub html: Option<std::path::PathBuf>,
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
                    .ok_or_else(|| Error::InvalidOptions("--arrival-rate needs -d".into()))?
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
            &[url, "--arrival-rate", "10"],                        // no -d
            &[url, "-d", "5s", "--arrival-rate", "10", "-r", "5"], // open and closed at once
            &[url, "--profile", "rinha", "-d", "10s"], // the profile sets its own duration
            &[url, "--profile", "rinha", "--arrival-rate", "5"], // ... and its own rate
            &[url, "--time-scale", "0.5"],             // only meaningful with a profile
            &[url, "-d", "5s", "--ramp-up", "1s"],     // a ramp needs --arrival-rate
            &[url, "--sla-share", "101"],              // not a percentage
        ];
        for args in refused {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
        let zero_rate = parse(&[url, "-d", "5s", "--arrival-rate", "0"]).expect("parses");
        assert!(zero_rate.load_plan().is_err());
        let zero_timeout = parse(&[url, "--timeout", "0s"]).expect("parses");
        assert!(zero_timeout.load_plan().is_err());
    }

    #[test]
    fn the_sla_defaults_to_the_challenges() {
        let sla = parse(&["http://127.0.0.1:9999"]).expect("valid").sla();
        assert_eq!(sla.latency, Duration::from_millis(250));
        assert!((sla.required_share - 0.98).abs() < 1e-12);
    }
}
