//! The rules the official test never checked: exact last-10 lists, the limit boundary, characters
//! versus bytes, hostile bodies, unknown ids and routes. Every refusal must change nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Api, TestApp, body, read_answer, spawn_app};

/// Client 1's statement, to compare before and after a refused request.
async fn snapshot(app: &TestApp) -> (i64, Vec<String>) {
    let statement = app.statement(1).await;
    (statement.total(), statement.descriptions())
}

#[tokio::test]
async fn a_statement_lists_exactly_the_last_ten_newest_first() {
    let app = spawn_app().await;
    let mut expected_total = 0;
    for n in 1..=15 {
        let tipo = if n % 3 == 0 { "d" } else { "c" };
        let answer = app
            .transaction(1, &body(n * 100, tipo, &format!("t{n}")))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        expected_total += if tipo == "c" { n * 100 } else { -n * 100 };
        assert_eq!(
            answer.saldo(),
            expected_total,
            "the balance right after t{n}"
        );
    }

    let statement = app.statement(1).await;

    assert_eq!(statement.total(), expected_total);
    let expected: Vec<String> = (6..=15).rev().map(|n| format!("t{n}")).collect();
    assert_eq!(statement.descriptions(), expected);
    for (entry, n) in statement.entries().iter().zip((6..=15).rev()) {
        assert_eq!(entry["valor"], n * 100);
        assert_eq!(entry["tipo"], if n % 3 == 0 { "d" } else { "c" });
    }
    let other = app.statement(2).await;
    assert!(other.entries().is_empty(), "other clients are untouched");
}

#[tokio::test]
async fn a_debit_landing_exactly_on_the_limit_is_accepted_and_one_past_it_is_refused() {
    let app = spawn_app().await;

    let exact = app.transaction(1, &body(100_000, "d", "no limite")).await;
    assert_eq!(exact.status, StatusCode::OK);
    assert_eq!(exact.saldo(), -100_000);
    let before = snapshot(&app).await;

    let past = app.transaction(1, &body(1, "d", "passou")).await;

    let message = past.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "one past the limit");
    assert!(message.contains("limit"), "{message}");
    assert_eq!(
        snapshot(&app).await,
        before,
        "a refused debit leaves no trace"
    );
}

#[tokio::test]
async fn a_single_debit_larger_than_the_limit_is_refused_without_trace() {
    let app = spawn_app().await;
    let before = snapshot(&app).await;

    let answer = app.transaction(1, &body(100_001, "d", "grande")).await;

    answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "overdraft");
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn descricao_is_counted_in_characters_not_bytes() {
    let app = spawn_app().await;

    let ten = app.transaction(1, &body(1, "c", "áéíóúâêôãõ")).await;
    assert_eq!(ten.status, StatusCode::OK, "10 accented letters (20 bytes)");
    let statement = app.statement(1).await;
    assert_eq!(statement.descriptions(), ["áéíóúâêôãõ"], "stored intact");
    let before = snapshot(&app).await;

    let eleven = app.transaction(1, &body(1, "c", "áéíóúâêôãõç")).await;
    eleven.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "11 characters");
    let emoji = app
        .transaction(1, &body(1, "c", "💸💸💸💸💸💸💸💸💸💸"))
        .await;
    assert_eq!(
        emoji.status,
        StatusCode::OK,
        "10 emoji (40 bytes) are 10 characters"
    );
    assert_eq!(snapshot(&app).await.0, before.0 + 1);
}

