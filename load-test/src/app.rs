//! One run from start to finish: setup, validation phase, load, audit, report, verdict.
//!
//! The order matters and is the point of this module. Baselines are loaded before anything is
//! sent (a bad baseline should not cost a 4-minute run); `/reset` and the validation phase come
//! before the start balances are read, so the audit measures the load alone; the end balances
//! are read only after every request has finished or timed out, so nothing the tester sent is
//! still on its way.

use std::{collections::BTreeMap, fs::File, io::Write, sync::Arc};

use rlt::{
    baseline::{self, Baseline},
    cli::ReportFormat,
};

use crate::{
    audit::{self, BalanceRead},
    cli::Options,
    client::{Api, ClientOptions},
    contract::{ClientId, client_ids},
    error::Error,
    html,
    profile::{self, ValidationPhase},
    report::{Inputs, Report, RunSettings},
    runner::{self, DisplayOptions},
    stats::Recorder,
    text::{self, Styling},
    validate::check_statement,
};

/// Whether every check of a run passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// Some check failed; the report says which.
    Failed,
}

/// Runs the tester as the options say and writes the report.
pub async fn run(options: Options) -> Result<Outcome, Error> {
    let (mode, plan) = options.load_plan()?;
    let bench_cli = &options.bench;
    let api = Arc::new(Api::new(
        &options.url,
        ClientOptions {
            timeout: options.timeout.into(),
            keepalive: !options.no_keepalive,
            http2: options.http2,
            trust: options.trust(),
        },
    )?);

    let baseline_dir = baseline::resolve_baseline_dir(bench_cli.baseline_dir.as_deref());
    let baseline: Option<Baseline> = match (&bench_cli.baseline, &bench_cli.baseline_file) {
        (Some(name), _) => Some(baseline::load(&baseline_dir, name)?),
        (None, Some(path)) => Some(baseline::load_file(path)?),
        (None, None) => None,
    };
    if let Some(baseline) = &baseline {
        baseline.validate(bench_cli)?;
    }

    if options.resets() {
        reset(&api, options.reset_token.as_deref()).await?;
    }
    let validation = match options.profile {
        Some(_) => {
            eprintln!(
                "load-test: validation phase (the official checks) against {}",
                api.base_url()
            );
            let phase = profile::validation_phase(Arc::clone(&api)).await?;
            print_validation_summary(&phase);
            Some(phase)
        }
        None => None,
    };

    let start = read_balances(&api).await;
    if let Some((client, Err(why))) = start.iter().find(|(_, read)| read.is_err()) {
        return Err(Error::setup(
            format!("reading client {client}'s start balance"),
            why.clone(),
        ));
    }

    let display = DisplayOptions {
        collector: bench_cli.collector(),
        fps: bench_cli.fps,
        quit_manually: bench_cli.quit_manually,
    };
    let recorder = Recorder::new(options.show_failures, options.sla_latency.into());
    let before_load = api.transport().snapshot();
    let load = runner::run(Arc::clone(&api), plan, display, recorder).await?;
    let transport = api.transport().snapshot().since(&before_load);

    let end = read_balances(&api).await;
    // With a profile the validation phase has already moved the balances after the reset, so
    // the zero check belongs to the validation phase, not to the audit.
    let after_reset = options.resets() && options.profile.is_none();
    let audit = audit::audit(&start, &end, load.recorder.ledger(), after_reset);

    let comparison = baseline.map(|baseline| {
        baseline::compare(
            &load.bench,
            &baseline,
            bench_cli.noise_threshold,
            &bench_cli.regression_metrics,
        )
    });
    let report = Report::build(Inputs {
        settings: RunSettings {
            target: api.base_url().to_owned(),
            mode,
            keepalive: !options.no_keepalive,
            protocol: api.protocol(),
            tls: api.tls(),
            timeout_ms: options.timeout.as_secs_f64() * 1000.0,
            reset: options.resets(),
        },
        bench: &load.bench,
        comparison: comparison.as_ref(),
        fail_on_regression: bench_cli.fail_on_regression,
        recorder: &load.recorder,
        pacing: load.pacing,
        transport,
        validation: validation.as_ref(),
        audit,
        sla: options.sla(),
    })?;

    let mut output: Box<dyn Write> = match &bench_cli.output_file {
        Some(path) => Box::new(File::create(path).map_err(|source| Error::ReportFile {
            path: path.clone(),
            source,
        })?),
        None => Box::new(std::io::stdout()),
    };
    match bench_cli.output {
        ReportFormat::Text => {
            let styling = Styling::detect(bench_cli.output_file.is_none());
            text::write(
                &report,
                &mut output,
                &load.bench,
                comparison.as_ref(),
                styling,
            )?
        }
        ReportFormat::Json => report.write_json(&mut output)?,
    }
    output.flush()?;
    if let Some(path) = &options.json {
        // The same document as `-o json`, in addition to the report above.
        let mut json = Vec::new();
        report.write_json(&mut json)?;
        std::fs::write(path, json).map_err(|source| Error::ReportFile {
            path: path.clone(),
            source,
        })?;
        eprintln!("load-test: JSON report written to {}", path.display());
    }
    if let Some(path) = &options.html {
        std::fs::write(path, html::render(&report)?).map_err(|source| Error::ReportFile {
            path: path.clone(),
            source,
        })?;
        eprintln!("load-test: HTML report written to {}", path.display());
    }

    if let Some(name) = &bench_cli.save_baseline {
        baseline::save(&baseline_dir, name, &load.bench, bench_cli)?;
        eprintln!(
            "load-test: baseline '{name}' saved in {}",
            baseline_dir.display()
        );
    }

    Ok(if report.verdict.passed {
        Outcome::Passed
    } else {
        Outcome::Failed
    })
}

async fn reset(api: &Api, token: Option<&str>) -> Result<(), Error> {
    match api.reset(token).await {
        Ok(answer) if (200..300).contains(&answer.status) => Ok(()),
        Ok(answer) if answer.status == 403 => Err(Error::setup(
            "POST /reset",
            format!(
                "answered 403 {}: {}",
                String::from_utf8_lossy(&answer.body),
                if token.is_some() {
                    "the token given (--reset-token / RESET_TOKEN) is not the deployment's"
                } else {
                    "the deployment wants a token: --reset-token or RESET_TOKEN"
                }
            ),
        )),
        Ok(answer) => Err(Error::setup(
            "POST /reset",
            format!("answered {}", answer.status),
        )),
        Err(error) => Err(Error::setup("POST /reset", error.to_string())),
    }
}

/// Every client's balance from its statement; a statement that breaks the rules is unreadable.
async fn read_balances(api: &Api) -> BTreeMap<ClientId, BalanceRead> {
    let mut balances = BTreeMap::new();
    for client in client_ids() {
        let read = match api.statement(client).await {
            Ok(answer) => check_statement(client, answer.status, &answer.body)
                .map(|statement| statement.saldo.total)
                .map_err(|problem| problem.to_string()),
            Err(error) => Err(error.to_string()),
        };
        balances.insert(client, read);
    }
    balances
}

fn print_validation_summary(phase: &ValidationPhase) {
    if phase.passed() {
        eprintln!(
            "load-test: validation phase passed ({} checks)",
            phase.checks
        );
        return;
    }
    eprintln!(
        "load-test: validation phase FAILED: {} of {} checks",
        phase.failures.len(),
        phase.checks
    );
    for failure in &phase.failures {
        eprintln!("  - {failure}");
    }
}
