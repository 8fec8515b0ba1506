//! `--profile rinha`: the official Rinha de Backend 2024 Q1 test, reproduced end to end.
//!
//! It has two parts, as the Gatling simulation had. First a validation phase against a fresh
//! state: concurrent debits and credits on client 1 with exact balance checks, the per-client
//! statement/transaction sequence, the five invalid bodies and the 404 (docs/CONTRACT.md, "The
//! official test"). Then the load: an open model ramping from 1 to 340
//! requests/s over 2 minutes and holding 340 for 2 more, in the 22:11:1 mix. A time scale
//! shortens both load stretches proportionally for quick runs; the validation phase is made of
//! single requests and is never scaled. Each check of the validation phase is counted, and every
//! failed one is kept with what was seen, because "validation failed" alone helps nobody.

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::{
    client::Api,
    contract::{ClientId, UNKNOWN_CLIENT, client_ids, limit_of},
    error::Error,
    mix::RequestKind,
    schedule::Schedule,
    validate::{
        Statement, TransactionBalance, TransactionOutcome, check_statement, check_transaction,
    },
};

/// The rate the official load starts from, in requests per second.
pub const START_RATE: f64 = 1.0;
/// The rate it ramps up to and holds (220 debits + 110 credits + 10 statements per second).
pub const PEAK_RATE: f64 = 340.0;
/// How long the ramp lasts at time scale 1.
pub const RAMP: Duration = Duration::from_secs(120);
/// How long the peak is held after the ramp at time scale 1.
pub const HOLD: Duration = Duration::from_secs(120);
/// Concurrent requests in step 1 of the validation phase.
const CONCURRENT_VALIDATION_REQUESTS: usize = 25;
/// Concurrent statements after "danada" in step 2.
const CONCURRENT_STATEMENTS: usize = 4;

/// The five invalid bodies of the official test: each must be answered 422 or 400.
pub const INVALID_BODIES: [(&str, &str); 5] = [
    (
        r#"{"valor": 1.2, "tipo": "d", "descricao": "devolve"}"#,
        "fractional valor",
    ),
    (
        r#"{"valor": 1, "tipo": "x", "descricao": "devolve"}"#,
        "tipo \"x\"",
    ),
    (
        r#"{"valor": 1, "tipo": "c", "descricao": "123456789 123456789 12345"}"#,
        "25-character descricao",
    ),
    (
        r#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
        "empty descricao",
    ),
    (
        r#"{"valor": 1, "tipo": "c", "descricao": null}"#,
        "null descricao",
    ),
];

/// The official load's timetable, with every duration multiplied by `time_scale`.
pub fn schedule(time_scale: f64) -> Result<Schedule, Error> {
    if !time_scale.is_finite() || time_scale <= 0.0 {
        return Err(Error::InvalidOptions(format!(
            "--time-scale must be a number above 0, got {time_scale}"
        )));
    }
    let ramp = RAMP.mul_f64(time_scale);
    let total = (RAMP + HOLD).mul_f64(time_scale);
    if total < Duration::from_millis(100) {
        return Err(Error::InvalidOptions(format!(
            "--time-scale {time_scale} leaves a load of {total:?}; use at least 0.0005 (120 ms)"
        )));
    }
    Schedule::ramp_then_hold(START_RATE, PEAK_RATE, ramp, total)
}

/// The outcome of the validation phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidationPhase {
    /// Checks made (one per request answer and per value compared).
    pub checks: u64,
    /// The checks that failed, with what was seen.
    pub failures: Vec<String>,
}

