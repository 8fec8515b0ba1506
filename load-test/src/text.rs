//! The text report: rlt's summary unchanged, then the [`Report`]'s sections, one fact a line.
//!
//! Layout only: every number and every sentence comes from the report model, worded there once
//! for this report and the `--html` page alike. This module decides the order of the sections,
//! the short labels in front of some lines ("target", "e.g."), the indentation and the column
//! widths of the two tables.

use std::io::Write;

use rlt::{
    BenchReport,
    baseline::Comparison,
    reporter::{BenchReporter, TextReporter},
};

use crate::{
    error::Error,
    report::{AUDIT_COLUMNS, KIND_COLUMNS, NO_TARGET, Report, STOPPED_EARLY, pass_fail, titles},
};

/// Widths of the per-kind table's columns but the last.
const KIND_WIDTHS: [usize; 9] = [10, 9, 9, 7, 9, 9, 9, 9, 9];
/// Widths of the audit table's columns but the last.
const AUDIT_WIDTHS: [usize; 7] = [6, 12, 12, 12, 12, 11, 8];

/// Writes rlt's text summary (with the baseline comparison, if any), then the report's sections.
pub fn write(
    report: &Report,
    w: &mut dyn Write,
    bench: &BenchReport,
    comparison: Option<&Comparison>,
) -> Result<(), Error> {
    TextReporter.print(w, bench, comparison)?;
    writeln!(w)?;
    write_kinds(report, w)?;
    write_rate(report, w)?;
    write_failures(report, w)?;
    if let (Some(phase), Some(summary)) = (&report.validation_phase, report.validation_summary()) {
        writeln!(w, "{}", titles::VALIDATION)?;
        writeln!(w, "  {summary}")?;
        for failure in &phase.failures {
            writeln!(w, "  - {failure}")?;
        }
        writeln!(w)?;
    }
    write_audit(report, w)?;
    writeln!(w, "{}", titles::SLA)?;
    writeln!(w, "  {}", report.sla_summary())?;
    writeln!(w)?;
    writeln!(w, "{}", titles::VERDICT)?;
    writeln!(w, "  {}", pass_fail(report.verdict.passed))?;
    for reason in &report.verdict.reasons {
        writeln!(w, "  - {reason}")?;
    }
    Ok(())
}

/// One line of a table: the cells under `widths` padded to them (the first left-aligned, the
/// others right-aligned), then the last cell as it is.
fn table_line<S: AsRef<str>>(cells: &[S], widths: &[usize]) -> String {
    let mut line = String::from(" ");
    for (index, (cell, &width)) in cells.iter().zip(widths).enumerate() {
        let cell = cell.as_ref();
        if index == 0 {
            line.push_str(&format!(" {cell:<width$}"));
        } else {
            line.push_str(&format!(" {cell:>width$}"));
        }
    }
    line.push_str("  ");
    if let Some(last) = cells.get(widths.len()) {
        line.push_str(last.as_ref());
    }
    line
}

fn write_kinds(report: &Report, w: &mut dyn Write) -> std::io::Result<()> {
    writeln!(w, "{}", titles::KINDS)?;
    writeln!(w, "{}", table_line(&KIND_COLUMNS, &KIND_WIDTHS))?;
    for (name, kind) in report.kinds_in_order() {
        writeln!(w, "{}", table_line(&kind.cells(name), &KIND_WIDTHS))?;
    }
    writeln!(w)
}

fn write_rate(report: &Report, w: &mut dyn Write) -> std::io::Result<()> {
    let rate = &report.rate;
    writeln!(w, "{}", titles::RATE)?;
    let achieved = report.achieved_rate();
    match report.target_rate() {
        Some(target) => writeln!(w, "  target {target}, achieved {achieved}")?,
        None => writeln!(w, "  no target ({NO_TARGET}), achieved {achieved}")?,
    }
    writeln!(w, "  {}", report.started())?;
    if rate.stopped_early {
        writeln!(w, "  {STOPPED_EARLY}")?;
    }
    if let Some(open) = report.open_model_summary() {
        writeln!(w, "  open model: {open}")?;
    } else if let Some(note) = report.closed_loop_shortfall() {
        writeln!(w, "  note: {note}")?;
    }
    writeln!(w)
}

fn write_failures(report: &Report, w: &mut dyn Write) -> std::io::Result<()> {
    writeln!(w, "{}", titles::FAILURES)?;
    writeln!(w, "  {}", report.failure_count())?;
    for (reason, count) in &report.failures.by_reason {
        writeln!(w, "  {reason}: {count}")?;
    }
    for sample in &report.failures.first {
        writeln!(w, "  e.g. {}", sample.describe())?;
    }
    writeln!(w)?;
    writeln!(w, "{}", titles::INCONSISTENCIES)?;
    writeln!(w, "  {}", report.inconsistencies.total)?;
    for sample in &report.inconsistencies.first {
        writeln!(w, "  - {}", sample.describe())?;
    }
    writeln!(w)
}

fn write_audit(report: &Report, w: &mut dyn Write) -> std::io::Result<()> {
    let audit = &report.audit;
    writeln!(w, "{}", titles::AUDIT)?;
    writeln!(w, "  {}", report.audit_summary())?;
    for problem in &audit.problems {
        writeln!(w, "  - {problem}")?;
    }
    writeln!(w, "{}", table_line(&AUDIT_COLUMNS, &AUDIT_WIDTHS))?;
    for client in &audit.clients {
        let mut cells = client.cells().to_vec();
        cells.push(client.verdict.label().to_owned());
        writeln!(w, "{}", table_line(&cells, &AUDIT_WIDTHS))?;
    }
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sections after rlt's summary, for `report`.
    fn sections(report: &Report) -> String {
        let mut text = Vec::new();
        write_kinds(report, &mut text).expect("writes to a Vec");
        write_rate(report, &mut text).expect("writes to a Vec");
        write_failures(report, &mut text).expect("writes to a Vec");
        write_audit(report, &mut text).expect("writes to a Vec");
        String::from_utf8(text).expect("UTF-8")
    }

    #[test]
    fn the_sections_lay_out_the_models_words() {
        let report = crate::report::tests::sample();
        let text = sections(&report);
        for phrase in [
            format!(
                "  target {}, achieved 100.00/s",
                report.target_rate().expect("a target")
            ),
            format!("  {}", report.started()),
            format!("  {STOPPED_EARLY}"),
            format!(
                "  open model: {}",
                report.open_model_summary().expect("open")
            ),
            format!("  {}", report.failure_count()),
            format!("  e.g. {}", report.failures.first[0].describe()),
            format!("  - {}", report.inconsistencies.first[0].describe()),
            format!("  {}", report.audit_summary()),
        ] {
            assert!(
                text.lines().any(|line| line == phrase),
                "no {phrase:?} in:\n{text}"
            );
        }
        assert!(
            text.contains(
                "  debit            300       298       2      1.50      2.00      3.25      \
                 4.00      5.00  200: 298, timeout: 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  3                 0            ?           -8            ?           ?        \
                 1  UNREADABLE\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_table_line_pads_every_cell_but_the_last() {
        assert_eq!(
            table_line(&["debit", "12", "3", "200: 12"], &[6, 4, 3]),
            "  debit    12   3  200: 12"
        );
    }
}
