//! The one error type of the tester: everything that stops a run from producing a report.
//!
//! A server that answers wrongly is *not* an error here: wrong answers are results, counted in
//! the report and turned into a failing exit status. An [`Error`] means the tester could not do
//! its job at all (bad options, a target that cannot be reached during setup, an unwritable
//! report file), which `main` reports with exit status 2.

/// Why a run could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options contradict each other or hold an impossible value.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// The HTTP client could not be built (for example an unusable base URL).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),

    /// A setup step the run depends on (reset, reading the start balances) did not succeed.
    #[error("{step} failed: {detail}")]
    Setup {
        /// The step that failed, e.g. "POST /reset".
        step: String,
        /// What went wrong.
        detail: String,
    },

    /// A report file (`-O`, `--json`, `--html`) could not be written.
    #[error("cannot write the report to {}: {source}", path.display())]
    ReportFile {
        /// The file asked for.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// Writing the report failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// Serialising the report failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),

    /// Drawing a chart of the HTML report failed.
    #[error("drawing the chart {chart:?}: {detail}")]
    Chart {
        /// The chart's title.
        chart: String,
        /// What went wrong.
        detail: String,
    },

    /// rlt (collector, reporter or baseline storage) failed.
    #[error("rlt: {0:#}")]
    Rlt(#[from] anyhow::Error),

    /// A task of the load generator panicked or was cancelled.
    #[error("a load generator task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// Shorthand for [`Error::Setup`].
    pub fn setup(step: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Setup {
            step: step.into(),
            detail: detail.into(),
        }
    }
}
