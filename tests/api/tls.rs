//! The stack's TLS port through real nginx and real curl: HTTP/2 and HTTP/1.1 negotiated by ALPN
//! with the certificate `scripts/stack` makes, the same ledger as the plain port, and a
//! certificate nginx cannot load stopping `scripts/stack up` with the file's name.
//!
//! curl is the client because it is what a user checks a deployment with, and it says which
//! protocol it spoke (`%{http_version}`); the reqwest client the other tests use speaks plain
//! HTTP/1.1 only.

use std::path::Path;
use std::process::Command;

use crate::helpers::Api;
use crate::stack::{Stack, text};

/// `curl` against the stack's TLS port, trusting the CA `scripts/stack` made: the HTTP version
/// and status curl reports, then the body.
fn curl(stack: &Stack, protocol: &str, args: &[&str], path: &str) -> (String, String) {
    let ca = stack.dir.path().join("tls/ca.pem");
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "5", protocol, "--cacert"])
        .arg(&ca)
        .args(["-w", "\n%{http_version} %{http_code}"])
        .args(args)
        .arg(format!("https://127.0.0.1:{}{path}", stack.tls_port))
        .output()
        .expect("curl runs (apt-get install -y curl)");
    assert!(output.status.success(), "curl failed:\n{}", text(&output));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let (body, version_and_status) = stdout.rsplit_once('\n').expect("curl's -w line");
    (version_and_status.to_owned(), body.to_owned())
}

#[tokio::test]
async fn the_tls_port_speaks_http2_and_http1_over_the_same_ledger() {
    let stack = Stack::up();

    // A credit over HTTP/2, its statement over HTTPS/1.1 and over the plain port: one ledger.
    let (answered, body) = curl(
        &stack,
        "--http2",
        &[
            "-d",
            r#"{"valor": 700, "tipo": "c", "descricao": "over h2"}"#,
        ],
        "/clientes/2/transacoes",
    );
    assert_eq!(answered, "2 200", "{body}");
    assert_eq!(body, r#"{"limite":80000,"saldo":700}"#);

    let (answered, body) = curl(&stack, "--http1.1", &[], "/clientes/2/extrato");
    assert_eq!(answered, "1.1 200", "{body}");
    assert!(body.contains(r#""descricao":"over h2""#), "{body}");

    let plain = stack.statement(2).await;
    assert_eq!(plain.total(), 700);

    // An error reaches the client over HTTP/2 as it does over HTTP/1.1: status and JSON body.
    let (answered, body) = curl(&stack, "--http2", &[], "/clientes/6/extrato");
    assert_eq!(answered, "2 404", "{body}");
    assert!(body.starts_with(r#"{"error":"#), "{body}");
}

#[test]
fn a_certificate_nginx_cannot_load_stops_the_stack_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing-cert.pem");
    let garbage = dir.path().join("garbage-cert.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key either\n").expect("write");

    for cert in [&missing, &garbage] {
        let stack = Stack::unstarted_with_env(vec![
            ("STACK_TLS_CERT", path(cert)),
            ("STACK_TLS_KEY", path(&key)),
        ]);
        let up = stack.run("up");
        let said = text(&up);
        assert!(!up.status.success(), "up succeeded with {cert:?}:\n{said}");
        assert!(said.contains(&path(cert)), "no {cert:?} in:\n{said}");
        assert!(
            !stack.dir.path().join("nginx.pid").exists(),
            "nginx started:\n{said}"
        );
    }
}

fn path(file: &Path) -> String {
    file.to_str().expect("a UTF-8 path").to_owned()
}
