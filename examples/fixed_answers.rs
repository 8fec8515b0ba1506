//! An Actix-Web server that answers the API's two routes with fixed JSON, from memory: no
//! database, no parsing beyond what Actix does. `scripts/bench-stack` runs two of them behind the
//! project's nginx as a second ceiling (`BENCH_CEILING=actix`), to tell what the HTTP framework
//! costs per request from what the ledger costs.
//!
//! ```sh
//! cargo build --release --example fixed_answers
//! FIXED_SOCKET=/tmp/api01.sock target/release/examples/fixed_answers   # or FIXED_ADDR=127.0.0.1:9998
//! ```
//!
//! Answers: `GET /clientes/{id}/extrato`, a statement of 10 transactions (about 1 KiB, as the
//! static nginx upstreams answer) with each seeded client's own limit; `POST
//! /clientes/{id}/transacoes`, the body read in full, then `{"limite":100000,"saldo":-9098}`;
//! `POST /reset`, `200`; anything else, `404`. One worker, as each instance runs in the compose layout.

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};

/// The statement every client gets, around its limit.
fn statement(limite: i64) -> String {
    let rows: Vec<String> = (0..10)
        .map(|i| {
            let tipo = if i % 3 == 0 { "c" } else { "d" };
            format!(
                r#"{{"valor":{},"tipo":"{tipo}","descricao":"descricao{i}","realizada_em":"2024-01-17T02:34:4{i}.217Z"}}"#,
                i * 937 + 12
            )
        })
        .collect();
    format!(
        r#"{{"saldo":{{"total":-9098,"data_extrato":"2024-01-17T02:34:49.958Z","limite":{limite}}},"ultimas_transacoes":[{}]}}"#,
        rows.join(",")
    )
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let limits = [100_000, 80_000, 1_000_000, 10_000_000, 500_000];
    let statements: web::Data<Vec<String>> =
        web::Data::new(limits.iter().map(|&limit| statement(limit)).collect());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(statements.clone())
            .route(
                "/clientes/{id}/extrato",
                web::get().to(
                    |id: web::Path<usize>, statements: web::Data<Vec<String>>| async move {
                        let index = id.into_inner().saturating_sub(1).min(4);
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(statements[index].clone())
                    },
                ),
            )
            .route(
                "/clientes/{id}/transacoes",
                web::post().to(|_body: web::Bytes| async {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(r#"{"limite":100000,"saldo":-9098}"#)
                }),
            )
            // The load tester's `--reset` (bench-stack's open model) before it starts.
            .route("/reset", web::post().to(HttpResponse::Ok))
    })
    .workers(1)
    // As the API's server (src/startup.rs): idle upstream connections outlive nginx's 60 s, so
    // nginx never reuses one the server has just closed.
    .keep_alive(Duration::from_secs(75))
    .backlog(4096);
    let server = match (std::env::var("FIXED_SOCKET"), std::env::var("FIXED_ADDR")) {
        (Ok(path), _) => {
            std::fs::remove_file(&path).ok();
            let server = server.bind_uds(&path)?;
            // nginx's workers run as another user.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
            server
        }
        (_, Ok(addr)) => server.bind(addr)?,
        _ => {
            eprintln!("fixed_answers: set FIXED_SOCKET=/path.sock or FIXED_ADDR=host:port");
            std::process::exit(2);
        }
    };
    server.run().await
}
