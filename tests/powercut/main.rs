//! Power loss, simulated the way SQLite tests itself: what each `DB_DURABILITY` keeps when the
//! power goes.
//!
//! A binary of its own, because it makes its recording VFS ([`vfs`]) the process's default: the
//! real server, started in-process on port 0 with a new SQLite file, writes through it without
//! knowing. The test sends concurrent transactions over HTTP and logs each 200 as it arrives,
//! in the same log as the server's writes and syncs. Then, for many cuts at random points of the
//! log, it builds what the disk would hold ([`image`]: every write up to the file's last sync,
//! each later one kept or dropped by a coin), opens it with the real `unix` VFS, and checks:
//!
//! - in both modes, every image is sound: `PRAGMA integrity_check` is `ok`, and it holds a prefix
//!   of the ledger's history (the first transactions of the final ledger, each one sent by the
//!   test, each client's `saldo` the sum of its transactions and within its limit);
//! - `power`: every image holds every transaction answered 200 before its cut;
//! - `process`: the answered transactions each cut lost are counted, and some must be (the
//!   simulation can see a loss).
//!
//! From the same log, the syncs: in `power` the write connection syncs the WAL once per
//! committed batch that wrote (the batches the instance's `/metrics` counts), plus once each time
//! the WAL starts over; in `process` it syncs only when the WAL starts over, and the checkpoints
//! sync.
//!
//! The cuts and coins come from a seed printed at the start of each test; `POWERCUT_SEED` sets
//! it. The traffic's timing differs from run to run, so a seed replays the choices, not the
//! log: a failing image is kept on disk and its path printed.

mod image;
mod vfs;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rinha_api::config::Config;
use rinha_api::db::{DatabaseSettings, Durability};
use rinha_api::startup::Application;
use serde_json::json;
use tokio::sync::oneshot;

use image::{Image, Ledger, Stored};
use vfs::{Event, FileId, Handle};

/// The clients of script.sql: (id, limite).
const CLIENTS: [(i64, i64); 5] = [
    (1, 100_000),
    (2, 80_000),
    (3, 1_000_000),
    (4, 10_000_000),
    (5, 500_000),
];

/// Servers started per mode, each on a new file.
const RUNS: u64 = 2;
/// Transactions sent to each server, in waves a little apart so that checkpoints fall between
/// and inside them.
const WRITES: u64 = 300;
const WAVES: u64 = 5;
const CONCURRENCY: usize = 24;
/// Cuts per run, and images per cut (each image tosses its own coins).
const CUTS: usize = 150;
const IMAGES_PER_CUT: usize = 2;
/// Checkpoints run often, so that a run has many (the only syncs in `process`).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// A small deterministic generator (splitmix64), so the cuts and coins follow from the seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// `POWERCUT_SEED`, or one from the clock.
fn seed() -> u64 {
    match std::env::var("POWERCUT_SEED") {
        Ok(seed) => seed.trim().parse().expect("POWERCUT_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64,
    }
}

/// A transaction the test sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    client: i64,
    valor: i64,
    tipo: char,
}

/// One server's life, as the log and the server's own counters saw it.
#[derive(Debug)]
struct Run {
    seed: u64,
    /// The log from before the server opened its file; positions below are into it.
    events: Vec<Event>,
    /// The first event after the server started, and the first after the last answer.
    traffic: std::ops::Range<usize>,
    database: FileId,
    wal: FileId,
    sent: HashMap<String, Sent>,
    /// The ledger after the server stopped.
    final_ledger: Vec<Stored>,
    /// `/metrics` at the end of the traffic: batches committed, checkpoints run.
    batches: u64,
    /// Writes answered 422: a batch of only such writes commits nothing, so it syncs nothing.
    refused: u64,
    checkpoints: u64,
    /// Kept while the run is checked: it holds the images.
    dir: tempfile::TempDir,
}