impl ValidationPhase {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) -> bool {
        self.checks += 1;
        if !ok {
            self.failures.push(failure());
        }
        ok
    }

    /// Records one check that passed with `Ok` or failed with the message in `Err`.
    fn check_result<T>(&mut self, result: Result<T, String>) -> Option<T> {
        self.checks += 1;
        result.map_err(|failure| self.failures.push(failure)).ok()
    }

    fn merge(&mut self, other: ValidationPhase) {
        self.checks += other.checks;
        self.failures.extend(other.failures);
    }

    /// A transaction answered 200 with a valid balance; records the check.
    async fn transaction(
        &mut self,
        api: &Api,
        client: ClientId,
        kind: RequestKind,
        valor: i64,
        descricao: &str,
    ) -> Option<TransactionBalance> {
        let tipo = kind.tipo().unwrap_or("d");
        let body = serde_json::json!({ "valor": valor, "tipo": tipo, "descricao": descricao });
        let what = format!("client {client}: {} of {valor} {descricao:?}", kind.name());
        let balance = match api.transaction(client, &body).await {
            Err(error) => Err(format!("{what}: {error}")),
            Ok(answer) => match check_transaction(kind, client, answer.status, &answer.body) {
                Ok(TransactionOutcome::Applied(balance)) => Ok(balance),
                Ok(TransactionOutcome::Refused) => {
                    Err(format!("{what}: answered 422, expected 200"))
                }
                Err(problem) => Err(format!("{what}: {problem}")),
            },
        };
        self.check_result(balance)
    }

    /// A statement answered 200 with a valid body; records the check.
    async fn statement(&mut self, api: &Api, client: ClientId, when: &str) -> Option<Statement> {
        let statement = match api.statement(client).await {
            Err(error) => Err(format!("client {client}: statement {when}: {error}")),
            Ok(answer) => check_statement(client, answer.status, &answer.body)
                .map_err(|problem| format!("client {client}: statement {when}: {problem}")),
        };
        self.check_result(statement)
    }
}

/// Runs the validation phase (official steps 1–3). Expects the state right after `/reset`.
pub async fn validation_phase(api: Arc<Api>) -> Result<ValidationPhase, Error> {
    let mut phase = ValidationPhase::default();
    concurrent_debits_then_credits(&api, &mut phase).await?;

    let mut per_client = JoinSet::new();
    for client in client_ids() {
        let api = Arc::clone(&api);
        per_client.spawn(async move { client_sequence(&api, client).await });
    }
    while let Some(joined) = per_client.join_next().await {
        phase.merge(joined??);
    }

    match api.statement(UNKNOWN_CLIENT).await {
        Ok(answer) => phase.check(answer.status == 404, || {
            format!(
                "client {UNKNOWN_CLIENT}: statement answered {}, expected 404",
                answer.status
            )
        }),
        Err(error) => phase.check(false, || {
            format!("client {UNKNOWN_CLIENT}: statement: {error}")
        }),
    };
    Ok(phase)
}

/// Step 1: 25 simultaneous debits of 1 on client 1, balance -25; 25 credits, balance 0.
async fn concurrent_debits_then_credits(
    api: &Arc<Api>,
    phase: &mut ValidationPhase,
) -> Result<(), Error> {
    const CLIENT: ClientId = 1;
    for (kind, expected_total) in [(RequestKind::Debit, -25), (RequestKind::Credit, 0)] {
        let mut requests = JoinSet::new();
        for _ in 0..CONCURRENT_VALIDATION_REQUESTS {
            let api = Arc::clone(api);
            requests.spawn(async move {
                let mut own = ValidationPhase::default();
                own.transaction(&api, CLIENT, kind, 1, "validacao").await;
                own
            });
        }
        while let Some(joined) = requests.join_next().await {
            phase.merge(joined?);
        }
        let when = format!(
            "after {CONCURRENT_VALIDATION_REQUESTS} concurrent {}s of 1",
            kind.name()
        );
        if let Some(statement) = phase.statement(api, CLIENT, &when).await {
            let total = statement.saldo.total;
            phase.check(total == expected_total, || {
                format!(
                    "client {CLIENT}: statement {when}: total {total}, expected {expected_total}"
                )
            });
        }
    }
    Ok(())
}

