//! `--html FILE`: the report as one self-contained page, with charts of the run over time.
//!
//! The page must open anywhere, offline, years later, so it holds everything it shows: the
//! styles are inline, the charts are inline SVG drawn here by `plotters` (its SVG backend only:
//! text stays text and the browser renders it), and there is no script, no font, no image and
//! no link to fetch. It shows the same facts as the text report, taken from the same [`Report`]
//! (so the two cannot disagree), plus the one thing a table cannot: the series, second by second.

use std::{fmt::Write as _, ops::Range};

use plotters::{
    coord::{
        Shift,
        ranged1d::{AsRangedCoord, ValueFormatter},
    },
    prelude::*,
};

use crate::{
    audit::ClientVerdict,
    error::Error,
    mix::RequestKind,
    report::{Mode, Report},
    runner::LATE_START,
    series::Series,
};

/// Size of every chart, in CSS pixels.
const CHART_SIZE: (u32, u32) = (880, 260);

const GREEN: RGBColor = RGBColor(0x2e, 0x9e, 0x4f);
const BLUE: RGBColor = RGBColor(0x1f, 0x6f, 0xc5);
const ORANGE: RGBColor = RGBColor(0xe0, 0x8a, 0x00);
const RED: RGBColor = RGBColor(0xd0, 0x2a, 0x2a);
const PURPLE: RGBColor = RGBColor(0x7b, 0x3f, 0xb5);
const GREY: RGBColor = RGBColor(0x80, 0x80, 0x80);
/// For statuses beyond the usual four.
const OTHERS: [RGBColor; 4] = [
    PURPLE,
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The page for `report`.
pub fn render(report: &Report) -> Result<String, Error> {
    let mut page = String::with_capacity(64 * 1024);
    let verdict = pass_fail(report.verdict.passed);
    // Writing to a String cannot fail; `let _ =` keeps that out of every line below.
    let _ = write!(
        page,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>load-test: {verdict}, {target}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>load-test report <span class="badge {class}">{verdict}</span></h1>
"#,
        target = escape(&report.settings.target),
        class = verdict.to_lowercase(),
    );
    if !report.verdict.reasons.is_empty() {
        page.push_str("<ul class=\"reasons\">\n");
        for reason in &report.verdict.reasons {
            let _ = writeln!(page, "<li>{}</li>", escape(reason));
        }
        page.push_str("</ul>\n");
    }
    write_run(&mut page, report);
    write_charts(&mut page, report)?;
    write_kinds(&mut page, report);
    write_failures(&mut page, report);
    write_validation(&mut page, report);
    write_audit(&mut page, report);
    page.push_str("</body>\n</html>\n");
    Ok(page)
}

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; color: #222; max-width: 920px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.badge { font-size: 14px; padding: 2px 8px; border-radius: 4px; color: #fff; vertical-align: middle; }
.passed { background: #2e9e4f; } .failed { background: #d02a2a; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
table.facts th { text-align: left; font-weight: normal; color: #555; }
table.facts td { text-align: left; }
figure { margin: 16px 0; } figcaption { color: #555; font-size: 13px; }
svg { max-width: 100%; height: auto; display: block; }
.note { color: #555; font-size: 13px; }
.bad { color: #d02a2a; font-weight: 600; }
";

fn write_run(page: &mut String, report: &Report) {
    let settings = &report.settings;
    let mode = match settings.mode {
        Mode::ClosedLoop => "closed loop",
        Mode::OpenModel => "open model (--arrival-rate)",
        Mode::RinhaProfile => "--profile rinha (validation phase, then the open-model ramp)",
    };
    let rate = &report.rate;
    let target = match (rate.target_per_sec, rate.peak_target_per_sec) {
        (Some(target), Some(peak)) if (target - peak).abs() > 1e-9 => {
            format!("{target:.2}/s on average (peak {peak:.2}/s)")
        }
        (Some(target), _) => format!("{target:.2}/s"),
        (None, _) => "none (closed loop at full speed)".to_owned(),
    };
    let mut facts = vec![
        ("target", escape(&settings.target)),
        ("mode", mode.to_owned()),
        (
            "connections",
            if settings.keepalive {
                "keep-alive".to_owned()
            } else {
                "a new one per request".to_owned()
            },
        ),
        ("timeout", format!("{:.0} ms", settings.timeout_ms)),
        ("reset first", yes_no(settings.reset).to_owned()),
        ("duration", format!("{:.2} s", report.duration_secs)),
        (
            "requests",
            format!(
                "{} ({} OK, {} failed, {} inconsistent; {:.2}% OK)",
                report.totals.requests,
                report.totals.ok,
                report.totals.failures,
                report.totals.inconsistencies,
                report.totals.ok_ratio * 100.0
            ),
        ),
        ("target rate", target),
        (
            "achieved rate",
            format!(
                "{:.2}/s ({} started in {:.2} s){}",
                rate.achieved_per_sec,
                rate.started,
                rate.sending_secs,
                if rate.stopped_early {
                    ", stopped early by the user"
                } else {
                    ""
                }
            ),
        ),
    ];
    if let Some(open) = &rate.open_model {
        facts.push((
            "open model",
            format!(
                "{} scheduled, {} not started, {} started more than {} ms late (max lag {:.2} ms), \
                 {} waits for the in-flight cap, peak {} in flight (cap {})",
                open.scheduled,
                open.not_started,
                open.late_starts,
                LATE_START.as_millis(),
                open.max_start_lag_ms,
                open.in_flight_cap_waits,
                open.peak_in_flight,
                open.max_in_flight
            ),
        ));
    }
    let sla = &report.sla;
    facts.push((
        "Rinha score (SLA)",
        format!(
            "{:.2}% OK and under {:.0} ms (required {:.2}%): {}",
            sla.share * 100.0,
            sla.latency_threshold_ms,
            sla.required_share * 100.0,
            pass_fail(sla.passed)
        ),
    ));
    facts.push(("audit", pass_fail(report.audit.passed).to_owned()));
    if let Some(phase) = &report.validation_phase {
        facts.push((
            "validation phase",
            format!("{} ({} checks)", pass_fail(phase.passed), phase.checks),
        ));
    }

    page.push_str("<h2>Run</h2>\n<table class=\"facts\">\n");
    for (name, value) in facts {
        let _ = writeln!(page, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    page.push_str("</table>\n");
}

/// One line of a chart: a name, a colour and a value per second (`None`: no value that second).
struct Line {
    name: String,
    color: RGBColor,
    values: Vec<Option<f64>>,
}

fn write_charts(page: &mut String, report: &Report) -> Result<(), Error> {
    let series = &report.series;
    page.push_str("<h2>Over time</h2>\n");
    if series.buckets.is_empty() {
        page.push_str("<p class=\"note\">No request completed: nothing to draw.</p>\n");
        return Ok(());
    }
    page.push_str(
        "<p class=\"note\">One point per second since the measured load began. Responses and \
         latency count in the second a request ended, starts in the second it was sent.</p>\n",
    );

    let per_second = |value: &dyn Fn(&crate::series::Bucket) -> f64| -> Vec<Option<f64>> {
        series.buckets.iter().map(|b| Some(value(b))).collect()
    };

    let mut statuses: Vec<&String> = series
        .buckets
        .iter()
        .flat_map(|b| b.responses.keys())
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    let mut others = OTHERS.iter().cycle();
    let responses: Vec<Line> = statuses
        .into_iter()
        .map(|status| Line {
            name: status.clone(),
            color: match status.as_str() {
                "200" => GREEN,
                "422" => BLUE,
                "timeout" => ORANGE,
                "transport_error" => RED,
                _ => *others.next().unwrap_or(&GREY),
            },
            values: per_second(&|b| b.responses.get(status).copied().unwrap_or(0) as f64),
        })
        .collect();
    figure(
        page,
        "Responses per second, by status",
        linear_chart("responses/s", series, &responses)?,
    );

    for kind in RequestKind::ALL {
        let latency = |pick: fn(crate::series::BucketLatency) -> f64| {
            series
                .buckets
                .iter()
                .map(|b| b.latency_ms.get(kind.name()).copied().flatten().map(pick))
                .collect()
        };
        let lines = [
            Line {
                name: "p50".into(),
                color: BLUE,
                values: latency(|l| l.p50),
            },
            Line {
                name: "p99".into(),
                color: ORANGE,
                values: latency(|l| l.p99),
            },
            Line {
                name: "max".into(),
                color: RED,
                values: latency(|l| l.max),
            },
        ];
        let title = format!("Latency of {}s (ms, log scale)", kind.name());
        match latency_chart(series, &lines)? {
            Some(svg) => figure(page, &title, svg),
            None => {
                let _ = writeln!(
                    page,
                    "<p class=\"note\">No {} completed: no latency to draw.</p>",
                    kind.name()
                );
            }
        }
    }

    figure(
        page,
        "Requests in flight (mean over each second)",
        linear_chart(
            "in flight",
            series,
            &[Line {
                name: "in flight".into(),
                color: PURPLE,
                values: per_second(&|b| b.in_flight),
            }],
        )?,
    );

    let mut starts = Vec::new();
    if series.buckets.iter().any(|b| b.target.is_some()) {
        starts.push(Line {
            name: "target".into(),
            color: GREY,
            values: series.buckets.iter().map(|b| b.target).collect(),
        });
    }
    starts.push(Line {
        name: "achieved".into(),
        color: BLUE,
        values: per_second(&|b| b.started as f64),
    });
    let title = if starts.len() > 1 {
        "Requests started per second: target vs achieved"
    } else {
        "Requests started per second (no target: closed loop at full speed)"
    };
    figure(page, title, linear_chart("starts/s", series, &starts)?);
    Ok(())
}

fn figure(page: &mut String, caption: &str, svg: String) {
    let _ = writeln!(
        page,
        "<figure>\n<figcaption>{}</figcaption>\n{svg}\n</figure>",
        escape(caption)
    );
}

/// A chart from 0 to a little above the highest value.
fn linear_chart(y_label: &str, series: &Series, lines: &[Line]) -> Result<String, Error> {
    let top = highest(lines).unwrap_or(0.0).max(1.0) * 1.1;
    draw(y_label, series, lines, 0.0..top)
}

/// A log-scale chart over whole powers of ten; `None` when no line has a value.
fn latency_chart(series: &Series, lines: &[Line]) -> Result<Option<String>, Error> {
    let Some(top) = highest(lines) else {
        return Ok(None);
    };
    let bottom = lines
        .iter()
        .flat_map(|line| line.values.iter().flatten())
        .fold(top, |low, &value| low.min(value))
        .max(0.001);
    let range = 10f64.powf(bottom.log10().floor())..10f64.powf((top * 1.01).log10().ceil());
    draw("ms", series, lines, range.log_scale()).map(Some)
}

fn highest(lines: &[Line]) -> Option<f64> {
    lines
        .iter()
        .flat_map(|line| line.values.iter().flatten())
        .copied()
        .reduce(f64::max)
}

/// Draws `lines` against the seconds of `series`, each value at the middle of its second; a
/// line breaks where it has no value.
fn draw<Y>(y_label: &str, series: &Series, lines: &[Line], y: Y) -> Result<String, Error>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        draw_on(&root, y_label, series, lines, y).map_err(|error| Error::Chart {
            chart: y_label.to_owned(),
            detail: error.to_string(),
        })?;
    }
    Ok(svg)
}

fn draw_on<Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    y_label: &str,
    series: &Series,
    lines: &[Line],
    y: Y,
) -> Result<(), Box<dyn std::error::Error>>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    root.fill(&WHITE)?;
    let seconds: Range<f64> = 0.0..series.buckets.len() as f64;
    let mut chart = ChartBuilder::on(root)
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(56)
        .build_cartesian_2d(seconds, y)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load began")
        .y_desc(y_label)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
        .draw()?;
    for line in lines {
        let color = line.color;
        let mut labelled = false;
        for segment in segments(&line.values) {
            let drawn = chart.draw_series(LineSeries::new(segment, color.stroke_width(2)))?;
            if !labelled {
                drawn.label(line.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
                labelled = true;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
        .draw()?;
    root.present()?;
    Ok(())
}

/// An axis label: whole numbers without decimals, small ones with as few as they need.
fn tick(value: &f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The runs of consecutive seconds that have a value, as points at the middle of each second.
fn segments(values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for (second, value) in values.iter().enumerate() {
        match value {
            Some(value) => current.push((second as f64 + 0.5, *value)),
            None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

fn write_kinds(page: &mut String, report: &Report) {
    page.push_str(
        "<h2>Requests by kind</h2>\n<table>\n<tr><th>kind</th><th>count</th><th>ok</th>\
         <th>failed</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th>\
         <th>max ms</th><th>statuses</th></tr>\n",
    );
    for kind in RequestKind::ALL {
        let Some(stats) = report.kinds.get(kind.name()) else {
            continue;
        };
        let latency = stats.latency_ms.map_or_else(
            || "<td>-</td>".repeat(5),
            |p| {
                [p.p50, p.p90, p.p99, p.p99_9, p.max]
                    .iter()
                    .map(|v| format!("<td>{v:.2}</td>"))
                    .collect()
            },
        );
        let statuses: Vec<String> = stats
            .statuses
            .iter()
            .map(|(status, count)| format!("{}: {count}", escape(status)))
            .collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{latency}<td>{}</td></tr>",
            kind.name(),
            stats.count,
            stats.ok,
            stats.failures,
            statuses.join(", ")
        );
    }
    page.push_str("</table>\n");
}

fn write_failures(page: &mut String, report: &Report) {
    let failures = &report.failures;
    let _ = writeln!(
        page,
        "<h2>Failures</h2>\n<p>{} of {} requests</p>",
        failures.total, report.totals.requests
    );
    if !failures.by_reason.is_empty() {
        page.push_str("<table>\n");
        for (reason, count) in &failures.by_reason {
            let _ = writeln!(page, "<tr><td>{reason}</td><td>{count}</td></tr>");
        }
        page.push_str("</table>\n");
    }
    let samples = failures.first.iter().chain(&report.inconsistencies.first);
    let mut listed = false;
    for sample in samples {
        if !listed {
            page.push_str("<ul>\n");
            listed = true;
        }
        let status = sample
            .status
            .map(|status| format!("status {status}, "))
            .unwrap_or_default();
        let _ = writeln!(
            page,
            "<li>{} on client {} ({}): {status}{}: {}</li>",
            sample.kind.name(),
            sample.client,
            sample.signed_amount,
            sample.reason,
            escape(&sample.detail)
        );
    }
    if listed {
        page.push_str("</ul>\n");
    }
    let _ = writeln!(
        page,
        "<p>Inconsistencies (answers that broke the contract): <span class=\"{}\">{}</span></p>",
        if report.inconsistencies.total > 0 {
            "bad"
        } else {
            ""
        },
        report.inconsistencies.total
    );
}

fn write_validation(page: &mut String, report: &Report) {
    let Some(phase) = &report.validation_phase else {
        return;
    };
    let _ = writeln!(
        page,
        "<h2>Validation phase</h2>\n<p>{}: {} checks, {} failed</p>",
        pass_fail(phase.passed),
        phase.checks,
        phase.failures.len()
    );
    if !phase.failures.is_empty() {
        page.push_str("<ul>\n");
        for failure in &phase.failures {
            let _ = writeln!(page, "<li>{}</li>", escape(failure));
        }
        page.push_str("</ul>\n");
    }
}

fn write_audit(page: &mut String, report: &Report) {
    let audit = &report.audit;
    let _ = writeln!(
        page,
        "<h2>Audit (balances against accepted transactions)</h2>\n<p>{} (start state: {})</p>",
        pass_fail(audit.passed),
        if audit.after_reset {
            "after /reset"
        } else {
            "read before the load"
        }
    );
    if !audit.problems.is_empty() {
        page.push_str("<ul>\n");
        for problem in &audit.problems {
            let _ = writeln!(page, "<li>{}</li>", escape(problem));
        }
        page.push_str("</ul>\n");
    }
    page.push_str(
        "<table>\n<tr><th>client</th><th>start</th><th>end</th><th>accepted Δ</th>\
         <th>actual Δ</th><th>discrepancy</th><th>unknown</th><th>verdict</th></tr>\n",
    );
    let show = |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    for client in &audit.clients {
        let verdict = match client.verdict {
            ClientVerdict::Exact => "exact",
            ClientVerdict::ExplainedByUnknown => "explained by unknown writes",
            ClientVerdict::Unexplained => "<span class=\"bad\">UNEXPLAINED</span>",
            ClientVerdict::Unreadable => "<span class=\"bad\">UNREADABLE</span>",
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{verdict}</td></tr>",
            client.client,
            show(client.start_saldo),
            show(client.end_saldo),
            client.accepted_delta,
            show(client.actual_delta),
            show(client.discrepancy),
            client.unknown,
        );
    }
    page.push_str("</table>\n");
}

fn pass_fail(passed: bool) -> &'static str {
    if passed { "PASSED" } else { "FAILED" }
}

fn yes_no(yes: bool) -> &'static str {
    if yes { "yes" } else { "no" }
}

/// `text` with the characters HTML gives a meaning escaped (details may quote server bodies).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_breaks_where_a_second_has_no_value() {
        let values = [Some(1.0), Some(2.0), None, None, Some(3.0)];
        assert_eq!(
            segments(&values),
            [vec![(0.5, 1.0), (1.5, 2.0)], vec![(4.5, 3.0)]]
        );
        assert!(segments(&[None, None]).is_empty());
    }

    #[test]
    fn axis_labels_carry_no_useless_decimals() {
        let labels: Vec<String> = [0.0, 12.0, 1000.0, 0.5, 0.001, 2.25]
            .iter()
            .map(tick)
            .collect();
        assert_eq!(labels, ["0", "12", "1000", "0.5", "0.001", "2.25"]);
    }

    #[test]
    fn text_from_the_server_cannot_inject_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }
}
