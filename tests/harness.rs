//! The test harness itself: a port taken between choosing it and Apache binding it is
//! retried on another port instead of failing the test.

mod common;

use std::net::TcpListener;

use common::ApacheConfig;

#[test]
fn a_taken_port_is_retried_on_another() {
    let mut config = ApacheConfig::new("harness");
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    config.port = taken;
    let apache = config.start();
    assert_ne!(apache.port(), taken);
    let resp = apache.get("/static.txt");
    assert_eq!(resp.status, 200);
    drop(squatter);
}