/// Step 2 for one client: statement, toma/devolve, their order, danada and four concurrent
/// statements, the five invalid bodies.
async fn client_sequence(api: &Arc<Api>, client: ClientId) -> Result<ValidationPhase, Error> {
    let mut phase = ValidationPhase::default();
    let limit = limit_of(client).unwrap_or_default();

    if let Some(statement) = phase.statement(api, client, "at the start").await {
        let (total, limite) = (statement.saldo.total, statement.saldo.limite);
        phase.check(total == 0 && limite == limit, || {
            format!("client {client}: first statement shows total {total} limite {limite}, expected 0 and {limit}")
        });
    }

    phase
        .transaction(api, client, RequestKind::Credit, 1, "toma")
        .await;
    phase
        .transaction(api, client, RequestKind::Debit, 1, "devolve")
        .await;
    if let Some(statement) = phase.statement(api, client, "after toma/devolve").await {
        let entries = &statement.ultimas_transacoes;
        let shows = |i: usize, descricao: &str, tipo: &str| {
            entries
                .get(i)
                .is_some_and(|e| e.descricao == descricao && e.tipo == tipo && e.valor == 1)
        };
        phase.check(shows(0, "devolve", "d") && shows(1, "toma", "c"), || {
            format!(
                "client {client}: statement after toma/devolve should list devolve/d/1 then toma/c/1, lists {:?}",
                entries.iter().take(2).map(|e| (&e.descricao, &e.tipo, e.valor)).collect::<Vec<_>>()
            )
        });
    }

    if let Some(danada) = phase
        .transaction(api, client, RequestKind::Credit, 1, "danada")
        .await
    {
        let mut statements = JoinSet::new();
        for _ in 0..CONCURRENT_STATEMENTS {
            let api = Arc::clone(api);
            statements.spawn(async move {
                let mut own = ValidationPhase::default();
                if let Some(statement) = own.statement(&api, client, "after danada").await {
                    let top = statement.ultimas_transacoes.first();
                    let on_top = top.is_some_and(|e| e.descricao == "danada" && e.tipo == "c" && e.valor == 1);
                    let (total, limite) = (statement.saldo.total, statement.saldo.limite);
                    own.check(on_top && total == danada.saldo && limite == danada.limite, || {
                        format!(
                            "client {client}: statement after danada shows total {total} limite {limite} top {:?}; \
                             the credit answered saldo {} limite {} and must be on top",
                            top.map(|e| (&e.descricao, &e.tipo, e.valor)),
                            danada.saldo,
                            danada.limite
                        )
                    });
                }
                own
            });
        }
        while let Some(joined) = statements.join_next().await {
            phase.merge(joined?);
        }
    }

    for (body, why) in INVALID_BODIES {
        let path = format!("/clientes/{client}/transacoes");
        match api.post_raw(&path, body.to_owned()).await {
            Ok(answer) => phase.check(matches!(answer.status, 400 | 422), || {
                format!(
                    "client {client}: invalid body ({why}) answered {}, expected 422 or 400",
                    answer.status
                )
            }),
            Err(error) => phase.check(false, || {
                format!("client {client}: invalid body ({why}): {error}")
            }),
        };
    }
    Ok(phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_full_scale_the_load_is_the_official_four_minutes() {
        let schedule = schedule(1.0).expect("valid");
        assert_eq!(schedule.duration(), Duration::from_secs(240));
        assert_eq!(schedule.peak_rate(), PEAK_RATE);
        assert_eq!(schedule.arrival_count(), 20_460 + 40_800);
    }

    #[test]
    fn the_time_scale_shortens_every_stretch_proportionally() {
        // A quarter: the whole load in one minute, ramping for 30 s, at the same peak rate.
        let schedule = schedule(0.25).expect("valid");
        assert_eq!(schedule.duration(), Duration::from_secs(60));
        assert_eq!(schedule.segments()[0].duration, Duration::from_secs(30));
        assert_eq!(schedule.peak_rate(), PEAK_RATE);
        assert_eq!(schedule.arrival_count(), (20_460 + 40_800) / 4);
    }

    #[test]
    fn a_meaningless_time_scale_is_refused() {
        for scale in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.0001] {
            assert!(schedule(scale).is_err(), "{scale}");
        }
    }

    #[test]
    fn the_invalid_bodies_are_each_invalid_for_the_reason_given() {
        let parsed: Vec<serde_json::Value> = INVALID_BODIES
            .iter()
            .map(|(body, _)| {
                serde_json::from_str(body).expect("each is JSON, only its values are wrong")
            })
            .collect();
        assert!(parsed[0]["valor"].is_f64());
        assert_eq!(parsed[1]["tipo"], "x");
        assert_eq!(
            parsed[2]["descricao"].as_str().map(|d| d.chars().count()),
            Some(25)
        );
        assert_eq!(parsed[3]["descricao"], "");
        assert!(parsed[4]["descricao"].is_null());
    }
}