/// Starts the server on a new file with `durability`, sends [`WRITES`] transactions, stops it.
async fn run_server(durability: Durability, seed: u64) -> Run {
    vfs::install();
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_path = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    let database = dir_path.join("rinha.db");
    let log_start = vfs::len();
    let config = Config {
        host: "127.0.0.1".into(),
        port: 0,
        workers: 2,
        database: DatabaseSettings {
            url: format!("sqlite://{}", database.display()),
            durability,
            checkpoint_interval: CHECKPOINT_INTERVAL,
            ..DatabaseSettings::default()
        },
        ..Config::default()
    };
    let app = Application::build(config).await.expect("the app starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        stopped.await.ok();
    }));
    let traffic_start = vfs::len() - log_start;
    let database_id = vfs::file(&database).expect("the database goes through the shim");

    // Built in one workspace with the load tester, reqwest carries rustls without a crypto
    // provider, and building even a plain http:// client needs a process default.
    #[allow(deprecated)] // ring lacks post-quantum key exchange; this client speaks plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let mut rng = Rng(seed);
    let mut sent = HashMap::new();
    let mut refused = 0;
    for wave in 0..WAVES {
        let transactions: Vec<(String, Sent)> = (0..WRITES / WAVES)
            .map(|n| {
                let sent = Sent {
                    client: 1 + rng.below(5) as i64,
                    valor: 1 + rng.below(20_000) as i64,
                    tipo: if rng.coin() { 'c' } else { 'd' },
                };
                (format!("w{}", wave * 1000 + n), sent)
            })
            .collect();
        sent.extend(transactions.iter().cloned());
        let statuses: Vec<u16> = futures::stream::iter(transactions)
            .map(|(descricao, sent)| post(&http, &address, database_id, descricao, sent))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        assert!(
            statuses.iter().all(|status| matches!(status, 200 | 422)),
            "every write is answered 200 or 422 (a refused debit): {statuses:?}"
        );
        refused += statuses.iter().filter(|&&status| status == 422).count() as u64;
        tokio::time::sleep(CHECKPOINT_INTERVAL / 2).await;
    }
    let traffic_end = vfs::len() - log_start;
    let metrics = http
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    stop.send(()).expect("the server is running");
    server
        .await
        .expect("the server task")
        .expect("the server stops cleanly");

    let events = vfs::events_from(log_start);
    let wal_id = vfs::file(&image::beside(&database, "-wal")).expect("so did the WAL");
    let final_ledger = image::read(&database)
        .await
        .expect("the final ledger is sound")
        .transactions;
    Run {
        seed,
        events,
        traffic: traffic_start..traffic_end,
        database: database_id,
        wal: wal_id,
        sent,
        final_ledger,
        batches: metric(&metrics, "rinha_write_batch_size_count"),
        refused,
        checkpoints: metric(&metrics, "rinha_checkpoint_duration_seconds_count"),
        dir,
    }
}

/// POSTs one transaction; logs "answered" when a 200 arrives; returns the status.
async fn post(
    http: &reqwest::Client,
    address: &str,
    database: FileId,
    descricao: String,
    sent: Sent,
) -> u16 {
    let body = json!({"valor": sent.valor, "tipo": sent.tipo.to_string(), "descricao": descricao});
    let answer = http
        .post(format!("{address}/clientes/{}/transacoes", sent.client))
        .json(&body)
        .send()
        .await
        .expect("an answer");
    let status = answer.status().as_u16();
    if status == 200 {
        vfs::record_answer(database, descricao);
    }
    status
}

/// The value of an unlabelled series in a Prometheus text page.
fn metric(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics")) as u64
}

/// What the cuts of one mode found.
#[derive(Debug, Default)]
struct Tally {
    cuts: usize,
    images: usize,
    /// Answered transactions missing from an image, over every image, and the most in one.
    lost: usize,
    worst: usize,
    /// WAL syncs by the write connection and by the readers' checkpoints; database file
    /// syncs (checkpoints); the WAL's header written when it starts over.
    writer_wal_syncs: u64,
    checkpoint_wal_syncs: u64,
    database_syncs: u64,
    wal_restarts: u64,
    /// From the instances' `/metrics`.
    batches: u64,
    /// Writes answered 422.
    refused: u64,
    checkpoints: u64,
}

/// What a mode promises of the images its cuts leave, beyond what every mode does (each image
/// opens, passes `integrity_check` and holds a prefix of the ledger's history).
#[derive(Debug, Clone, Copy)]
struct Expect {
    /// Every transaction answered 200 before the cut is in the image.
    every_answer_kept: bool,
}

