//! The least CPU a request crossing into another process costs on this machine: two
//! processes ping-pong a small message over a Unix stream socket, each side sleeping in
//! poll() until the other answers (as an Apache thread and a daemon thread do). Prints CPU
//! µs per round trip, for both processes together, at 1 and at 16 concurrent pairs.
//!
//! Run: `cargo run --release --example ipc_floor` (or `make bench-ipc`).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};

const ROUND_TRIPS: usize = 100_000;

fn wait_readable(s: &UnixStream) {
    let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::NONE);
}

fn cpu_seconds(who: UsageWho) -> f64 {
    let u = getrusage(who).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

/// `pairs` client/server process pairs, each doing `ROUND_TRIPS / pairs` round trips.
fn run(pairs: usize) {
    let per_pair = ROUND_TRIPS / pairs;
    let started = Instant::now();
    let cpu_before = cpu_seconds(UsageWho::RUSAGE_CHILDREN);
    let mut children = Vec::new();
    for _ in 0..pairs {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        for first in [true, false] {
            // SAFETY: the child only runs the ping-pong loop on its socket and exits; no
            // other threads exist in this process.
            match unsafe { fork() }.expect("fork") {
                ForkResult::Child => {
                    let s = if first { &mut a } else { &mut b };
                    // The client sends and waits for the answer; the server answers.
                    client_or_server(s, first, per_pair);
                    std::process::exit(0);
                }
                ForkResult::Parent { child } => children.push(child),
            }
        }
    }
    for child in children {
        let _ = waitpid(child, None);
    }
    let cpu = cpu_seconds(UsageWho::RUSAGE_CHILDREN) - cpu_before;
    let trips = (per_pair * pairs) as f64;
    println!(
        "{pairs:>2} pair(s): {:>7.0} round trips/s, {:>5.1} µs CPU per round trip (both sides)",
        trips / started.elapsed().as_secs_f64(),
        cpu * 1e6 / trips
    );
}

fn client_or_server(s: &mut UnixStream, client: bool, n: usize) {
    let mut buf = [0u8; 128];
    let msg = [7u8; 100];
    for _ in 0..n {
        if client {
            s.write_all(&msg).expect("write");
        }
        wait_readable(s);
        let mut got = 0;
        while got < msg.len() {
            got += s.read(&mut buf[got..msg.len()]).expect("read");
        }
        if !client {
            s.write_all(&msg).expect("write");
        }
    }
}

fn main() {
    for pairs in [1, 16] {
        run(pairs);
    }
}
