//! Fuzz target for the config tokenizer and directive parsers: must never panic, the
//! tokenizer must round-trip, and every error must name its directive.
//!
//! The checks live in `src/config/fuzz_harness.rs`, whose unit tests replay the seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../src/config/mod.rs"]
mod config;

#[allow(dead_code)]
#[path = "../../src/config/fuzz_harness.rs"]
mod fuzz_harness;

fuzz_target!(|data: &[u8]| {
    fuzz_harness::check(data);
});
