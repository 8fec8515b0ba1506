//! Integration tests: the built `load-test` binary against servers started inside the test.
//!
//! One test binary (ripgrep's habit): fake servers that each break one promise of the contract,
//! a correct fake as the control, and the real API started in-process on port 0, directly or
//! behind the deployment's nginx over TLS.

mod against_fake_servers;
mod against_the_real_api;
mod chromium;
mod fake_server;
mod helpers;
mod over_tls;
#[path = "../../../tests/support/ports.rs"]
mod ports;
