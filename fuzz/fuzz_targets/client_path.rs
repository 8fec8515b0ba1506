//! The path/id parser on arbitrary request targets (see `checks::client_path`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|path: &[u8]| checks::client_path(path));
