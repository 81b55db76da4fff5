//! Apache's side of the exchange with a daemon that breaks the protocol: a stand-in daemon
//! (this test) takes the group's socket path and answers each connection wrongly in one way.
//! Each breach must give a log line naming it and the right outcome: 502 before the response
//! head, an aborted response after it, never a silent 200 (nor a body under Apache's default
//! head).

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use common::{ApacheConfig, http};

const PROTOCOL_VERSION: u16 = 8;
const RESP_HEAD: u8 = 4;
const RESP_BODY: u8 = 5;
const RESP_END: u8 = 7;
const ERROR: u8 = 8;

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, 0, 0, 0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn resp_head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut p = status.to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes()); // empty reason
    p.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (k, v) in headers {
        for s in [k, v] {
            p.extend_from_slice(&(s.len() as u32).to_be_bytes());
            p.extend_from_slice(s.as_bytes());
        }
    }
    frame(RESP_HEAD, &p)
}

/// Reads the hello and the request head frame (a GET has nothing after it) and answers the
/// hello; returns once the request is in.
fn take_request(s: &mut UnixStream) {
    let mut hello = [0u8; 8];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..4], b"RWSG");
    let mut reply = b"RWSG".to_vec();
    reply.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    reply.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&reply).unwrap();
    let mut header = [0u8; 8];
    s.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
}

#[test]
fn protocol_breaches_by_a_daemon_are_logged_with_the_right_outcome() {
    let (config, _) =
        ApacheConfig::new("exchange").daemon_app("probe.wsgi", "probe", "threads=2", "");
    let apache = config.start();
    // The stand-in takes over the socket path before any request: Apache children connect
    // by path, so every connection comes here.
    let socket = std::fs::read_dir(apache.config.root().join("run"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .expect("the group's socket");
    std::fs::remove_file(&socket).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let answers: Vec<Vec<u8>> = vec![
        // 1. The end of a response that never had a head.
        frame(RESP_END, &[]),
        // 2. A head that does not decode.
        frame(RESP_HEAD, &[0]),
        // 3. A good head and body, then an Error frame that does not decode.
        [
            resp_head(200, &[("Content-Length", "100")]),
            frame(RESP_BODY, b"partial"),
            frame(ERROR, &[1]),
        ]
        .concat(),
        // 4. Body before any head (the daemon always sends its head first).
        [frame(RESP_BODY, b"early"), frame(RESP_END, &[])].concat(),
    ];
    let daemon = std::thread::spawn(move || {
        for answer in answers {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            take_request(&mut s);
            s.write_all(&answer).unwrap();
            // Keep the connection open until Apache closes it: only what was sent may
            // decide the outcome, not the end of the connection.
            let _ = s.read_to_end(&mut Vec::new());
        }
    });

    let resp = apache.get("/app/one");
    assert_with_log!(
        apache,
        resp.status == 502,
        "end without head: {}",
        resp.status
    );
    apache.wait_for_log(
        "daemon process 'probe' ended the response without sending its status and headers",
        Duration::from_secs(5),
    );

    let resp = apache.get("/app/two");
    assert_with_log!(apache, resp.status == 502, "bad head: {}", resp.status);
    apache.wait_for_log(
        "malformed RespHead frame from daemon process 'probe'",
        Duration::from_secs(5),
    );

    // After the head the client sees the response cut short: 7 of the 100 bytes promised.
    // (An Err is the connection ending before the body was complete: also cut short.)
    if let Ok(resp) = http::request(apache.port(), "GET", "/app/three", &[], b"") {
        assert_with_log!(
            apache,
            resp.status == 200 && resp.body.len() < 100,
            "bad frame after the head: status {}, {} body bytes",
            resp.status,
            resp.body.len()
        );
    }
    apache.wait_for_log(
        "malformed Error frame from daemon process 'probe'",
        Duration::from_secs(5),
    );

    let resp = apache.get("/app/four");
    assert_with_log!(
        apache,
        resp.status == 502,
        "body before head: {}",
        resp.status
    );
    apache.wait_for_log(
        "unexpected RespBody frame from daemon process 'probe' before the response head",
        Duration::from_secs(5),
    );
    daemon.join().unwrap();
}
