//! The body parser on arbitrary bytes (see `checks::transaction_body`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|body: &[u8]| checks::transaction_body(body));
