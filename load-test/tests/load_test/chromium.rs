//! The `--html` page in a real browser: Debian's headless Chromium renders it to a screenshot and
//! reports what its console said.
//!
//! Chromium's own command-line modes are enough, so there is no DevTools driver: `--screenshot`
//! writes a PNG of exactly the window's size, `--dump-dom` prints the document after loading,
//! and `--enable-logging=stderr --v=0` copies every console message to stderr as an
//! `INFO:CONSOLE` line. The page has no script, so any console message at all is a fault. As root
//! on a machine without the internet, Chromium needs no sandbox, no GPU, every background service
//! off (or it tries the network) and a fresh profile directory per run.
//!
//! Without Chromium the page checks are skipped with a message, except under CI (`CI` set),
//! where they fail: `.ci/run` installs it.

use std::{path::Path, process::Stdio, time::Duration};

/// The browser window, and so the screenshot, in CSS pixels.
pub const WINDOW: (u32, u32) = (1000, 2400);

/// What Chromium made of a page.
#[derive(Debug)]
pub struct Rendered {
    /// The screenshot's size in pixels.
    pub size: (u32, u32),
    /// The screenshot, 8-bit RGB.
    pub rgb: Vec<u8>,
    /// Every console message.
    pub console: Vec<String>,
    /// The document after loading.
    pub dom: String,
}

impl Rendered {
    /// Pixels of exactly this colour in the screenshot.
    pub fn pixels_of(&self, [r, g, b]: [u8; 3]) -> usize {
        self.rgb
            .chunks_exact(3)
            .filter(|pixel| pixel == &[r, g, b])
            .count()
    }
}

/// Whether Chromium is installed; when it is not, says so, and fails under CI.
pub fn available() -> bool {
    let found = std::process::Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `chromium` is not installed: the --html page cannot be checked \
             (`.ci/run` installs Debian's chromium package)"
        );
        eprintln!("chromium is not installed: skipping the check of the page in a browser");
    }
    found
}

/// Renders the file `page` in headless Chromium (screenshot and DOM).
pub async fn render(page: &Path) -> Rendered {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let url = format!(
        "file://{}",
        page.canonicalize().expect("the page exists").display()
    );
    let screenshot = scratch.path().join("page.png");
    let (width, height) = WINDOW;
    let shot = run(
        &scratch.path().join("profile-shot"),
        &[
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", screenshot.display()),
            &url,
        ],
    )
    .await;
    let dom = run(&scratch.path().join("profile-dom"), &["--dump-dom", &url]).await;

    let file = std::fs::File::open(&screenshot).unwrap_or_else(|error| {
        panic!(
            "chromium wrote no screenshot ({error})\nstderr:\n{}",
            shot.stderr
        )
    });
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG screenshot");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
    let frame = reader
        .next_frame(&mut pixels)
        .expect("the screenshot decodes");
    let channels = frame.color_type.samples();
    assert!(
        channels >= 3,
        "a colour screenshot, got {:?}",
        frame.color_type
    );
    let rgb = pixels[..frame.buffer_size()]
        .chunks_exact(channels)
        .flat_map(|pixel| pixel[..3].iter().copied())
        .collect();

    let console = shot
        .stderr
        .lines()
        .chain(dom.stderr.lines())
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    Rendered {
        size: (frame.width, frame.height),
        rgb,
        console,
        dom: dom.stdout,
    }
}

struct Output {
    stdout: String,
    stderr: String,
}

async fn run(profile: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chromium finished within a minute")
        .expect("chromium's output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "chromium failed: {}\n{stderr}",
        output.status
    );
    Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    }
}

/// What in `html` would make a browser fetch something: a self-contained page has none.
pub fn external_references(html: &str) -> Vec<&'static str> {
    let lower = html.to_lowercase();
    [
        "<script", "<link", "<img", "<iframe", "<object", "<embed", "src=", "href=", "url(",
        "@import",
    ]
    .into_iter()
    .filter(|needle| lower.contains(needle))
    .collect()
}

/// Checks what every report page must satisfy: self-contained, rendered at the window's size
/// without a console message, with `charts` charts, and with ink of `colors` (chart lines) on
/// the screenshot. Skips (outside CI) without Chromium.
pub async fn check_page(page: &Path, charts: usize, colors: &[[u8; 3]]) -> Option<Rendered> {
    let html = std::fs::read_to_string(page).expect("the page was written");
    assert_eq!(
        external_references(&html),
        Vec::<&str>::new(),
        "the page must not fetch anything"
    );
    assert_eq!(html.matches("<svg").count(), charts, "charts in the page");
    if !available() {
        return None;
    }
    let rendered = render(page).await;
    assert_eq!(rendered.size, WINDOW, "screenshot size");
    assert_eq!(rendered.console, Vec::<String>::new(), "console messages");
    assert_eq!(
        rendered.dom.matches("<svg").count(),
        charts,
        "charts in the DOM Chromium built"
    );
    for &color in colors {
        let ink = rendered.pixels_of(color);
        assert!(
            ink > 100,
            "only {ink} pixels of {color:?} in the screenshot: a chart line is missing"
        );
    }
    Some(rendered)
}

#[tokio::test]
async fn the_page_check_catches_a_script_error_and_an_external_resource() {
    let _machine = crate::helpers::machine_shared().await;
    // The checks above must be able to fail: a page with both faults, through the same steps.
    let directory = tempfile::tempdir().expect("a temporary directory");
    let page = directory.path().join("broken.html");
    let html = r#"<!doctype html><html><body><p>broken</p>
<img src="https://cdn.example.invalid/chart.png">
<script>throw new Error("the chart library did not load");</script></body></html>"#;
    std::fs::write(&page, html).expect("write the page");
    assert_eq!(
        external_references(html),
        ["<script", "<img", "src="],
        "the fetches are found"
    );
    if !available() {
        return;
    }
    let rendered = render(&page).await;
    assert_eq!(rendered.size, WINDOW);
    assert!(
        rendered
            .console
            .iter()
            .any(|line| line.contains("the chart library did not load")),
        "the uncaught error reached the console: {:?}",
        rendered.console
    );
    assert_eq!(
        rendered.pixels_of([0x2e, 0x9e, 0x4f]),
        0,
        "no chart, no ink"
    );
}