#[tokio::test]
async fn every_invalid_body_gets_a_422_with_a_reason_and_changes_nothing() {
    let app = spawn_app().await;
    app.transaction(1, &body(5, "c", "inicio")).await;
    let before = snapshot(&app).await;
    let cases: &[(&str, &str)] = &[
        (
            r#"{"valor": 0, "tipo": "c", "descricao": "zero"}"#,
            "zero valor",
        ),
        (
            r#"{"valor": -1, "tipo": "c", "descricao": "neg"}"#,
            "negative valor",
        ),
        (
            r#"{"valor": -1, "tipo": "d", "descricao": "neg"}"#,
            "negative debit",
        ),
        (
            r#"{"valor": "10", "tipo": "c", "descricao": "str"}"#,
            "string valor",
        ),
        (
            r#"{"valor": 1.2, "tipo": "c", "descricao": "frac"}"#,
            "fractional valor",
        ),
        (
            r#"{"valor": 1.0, "tipo": "c", "descricao": "frac"}"#,
            "integral float valor",
        ),
        (
            r#"{"valor": 1e3, "tipo": "c", "descricao": "exp"}"#,
            "exponent valor",
        ),
        (
            r#"{"valor": 9223372036854775807, "tipo": "c", "descricao": "max"}"#,
            "i64::MAX valor",
        ),
        (
            r#"{"valor": 99999999999999999999999999, "tipo": "c", "descricao": "huge"}"#,
            "huge valor",
        ),
        (
            r#"{"valor": true, "tipo": "c", "descricao": "bool"}"#,
            "boolean valor",
        ),
        (
            r#"{"valor": null, "tipo": "c", "descricao": "null"}"#,
            "null valor",
        ),
        (
            r#"{"tipo": "c", "descricao": "sem valor"}"#,
            "missing valor",
        ),
        (r#"{"valor": 1, "descricao": "sem tipo"}"#, "missing tipo"),
        (
            r#"{"valor": 1, "tipo": null, "descricao": "x"}"#,
            "null tipo",
        ),
        (
            r#"{"valor": 1, "tipo": "x", "descricao": "x"}"#,
            "unknown tipo",
        ),
        (
            r#"{"valor": 1, "tipo": "cd", "descricao": "x"}"#,
            "long tipo",
        ),
        (
            r#"{"valor": 1, "tipo": ["c"], "descricao": "x"}"#,
            "array tipo",
        ),
        (r#"{"valor": 1, "tipo": "c"}"#, "missing descricao"),
        (
            r#"{"valor": 1, "tipo": "c", "descricao": null}"#,
            "null descricao",
        ),
        (
            r#"{"valor": 1, "tipo": "c", "descricao": ""}"#,
            "empty descricao",
        ),
        (
            r#"{"valor": 1, "tipo": "c", "descricao": "12345678901"}"#,
            "11 characters",
        ),
        (
            r#"{"valor": 1, "tipo": "c", "descricao": 12}"#,
            "number descricao",
        ),
        (
            r#"{"valor": 1, "tipo": "c", "descricao": {"a": 1}}"#,
            "object descricao",
        ),
        (
            r#"{"valor": 1, "tipo": "c", "descricao": "x""#,
            "truncated JSON",
        ),
        (r#"{valor: 1}"#, "malformed JSON"),
        ("[1, 2]", "array body"),
        ("\"texto\"", "string body"),
        ("null", "null body"),
        ("", "empty body"),
        ("valor=1&tipo=c&descricao=x", "form body"),
    ];
    for (bad, why) in cases {
        let answer = app
            .transaction_raw(1, bad.to_string(), Some("application/json"))
            .await;
        answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, why);
    }
    assert_eq!(
        snapshot(&app).await,
        before,
        "no invalid body changed anything"
    );
}

#[tokio::test]
async fn a_body_is_read_as_json_whatever_its_content_type() {
    let app = spawn_app().await;
    let json_body = r#"{"valor": 3, "tipo": "c", "descricao": "curl -d"}"#;

    for content_type in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
    ] {
        let answer = app.transaction_raw(1, json_body, content_type).await;
        assert_eq!(answer.status, StatusCode::OK, "{content_type:?}");
    }
    assert_eq!(snapshot(&app).await.0, 12);
}

#[tokio::test]
async fn credits_cannot_overflow_the_balance() {
    let app = spawn_app().await;
    let max = 9_007_199_254_740_991_i64;

    let first = app.transaction(1, &body(max, "c", "max")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.saldo(), max);
    let before = snapshot(&app).await;

    let second = app.transaction(1, &body(1, "c", "overflow")).await;

    second.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "past the ceiling");
    assert_eq!(snapshot(&app).await, before);
    let debit = app.transaction(1, &body(max, "d", "volta")).await;
    assert_eq!(debit.saldo(), 0, "debits still work at the ceiling");
}

#[tokio::test]
async fn unknown_and_non_numeric_client_ids_are_404_for_every_route() {
    let app = spawn_app().await;
    let before = snapshot(&app).await;

    for id in [
        "0",
        "6",
        "-1",
        "999999",
        "abc",
        "1.5",
        "1e2",
        "99999999999999999999999",
        "%20",
        // Percent-decoded, these are "%31", "/1" and "1/": no numbers.
        "%2531",
        "%2F1",
        "1%2F",
    ] {
        app.statement(id)
            .await
            .assert_error(StatusCode::NOT_FOUND, &format!("statement of {id}"));
        app.transaction(id, &body(1, "c", "x"))
            .await
            .assert_error(StatusCode::NOT_FOUND, &format!("transaction for {id}"));
    }
    assert_eq!(snapshot(&app).await, before);
}

