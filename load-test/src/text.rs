//! The text report: rlt's summary, then the [`Report`]'s sections, one fact a line.
//!
//! Layout only: every number and every sentence comes from the report model, worded there once
//! for this report and the `--html` page alike. This module decides the order of the sections,
//! the short labels in front of some lines ("target", "e.g."), the indentation and the column
//! widths of the two tables.
//!
//! rlt's text reporter always colours its summary (ANSI escape sequences from crossterm and
//! tabled) and draws its histogram with the characters 🭵, ■ and ◧. That suits a terminal only:
//! in a file, a pipe or a CI log they are noise. So the summary is rendered into a buffer and,
//! unless [`Styling::detect`] finds a terminal, written [`plain`]: escape sequences removed, the
//! three characters replaced by ASCII of the same width. This module's own sections are plain
//! text already.

use std::io::{IsTerminal, Write};

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

/// Whether the text report may use colour and rlt's drawing characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Styling {
    /// As rlt renders it: colours, bold, the histogram's block characters.
    Terminal,
    /// ASCII layout, no escape sequence.
    Plain,
}

impl Styling {
    /// [`Styling::Terminal`] only when the report goes to stdout (`to_stdout`: no `-O`), stdout
    /// is a terminal, and `NO_COLOR` is unset or empty (<https://no-color.org>).
    pub fn detect(to_stdout: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        if to_stdout && !no_color && std::io::stdout().is_terminal() {
            Styling::Terminal
        } else {
            Styling::Plain
        }
    }
}

/// Writes rlt's text summary (with the baseline comparison, if any), then the report's sections.
pub fn write(
    report: &Report,
    w: &mut dyn Write,
    bench: &BenchReport,
    comparison: Option<&Comparison>,
    styling: Styling,
) -> Result<(), Error> {
    let mut summary = Vec::new();
    TextReporter.print(&mut summary, bench, comparison)?;
    match styling {
        Styling::Terminal => w.write_all(&summary)?,
        Styling::Plain => w.write_all(plain(&String::from_utf8_lossy(&summary)).as_bytes())?,
    }
    writeln!(w)?;
    write_kinds(report, w)?;
    write_rate(report, w)?;
    writeln!(w, "{}", titles::CONNECTIONS)?;
    writeln!(w, "  {}", report.transport_summary())?;
    writeln!(w, "  {}", report.connections_summary())?;
    writeln!(w, "  {}", report.protocols_summary())?;
    writeln!(w)?;
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

/// `text` without ANSI escape sequences, and with rlt's histogram characters in ASCII: the axis
/// 🭵 as `|`, a bar's ■ as `#` and its half-cell ◧ as `+` (one column each, as before, so the
/// columns tabled aligned stay aligned: it measures widths without the escape sequences). The
/// spaces that pad tabled's last column are dropped from the ends of lines.
pub fn plain(text: &str) -> String {
    let stripped = without_escapes(text);
    let lines: Vec<&str> = stripped.split('\n').map(str::trim_end).collect();
    lines.join("\n")
}

/// `text` without ANSI escape sequences, rlt's drawing characters in ASCII.
fn without_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI (colours, bold, underline, resets): parameters and intermediates up to the
                // final byte, '@'..='~'.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (e.g. a hyperlink): up to BEL or ST (ESC \).
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                // Any other escape is ESC and one character.
                _ => {}
            },
            '🭵' => out.push('|'),
            '■' => out.push('#'),
            '◧' => out.push('+'),
            c => out.push(c),
        }
    }
    out
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
    fn plain_text_has_no_escape_sequence_and_no_drawing_character() {
        let styled = "\x1b[1m\x1b[4m\x1b[33mSummary\x1b[0m\n  \x1b[32m[12]\x1b[39m \
                      \x1b[32m48267.26µs\x1b[39m 🭵\x1b[32m■■■◧\x1b[39m   \n\
                      \x1b]8;;http://x\x1b\\link\x1b]8;;\x07 Δ\x1bc\n";
        assert_eq!(plain(styled), "Summary\n  [12] 48267.26µs |###+\nlink Δ\n");
        assert_eq!(plain("nothing to do: 1.5ms"), "nothing to do: 1.5ms");
    }

    #[test]
    fn a_report_written_to_a_file_is_plain() {
        // -O: whatever stdout is and whatever NO_COLOR says.
        assert_eq!(Styling::detect(false), Styling::Plain);
    }

    #[test]
    fn a_table_line_pads_every_cell_but_the_last() {
        assert_eq!(
            table_line(&["debit", "12", "3", "200: 12"], &[6, 4, 3]),
            "  debit    12   3  200: 12"
        );
    }
}
