//! `--html FILE`: the report as one self-contained page, with charts of the run over time.
//!
//! The page must open anywhere, offline, years later, so it holds everything it shows: the
//! styles are inline, the charts are inline SVG drawn here by `plotters` (its SVG backend only:
//! text stays text and the browser renders it), and there is no script, no font, no image and
//! no link to fetch. It lays out the same facts as the text report, in the same words, both
//! taken from the one [`Report`] model (so the two cannot disagree), plus what only the page
//! shows: the run's settings and the series, second by second, as charts.

use std::{fmt::Write as _, ops::Range};

use plotters::{
    coord::{
        Shift,
        ranged1d::{AsRangedCoord, ValueFormatter},
    },
    prelude::*,
};

use crate::{
    error::Error,
    mix::RequestKind,
    report::{AUDIT_COLUMNS, KIND_COLUMNS, NO_TARGET, Report, STOPPED_EARLY, pass_fail, titles},
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
    let rate = &report.rate;
    let mut facts = vec![
        ("target", settings.target.clone()),
        ("mode", settings.mode.label().to_owned()),
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
        (
            "target rate",
            report
                .target_rate()
                .unwrap_or_else(|| format!("none ({NO_TARGET})")),
        ),
        (
            "achieved rate",
            format!(
                "{} ({}){}",
                report.achieved_rate(),
                report.started(),
                if rate.stopped_early {
                    format!(", {STOPPED_EARLY}")
                } else {
                    String::new()
                }
            ),
        ),
    ];
    if let Some(open) = report.open_model_summary() {
        facts.push(("open model", open));
    }
    facts.push(("transport", report.transport_summary()));
    facts.push((
        "connections",
        format!(
            "{}; {}",
            report.connections_summary(),
            report.protocols_summary()
        ),
    ));
    facts.push((titles::SLA, report.sla_summary()));
    facts.push(("audit", pass_fail(report.audit.passed).to_owned()));
    if let Some(summary) = report.validation_summary() {
        facts.push(("validation phase", summary));
    }

    page.push_str("<h2>Run</h2>\n<table class=\"facts\">\n");
    for (name, value) in facts {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(&value)
        );
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
        "Requests started per second: target vs achieved".to_owned()
    } else {
        format!("Requests started per second (no target: {NO_TARGET})")
    };
    figure(page, &title, linear_chart("starts/s", series, &starts)?);
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

/// A table's header row.
fn header_row(columns: &[&str]) -> String {
    let cells: String = columns
        .iter()
        .map(|column| format!("<th>{}</th>", escape(column)))
        .collect();
    format!("<tr>{cells}</tr>")
}

/// Cells of a table row, escaped.
fn cells<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values
        .into_iter()
        .map(|value| format!("<td>{}</td>", escape(value)))
        .collect()
}

fn write_kinds(page: &mut String, report: &Report) {
    let _ = writeln!(
        page,
        "<h2>{}</h2>\n<table>\n{}",
        escape(titles::KINDS),
        header_row(&KIND_COLUMNS)
    );
    for (name, kind) in report.kinds_in_order() {
        let row = cells(kind.cells(name).iter().map(String::as_str));
        let _ = writeln!(page, "<tr>{row}</tr>");
    }
    page.push_str("</table>\n");
}

fn write_failures(page: &mut String, report: &Report) {
    let failures = &report.failures;
    section(page, titles::FAILURES, &report.failure_count());
    if !failures.by_reason.is_empty() {
        page.push_str("<table>\n");
        for (reason, count) in &failures.by_reason {
            let _ = writeln!(page, "<tr><td>{reason}</td><td>{count}</td></tr>");
        }
        page.push_str("</table>\n");
    }
    let samples: Vec<String> = failures
        .first
        .iter()
        .chain(&report.inconsistencies.first)
        .map(|sample| sample.describe())
        .collect();
    write_list(page, &samples);
    let _ = writeln!(
        page,
        "<p>{} (answers that broke the contract): <span class=\"{}\">{}</span></p>",
        escape(titles::INCONSISTENCIES),
        if report.inconsistencies.total > 0 {
            "bad"
        } else {
            ""
        },
        report.inconsistencies.total
    );
}

fn write_validation(page: &mut String, report: &Report) {
    let (Some(phase), Some(summary)) = (&report.validation_phase, report.validation_summary())
    else {
        return;
    };
    section(page, titles::VALIDATION, &summary);
    write_list(page, &phase.failures);
}

fn write_audit(page: &mut String, report: &Report) {
    let audit = &report.audit;
    section(page, titles::AUDIT, &report.audit_summary());
    write_list(page, &audit.problems);
    let _ = writeln!(page, "<table>\n{}", header_row(&AUDIT_COLUMNS));
    for client in &audit.clients {
        let verdict = client.verdict.label();
        let verdict = if client.verdict.is_alarming() {
            format!("<span class=\"bad\">{verdict}</span>")
        } else {
            verdict.to_owned()
        };
        let row = cells(client.cells().iter().map(String::as_str));
        let _ = writeln!(page, "<tr>{row}<td>{verdict}</td></tr>");
    }
    page.push_str("</table>\n");
}

/// A section's title and its one-line summary.
fn section(page: &mut String, title: &str, summary: &str) {
    let _ = writeln!(
        page,
        "<h2>{}</h2>\n<p>{}</p>",
        escape(title),
        escape(summary)
    );
}

/// A bulleted list of `items`, escaped; nothing when there are none.
fn write_list(page: &mut String, items: &[String]) {
    if items.is_empty() {
        return;
    }
    page.push_str("<ul>\n");
    for item in items {
        let _ = writeln!(page, "<li>{}</li>", escape(item));
    }
    page.push_str("</ul>\n");
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
    fn the_page_lays_out_the_models_words() {
        let report = crate::report::tests::sample();
        let page = render(&report).expect("a page");
        let mut phrases = vec![
            report.target_rate().expect("a target"),
            report.open_model_summary().expect("open"),
            report.transport_summary(),
            report.connections_summary(),
            report.protocols_summary(),
            report.sla_summary(),
            report.failure_count(),
            report.validation_summary().expect("a validation phase"),
            report.audit_summary(),
            report.kinds["debit"].statuses_summary(),
            STOPPED_EARLY.to_owned(),
        ];
        phrases.extend(
            report
                .failures
                .first
                .iter()
                .chain(&report.inconsistencies.first)
                .map(|sample| sample.describe()),
        );
        for phrase in phrases {
            assert!(page.contains(&escape(&phrase)), "no {phrase:?} in:\n{page}");
        }
        assert!(
            page.contains("<span class=\"bad\">UNREADABLE</span>"),
            "{page}"
        );
    }

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
