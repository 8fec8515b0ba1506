//! Every input in `fuzz/regressions/<target>/` (crashes the fuzzer found, and hand-picked edge
//! cases) and `fuzz/corpus/<target>/`, replayed through the fuzz targets' own checks, so what
//! once broke a parser stays a test on stable Rust without libFuzzer.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut replayed = 0;
    for dir in ["regressions", "corpus"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join(dir)
            .join(target);
        for entry in std::fs::read_dir(&dir).expect("the committed fuzz inputs") {
            let path = entry.expect("an entry").path();
            let input = std::fs::read(&path).expect("an input");
            if let Err(panic) = std::panic::catch_unwind(|| check(&input)) {
                panic!("{}: {panic:?}", path.display());
            }
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn every_saved_transaction_body_passes_the_fuzz_checks() {
    assert!(replay("transaction_body", checks::transaction_body) >= 8);
}

#[test]
fn every_saved_client_path_passes_the_fuzz_checks() {
    assert!(replay("client_path", checks::client_path) >= 10);
}
