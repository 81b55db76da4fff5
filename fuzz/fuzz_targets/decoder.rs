//! Fuzz target for the wire protocol decoder and hellos: must never panic.
//!
//! The checks live in `src/protocol/fuzz_harness.rs`, shared with the `corpus_replay` unit test.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../src/protocol/mod.rs"]
mod protocol;

#[allow(dead_code)]
#[path = "../../src/protocol/fuzz_harness.rs"]
mod fuzz_harness;

fuzz_target!(|data: &[u8]| {
    fuzz_harness::check(data);
});