impl Run {
    /// Checks [`CUTS`] random cuts, [`IMAGES_PER_CUT`] images each, and fails as `expect` says.
    async fn cut(&self, expect: Expect, tally: &mut Tally) {
        let mut rng = Rng(self.seed ^ 0x5eed);
        let database = self.dir.path().join("image.db");
        for _ in 0..CUTS {
            // The events before `cut` happened, the others did not.
            let span = (self.traffic.end - self.traffic.start) as u64;
            let cut = self.traffic.start + 1 + rng.below(span) as usize;
            tally.cuts += 1;
            for _ in 0..IMAGES_PER_CUT {
                let mut coin = || rng.coin();
                let image = Image {
                    database: image::build(&self.events, cut, self.database, &mut coin),
                    wal: image::build(&self.events, cut, self.wal, &mut coin),
                };
                image.write(&database).expect("write the image");
                tally.images += 1;
                let checked = match image::read(&database).await {
                    Ok(ledger) => self.check(&ledger, cut),
                    Err(problem) => Err(problem),
                };
                let lost = match checked {
                    Ok(lost) => lost,
                    Err(problem) => self.fail(cut, &image, &problem),
                };
                if let Some(descricao) = lost.first()
                    && expect.every_answer_kept
                {
                    let problem = format!(
                        "{} transactions answered 200 before the cut are not in the image, \
                         the first sent with descricao {descricao:?}",
                        lost.len()
                    );
                    self.fail(cut, &image, &problem);
                }
                tally.lost += lost.len();
                tally.worst = tally.worst.max(lost.len());
            }
        }
        // The write connection is the one that writes the WAL: the readers only read it, and
        // sync it in checkpoints.
        let window = &self.events[self.traffic.clone()];
        let writer: HashSet<Handle> = window
            .iter()
            .filter_map(|event| match event {
                Event::Write { file, handle, .. } if *file == self.wal => Some(*handle),
                _ => None,
            })
            .collect();
        for event in window {
            match event {
                Event::Sync { file, handle } if *file == self.wal && writer.contains(handle) => {
                    tally.writer_wal_syncs += 1;
                }
                Event::Sync { file, .. } if *file == self.wal => tally.checkpoint_wal_syncs += 1,
                Event::Sync { file, .. } if *file == self.database => tally.database_syncs += 1,
                Event::Write {
                    file, offset: 0, ..
                } if *file == self.wal => tally.wal_restarts += 1,
                _ => {}
            }
        }
        tally.batches += self.batches;
        tally.refused += self.refused;
        tally.checkpoints += self.checkpoints;
    }

    /// Checks one image against what was sent, answered and finally stored; returns the
    /// transactions answered before `cut` that the image lacks.
    fn check(&self, ledger: &Ledger, cut: usize) -> Result<Vec<String>, String> {
        let stored = &ledger.transactions;
        if ledger.clients.is_empty() && stored.is_empty() {
            // The cut came before the schema reached the disk: a new, empty database.
        } else {
            let limits: Vec<(i64, i64)> = ledger
                .clients
                .iter()
                .map(|&(id, limite, _)| (id, limite))
                .collect();
            if limits != CLIENTS {
                return Err(format!("clients {:?}", ledger.clients));
            }
        }
        if self.final_ledger.get(..stored.len()) != Some(stored.as_slice()) {
            return Err(format!(
                "the image's {} transactions are not the first of the final ledger's {}",
                stored.len(),
                self.final_ledger.len()
            ));
        }
        for transaction in stored {
            let expected = Sent {
                client: transaction.client,
                valor: transaction.valor,
                tipo: transaction.tipo.chars().next().unwrap_or('?'),
            };
            if self.sent.get(&transaction.descricao) != Some(&expected) {
                return Err(format!("{transaction:?} was never sent"));
            }
        }
        for &(client, limite, saldo) in &ledger.clients {
            let sum: i64 = stored
                .iter()
                .filter(|transaction| transaction.client == client)
                .map(|transaction| match transaction.tipo.as_str() {
                    "c" => transaction.valor,
                    _ => -transaction.valor,
                })
                .sum();
            if saldo != sum || saldo < -limite {
                return Err(format!(
                    "client {client}: saldo {saldo}, its transactions sum to {sum}, limite {limite}"
                ));
            }
        }
        let in_image: HashSet<&str> = stored.iter().map(|t| t.descricao.as_str()).collect();
        Ok(self.events[..cut]
            .iter()
            .filter_map(|event| match event {
                Event::Answered {
                    database,
                    descricao,
                } if *database == self.database && !in_image.contains(descricao.as_str()) => {
                    Some(descricao.clone())
                }
                _ => None,
            })
            .collect())
    }

