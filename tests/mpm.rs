//! The module loads under mpm_event, mpm_worker and mpm_prefork, and Apache still serves a
//! static file with it loaded.

mod common;

use common::{ApacheConfig, Mpm};

fn serves_static_with_module(mpm: Mpm) {
    let apache = ApacheConfig::new("mpm").mpm(mpm).start();
    let resp = apache.get("/static.txt");
    assert_with_log!(
        apache,
        resp.status == 200,
        "{mpm:?}: status {}",
        resp.status
    );
    assert_eq!(resp.text(), "static file served by Apache\n");
    let log = apache.error_log();
    assert!(
        !log.contains("segfault") && !log.contains("AH00052"),
        "{mpm:?}: crash in log:\n{log}"
    );
}

#[test]
fn loads_under_event() {
    serves_static_with_module(Mpm::Event);
}

#[test]
fn loads_under_worker() {
    serves_static_with_module(Mpm::Worker);
}

#[test]
fn loads_under_prefork() {
    serves_static_with_module(Mpm::Prefork);
}