/// The id segment is read as its percent-decoded text, then as a number, on both routes: "%31"
/// and "%2B1" ("+1") name client 1, as "1" does (the 404s of encoded ids are in the test above).
#[tokio::test]
async fn a_percent_encoded_client_id_names_the_client_its_decoded_text_names() {
    let app = spawn_app().await;

    let mut expected = 0;
    for id in ["1", "%31", "+1", "%2B1", "%2b1"] {
        let statement = app.statement(id).await;
        assert_eq!(statement.status, StatusCode::OK, "statement of {id}");
        assert_eq!(
            statement.body["saldo"]["limite"], 100_000,
            "statement of {id}"
        );
        let credit = app.transaction(id, &body(1, "c", "x")).await;
        assert_eq!(credit.status, StatusCode::OK, "transaction for {id}");
        expected += 1;
        assert_eq!(credit.saldo(), expected, "transaction for {id}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;

    for path in [
        "/",
        "/clientes",
        "/clientes/1",
        "/clientes/1/extrato/x",
        "/transacoes",
    ] {
        app.get(path)
            .await
            .assert_error(StatusCode::NOT_FOUND, path);
    }
    for (method, path) in [
        (Method::GET, "/clientes/1/transacoes"),
        (Method::PUT, "/clientes/1/transacoes"),
        (Method::POST, "/clientes/1/extrato"),
        (Method::DELETE, "/clientes/1/extrato"),
        (Method::GET, "/reset"),
        (Method::POST, "/health"),
    ] {
        app.request(method.clone(), path)
            .await
            .assert_error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} {path}"));
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413_and_changes_nothing() {
    let app = spawn_app().await;
    let before = snapshot(&app).await;
    let padding = " ".repeat(64 * 1024);
    let big = format!(r#"{{"valor": 1, "tipo": "c", "descricao": "x"}}{padding}"#);

    let answer = app.transaction_raw(1, big, Some("application/json")).await;

    answer.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "64 KiB body");
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let app = spawn_app().await;

    let answer = app
        .transaction(
            1,
            &json!({"valor": 2, "tipo": "c", "descricao": "x", "extra": [1]}),
        )
        .await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.saldo(), 2);
}

/// Sends `pieces` one after the other on a new connection, pausing between them, then (when
/// `half_close`) ends the sending side, and reads the answer to its end: status and body.
async fn exchange_in_pieces(app: &TestApp, pieces: &[&[u8]], half_close: bool) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let address = app.address.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("the server accepts");
    for piece in pieces {
        socket.write_all(piece).await.expect("the server reads");
        socket.flush().await.expect("flush");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    if half_close {
        socket.shutdown().await.expect("shutdown");
    }
    read_answer(&mut socket).await
}

/// Posts a transaction for client 1 with a chunked body, one chunk per piece of `chunks`, each
/// sent on its own (see [`exchange_in_pieces`]): the status and the body of the answer.
async fn post_chunked(app: &TestApp, chunks: &[&str]) -> (u16, String) {
    let head = "POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let mut pieces = vec![head.to_owned()];
    pieces.extend(
        chunks
            .iter()
            .map(|data| format!("{:x}\r\n{data}\r\n", data.len())),
    );
    pieces.push("0\r\n\r\n".to_owned());
    let pieces: Vec<&[u8]> = pieces.iter().map(|piece| piece.as_bytes()).collect();
    exchange_in_pieces(app, &pieces, false).await
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces_is_read_whole() {
    let app = spawn_app().await;
    let (status, answer) = post_chunked(
        &app,
        &[
            r#"{"valor": 7"#,
            r#", "tipo": "c","#,
            r#" "descricao": "part"}"#,
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("a JSON answer");
    assert_eq!(answer["saldo"], 7, "{answer}");
    assert_eq!(snapshot(&app).await, (7, vec!["part".to_owned()]));
}

#[tokio::test]
async fn a_body_in_pieces_past_the_limit_or_cut_short_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let before = snapshot(&app).await;

    // No Content-Length to refuse it by: the limit is counted as the chunks arrive.
    let spaces = " ".repeat(0x2000);
    let (status, answer) = post_chunked(&app, &[r#"{"valor": 1,"#, &spaces, &spaces]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("larger than 16384 bytes"), "{answer}");

    // A body shorter than its Content-Length, its connection then closed by the client.
    let (status, answer) = exchange_in_pieces(
        &app,
        &[
            b"POST /clientes/1/transacoes HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n",
            b"{\"valor\": 1, \"tipo\": \"c\", \"descricao\": \"cut\"}",
        ],
        true,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("could not be read"), "{answer}");

    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn a_body_of_exactly_16_kib_is_read_and_one_byte_more_is_refused() {
    let app = spawn_app().await;
    let sized = |length: usize| {
        let body = r#"{"valor": 1, "tipo": "c", "descricao": "edge"}"#;
        format!("{body}{}", " ".repeat(length - body.len()))
    };
    let (at_limit, past_limit) = (sized(16 * 1024), sized(16 * 1024 + 1));

    // With a Content-Length.
    let answer = app
        .transaction_raw(1, at_limit.clone(), Some("application/json"))
        .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "16384 bytes: {:?}",
        answer.body
    );
    app.transaction_raw(1, past_limit.clone(), Some("application/json"))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "16385 bytes");

    // Chunked, in two chunks, so the limit is counted across them.
    let (head, tail) = at_limit.split_at(100);
    let (status, answer) = post_chunked(&app, &[head, tail]).await;
    assert_eq!(status, 200, "16384 bytes chunked: {answer}");
    let (head, tail) = past_limit.split_at(100);
    let (status, answer) = post_chunked(&app, &[head, tail]).await;
    assert_eq!(status, 413, "16385 bytes chunked: {answer}");

    assert_eq!(
        snapshot(&app).await.0,
        2,
        "the two bodies at the limit, no more"
    );
}