    /// Keeps the image on disk and fails naming the seed, the cut and the problem.
    fn fail(&self, cut: usize, image: &Image, problem: &str) -> ! {
        let seed = self.seed;
        let kept: PathBuf = std::env::temp_dir().join(format!("powercut-{}-{cut}", self.seed));
        std::fs::create_dir_all(&kept).expect("a directory for the failing image");
        image.write(&kept.join("rinha.db")).expect("keep the image");
        panic!(
            "run seed {seed} (POWERCUT_SEED={seed} makes it the first run), cut before event \
             {cut} of {} (the traffic: {:?}): {problem}; the image is kept in {}",
            self.events.len(),
            self.traffic,
            kept.display()
        );
    }
}

/// Runs [`RUNS`] servers in `durability`, checks their cuts, and prints what they found.
async fn cuts(durability: Durability, expect: Expect) -> Tally {
    let seed = seed();
    let mode = format!("{durability:?}").to_lowercase();
    println!("powercut {mode}: seed {seed} (POWERCUT_SEED={seed} replays the cuts and coins)");
    let mut tally = Tally::default();
    for run in 0..RUNS {
        let started = Instant::now();
        let run = run_server(durability, seed.wrapping_add(run)).await;
        let served = started.elapsed();
        let answered = run
            .events
            .iter()
            .filter(|event| matches!(event, Event::Answered { database, .. } if *database == run.database))
            .count();
        assert!(
            answered > 0 && run.final_ledger.len() >= answered,
            "the final ledger holds the {answered} transactions answered 200"
        );
        run.cut(expect, &mut tally).await;
        println!(
            "powercut {mode}: run {} served in {served:.1?}, its cuts checked in {:.1?}",
            run.seed,
            started.elapsed() - served
        );
    }
    println!(
        "powercut {mode}: {} cuts, {} images checked, answered writes lost: {} in all, \
         {} at worst in one image",
        tally.cuts, tally.images, tally.lost, tally.worst
    );
    println!(
        "powercut {mode}: {} writes sent ({} refused), {} batches committed; WAL syncs by the \
         write connection: {} ({} WAL restarts), by checkpoints: {} ({} checkpoints run); \
         database file syncs: {}",
        WRITES * RUNS,
        tally.refused,
        tally.batches,
        tally.writer_wal_syncs,
        tally.wal_restarts,
        tally.checkpoint_wal_syncs,
        tally.checkpoints,
        tally.database_syncs
    );
    tally
}

/// `power`: every image is sound and keeps every transaction answered 200 before its cut; the
/// write connection syncs the WAL once per committed batch that wrote.
#[tokio::test]
async fn power_keeps_every_answered_write_across_power_cuts() {
    let expect = Expect {
        every_answer_kept: true,
    };
    let tally = cuts(Durability::Power, expect).await;
    assert_eq!(tally.lost, 0);
    // A batch whose every write was refused writes nothing, so its commit syncs nothing: at
    // most one such batch per refused write.
    assert!(
        tally.batches.saturating_sub(tally.refused) <= tally.writer_wal_syncs
            && tally.writer_wal_syncs <= tally.batches + tally.wal_restarts,
        "the write connection syncs the WAL once per committed batch that wrote, and once more \
         when the WAL starts over: {} syncs for {} batches ({} writes refused) and {} restarts",
        tally.writer_wal_syncs,
        tally.batches,
        tally.refused,
        tally.wal_restarts
    );
    assert!(
        tally.batches < WRITES * RUNS,
        "writes are grouped: {} batches",
        tally.batches
    );
}

/// `process`: every image is sound (the write connection runs at `synchronous=NORMAL`, which
/// syncs the WAL's new header when the WAL starts over), but cuts lose answered transactions
/// (so the simulation can see a loss), counted; only the checkpoints and those restarts sync the
/// WAL, never a commit.
#[tokio::test]
async fn process_loses_answered_writes_to_power_cuts_but_never_the_files_integrity() {
    let expect = Expect {
        every_answer_kept: false,
    };
    let tally = cuts(Durability::Process, expect).await;
    assert!(
        tally.lost > 0,
        "no cut lost an answered write in process mode: the simulation is not biting"
    );
    assert!(
        tally.writer_wal_syncs <= tally.wal_restarts,
        "the write connection syncs the WAL only when it starts over, never for a commit: {} \
         syncs, {} restarts, {} batches",
        tally.writer_wal_syncs,
        tally.wal_restarts,
        tally.batches
    );
    assert!(
        tally.checkpoint_wal_syncs > 0,
        "the checkpoints sync the WAL (and the shim sees it)"
    );
}
