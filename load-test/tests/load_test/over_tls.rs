//! The tester over TLS, through the deployment's own front: real nginx, on the configuration
//! `scripts/stack config` derives from the top-level nginx.conf (its TLS port, its self-signed
//! certificate), in front of the real API started in this process. The official profile over
//! HTTP/2 must pass with an exact audit, every answer must have come over the protocol asked
//! for, and the connections the report counts must be the ones the policy implies.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use tempfile::TempDir;

use crate::{
    against_the_real_api::{RealApi, spawn_real_api},
    helpers::{bool_at, load_test, machine_to_myself, u64_at},
    ports::free_port,
};

/// nginx in front of one API, on a plain and a TLS port; stopped when dropped.
struct Front {
    dir: TempDir,
    tls_port: u16,
    nginx: PathBuf,
}

impl Front {
    /// `scripts/stack config` (both upstream servers the API's TCP port), then nginx on it.
    fn start(api: &RealApi) -> Self {
        let api_port = api.url.rsplit(':').next().expect("a port in the URL");
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, tls_port) = (free_port(), free_port());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config = Command::new(root.join("scripts/stack"))
            .arg("config")
            .env("STACK_DIR", dir.path())
            .env("STACK_PORT", port.to_string())
            .env("STACK_TLS_PORT", tls_port.to_string())
            .env("STACK_STATUS_PORT", free_port().to_string())
            .env("STACK_API_PORTS", format!("{api_port} {api_port}"))
            .env("STACK_UPSTREAM", "tcp")
            .output()
            .expect("scripts/stack runs");
        assert!(
            config.status.success(),
            "scripts/stack config failed (is nginx installed?):\n{}{}",
            String::from_utf8_lossy(&config.stdout),
            String::from_utf8_lossy(&config.stderr)
        );
        let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
            .unwrap_or_else(|| PathBuf::from("nginx"));
        let started = Command::new(&nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("nginx-error.log"))
            .output()
            .expect("nginx runs");
        assert!(
            started.status.success(),
            "nginx did not start: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        Self {
            dir,
            tls_port,
            nginx,
        }
    }

    fn ca(&self) -> String {
        self.dir.path().join("tls/ca.pem").display().to_string()
    }

    fn https(&self) -> String {
        format!("https://127.0.0.1:{}", self.tls_port)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = Command::new(&self.nginx)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.path().join("nginx-error.log"))
            .args(["-s", "stop"])
            .status();
    }
}

/// Answers by protocol in the report's `connections`.
fn protocols(report: &Value) -> Value {
    report["connections"]["answers_by_protocol"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_profile_over_http2_through_nginx_passes_with_an_exact_audit() {
    let _machine = machine_to_myself().await;
    let api = spawn_real_api().await;
    let front = Front::start(&api);
    let (url, ca) = (front.https(), front.ca());

    let run = load_test(&[
        &url,
        "--http2",
        "--cacert",
        &ca,
        "--profile",
        "rinha",
        "--time-scale",
        "0.04",
        // Lax: correctness is tested here, not speed (see against_the_real_api's profile run).
        "--sla-latency",
        "5s",
        "-o",
        "json",
    ])
    .await;
    run.assert_exit(0);
    let report = run.report();
    assert!(bool_at(&report, "/validation_phase/passed"), "{report:#}");
    assert!(bool_at(&report, "/audit/passed"));
    for client in report["audit"]["clients"].as_array().expect("clients") {
        assert_eq!(client["verdict"], "exact", "{client:#}");
    }
    assert_eq!(report["settings"]["protocol"], "HTTP/2");
    let requests = u64_at(&report, "/totals/requests");
    assert!(requests > 1000, "{requests} requests");
    assert_eq!(
        protocols(&report),
        serde_json::json!({ "HTTP/2": requests }),
        "every answer over HTTP/2"
    );
    // Keep-alive over HTTP/2: the load's requests are multiplexed on the connection the
    // validation phase opened, or on very few more.
    let opened = u64_at(&report, "/connections/opened");
    assert!(opened <= 2, "{opened} connections for {requests} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_per_request_over_tls_is_a_handshake_per_request_in_either_protocol() {
    let _machine = machine_to_myself().await;
    let api = spawn_real_api().await;
    let front = Front::start(&api);
    let url = front.https();

    for (protocol, http2) in [("HTTP/1.1", None), ("HTTP/2", Some("--http2"))] {
        let mut args = vec![
            url.as_str(),
            "--insecure",
            "--no-keepalive",
            "-c",
            "2",
            "-n",
            "200",
            "-o",
            "json",
        ];
        args.extend(http2);
        let run = load_test(&args).await;
        run.assert_exit(0);
        let report = run.report();
        assert_eq!(report["settings"]["protocol"], protocol);
        assert_eq!(u64_at(&report, "/totals/requests"), 200);
        assert_eq!(protocols(&report), serde_json::json!({ protocol: 200 }));
        assert_eq!(
            u64_at(&report, "/connections/opened"),
            200,
            "{protocol}: {report:#}"
        );
    }

    // The same front's certificate is not trusted by default: no answer, a setup failure.
    let untrusted = load_test(&[&url, "-n", "5", "--reset"]).await;
    untrusted.assert_exit(2);
    assert!(
        untrusted.stderr.contains("certificate"),
        "{}",
        untrusted.stderr
    );

    // HTTP/2 is agreed by ALPN, inside TLS: refused for a plain target before anything is sent.
    let plain = load_test(&[&api.url, "--http2", "-n", "5"]).await;
    plain.assert_exit(2);
    assert!(
        plain.stderr.contains("--http2 needs an https://"),
        "{}",
        plain.stderr
    );
}
