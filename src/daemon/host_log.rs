//! A daemon host's error-log lines, relayed through the daemon manager (issue 35). An
//! exec'd host has no Apache to log through, so it sends each line as a record (its level
//! and text) on a pipe to the manager, which still is a fork of Apache's parent and logs
//! it with Apache's logger: the line obeys ErrorLogFormat, LogLevel and `ErrorLog syslog`
//! or a piped log exactly as a forked daemon's line does. What the host's process writes to
//! its stderr itself (C code, Python's fatal errors, a subprocess) comes over a second
//! pipe and is logged line by line as RW0270 (error).
//!
//! A record is one level byte (`'0'` emerg … `'7'` debug), the text (no newline) and a
//! newline; it is at most `PIPE_BUF` bytes, so one `write` puts it in the pipe whole even
//! when a process forked by the application writes records too.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::logging::{self, Level};

/// The longest record (what one `write` to a pipe keeps whole).
const MAX_RECORD: usize = libc::PIPE_BUF;

/// The longest line the manager assembles before logging what it has: Apache cuts a
/// line near 8 KiB anyway.
const MAX_LINE: usize = 8192;

/// Appends the records of `msg` at `level` to `out`: one per line, a line longer than a
/// record split at a character boundary.
pub fn encode(level: Level, msg: &str, out: &mut Vec<u8>) {
    let tag = b'0' + level as u8;
    for line in msg.split('\n') {
        let mut rest = line;
        loop {
            let mut cut = rest.len().min(MAX_RECORD - 2);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(tag);
            out.extend_from_slice(&rest.as_bytes()[..cut]);
            out.push(b'\n');
            rest = &rest[cut..];
            if rest.is_empty() {
                break;
            }
        }
    }
}

/// A record's level and text (lossy: the manager logs whatever arrived); an unknown level
/// byte is logged at error with the whole line.
fn decode(record: &[u8]) -> (Level, String) {
    match record.split_first() {
        Some((&tag, text)) if (b'0'..=b'7').contains(&tag) => (
            Level::ALL[usize::from(tag - b'0')],
            String::from_utf8_lossy(text).into_owned(),
        ),
        _ => (Level::Error, String::from_utf8_lossy(record).into_owned()),
    }
}

/// In the host: the descriptor its records go to (-1: none, lines go to stderr).
static RELAY_FD: AtomicI32 = AtomicI32::new(-1);

/// In the host: sends every line from now on as a record on `fd` (the plan's `log_fd`),
/// which no program the host starts inherits.
pub fn relay_to(fd: RawFd) {
    let _ = crate::daemon::listener::set_cloexec(fd, true);
    RELAY_FD.store(fd, Ordering::Relaxed);
}

/// The host's logging backend: records to the manager once [`relay_to`] has named the
/// pipe, Apache-format lines on stderr before (the plan could not be read) or without one.
pub fn backend(level: Level, msg: &str) {
    let fd = RELAY_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return logging::stderr_backend(level, msg);
    }
    let mut records = Vec::with_capacity(msg.len() + 8);
    encode(level, msg, &mut records);
    let mut rest = &records[..];
    while !rest.is_empty() {
        // One record per write, so each stays whole.
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let mut record = &rest[..end];
        while !record.is_empty() {
            // SAFETY: write from a valid slice to the host's relay descriptor.
            let n = unsafe { libc::write(fd, record.as_ptr().cast(), record.len()) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return; // the manager is gone: nobody to log to
            }
            record = &record[usize::try_from(n).unwrap_or(0)..];
        }
        rest = &rest[end..];
    }
}

/// Complete lines out of a byte stream; a line longer than [`MAX_LINE`] comes out in parts.
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, bytes: &[u8], mut line: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(i) = self.pending[start..].iter().position(|&b| b == b'\n') {
            line(&self.pending[start..start + i]);
            start += i + 1;
        }
        while self.pending.len() - start >= MAX_LINE {
            line(&self.pending[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        self.pending.drain(..start);
    }

    /// What is left without a newline (the writer died in the middle of a line).
    fn finish(&mut self, line: impl FnOnce(&[u8])) {
        if !self.pending.is_empty() {
            line(&self.pending);
            self.pending.clear();
        }
    }
}

/// One stream from a host: its pipe, what has arrived of its current line, whether it ended.
struct Stream {
    fd: OwnedFd,
    lines: Lines,
    ended: bool,
}

/// In the manager: the two pipes of one exec'd daemon, relayed into Apache's error log.
pub struct Relay {
    group: String,
    pid: i32,
    records: Stream,
    stderr: Stream,
}

/// The manager's and the host's ends of a relay, made before the fork.
pub struct RelayPipes {
    records_read: OwnedFd,
    stderr_read: OwnedFd,
    /// The host's ends (close-on-exec until the forked child passes them on).
    pub records_write: OwnedFd,
    pub stderr_write: OwnedFd,
}

impl RelayPipes {
    pub fn new() -> std::io::Result<RelayPipes> {
        let (records_read, records_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (stderr_read, stderr_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        for fd in [&records_read, &stderr_read] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )?;
        }
        Ok(RelayPipes {
            records_read,
            stderr_read,
            records_write,
            stderr_write,
        })
    }

    /// In the forked child, before exec: its stderr becomes the stderr pipe and the records
    /// pipe crosses exec; returns the records descriptor for the plan.
    pub fn pass_to_host(self) -> std::io::Result<RawFd> {
        // SAFETY: dup2 of an open descriptor onto stderr, which this process (about to exec
        // the host) no longer needs as it was.
        if unsafe { libc::dup2(self.stderr_write.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = self.records_write.as_raw_fd();
        crate::daemon::listener::set_cloexec(fd, false)?;
        // Kept open for the host (the other ends close at exec).
        std::mem::forget(self.records_write);
        Ok(fd)
    }

    /// In the manager, after the fork: keeps its ends for daemon `pid`.
    pub fn into_relay(self, group: &str, pid: i32) -> Relay {
        let stream = |fd| Stream {
            fd,
            lines: Lines::default(),
            ended: false,
        };
        Relay {
            group: group.to_string(),
            pid,
            records: stream(self.records_read),
            stderr: stream(self.stderr_read),
        }
    }
}

/// Which of a relay's pipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    Records,
    Stderr,
}

impl Relay {
    /// The pipes still worth polling.
    pub fn poll_fds(&self) -> impl Iterator<Item = (Pipe, BorrowedFd<'_>)> {
        [(Pipe::Records, &self.records), (Pipe::Stderr, &self.stderr)]
            .into_iter()
            .filter(|(_, s)| !s.ended)
            .map(|(p, s)| (p, s.fd.as_fd()))
    }

    /// Logs what has arrived on `pipe` (at most 1 MiB a turn, so one host cannot hold the
    /// manager up).
    pub fn read(&mut self, pipe: Pipe) {
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..64 {
            let stream = match pipe {
                Pipe::Records => &mut self.records,
                Pipe::Stderr => &mut self.stderr,
            };
            match nix::unistd::read(&stream.fd, &mut buf) {
                Ok(0) => {
                    stream.ended = true;
                    return;
                }
                Ok(n) => {
                    let (group, pid) = (&self.group, self.pid);
                    stream
                        .lines
                        .feed(&buf[..n], |line| log_line(pipe, group, pid, line));
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return, // nothing more for now
            }
        }
    }

    /// Logs everything the daemon (now dead) left in its pipes, a last unfinished line too:
    /// called before its death is logged, so no line of its is lost or comes after it.
    pub fn drain(mut self) {
        for pipe in [Pipe::Records, Pipe::Stderr] {
            // A process the daemon started may still hold the stderr pipe open: read what
            // is there now, not until it ends.
            for _ in 0..64 {
                let stream = match pipe {
                    Pipe::Records => &self.records,
                    Pipe::Stderr => &self.stderr,
                };
                if stream.ended || !readable(stream.fd.as_fd()) {
                    break;
                }
                self.read(pipe);
            }
            let (group, pid) = (&self.group, self.pid);
            let stream = match pipe {
                Pipe::Records => &mut self.records,
                Pipe::Stderr => &mut self.stderr,
            };
            stream.lines.finish(|line| log_line(pipe, group, pid, line));
        }
    }
}

fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN))
}

fn log_line(pipe: Pipe, group: &str, pid: i32, line: &[u8]) {
    match pipe {
        Pipe::Records => {
            let (level, text) = decode(line);
            // log-code: none (a daemon host's own line, relayed: it carries its code)
            logging::log(level, &text);
        }
        Pipe::Stderr => logging::error(&format!(
            "RW0270: daemon process '{group}' (pid {pid}) wrote to stderr: {}",
            String::from_utf8_lossy(line)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(stream: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for bytes in stream {
            lines.feed(bytes, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        lines.finish(|l| out.push(format!("(unfinished) {}", String::from_utf8_lossy(l))));
        out
    }

    #[test]
    fn records_carry_the_level_one_line_each_and_fit_a_pipe_write() {
        let mut out = Vec::new();
        encode(Level::Warning, "RW0000: a\nTraceback:\n  x", &mut out);
        assert_eq!(out, b"4RW0000: a\n4Traceback:\n4  x\n");
        let mut lines = Lines::default();
        let mut got = Vec::new();
        lines.feed(&out, |l| got.push(decode(l)));
        assert_eq!(
            got,
            [
                (Level::Warning, "RW0000: a".to_string()),
                (Level::Warning, "Traceback:".into()),
                (Level::Warning, "  x".into())
            ]
        );
        for level in Level::ALL {
            let mut out = Vec::new();
            encode(level, "m", &mut out);
            assert_eq!(decode(&out[..out.len() - 1]), (level, "m".to_string()));
        }
        assert_eq!(decode(b"x oops"), (Level::Error, "x oops".to_string()));
        // A long line of two-byte characters: records of at most PIPE_BUF bytes, cut
        // between characters, that together are the line.
        let long = "é".repeat(5000);
        let mut out = Vec::new();
        encode(Level::Info, &long, &mut out);
        let records: Vec<&[u8]> = out
            .strip_suffix(b"\n")
            .unwrap()
            .split(|&b| b == b'\n')
            .collect();
        assert_eq!(records.len(), 3);
        let mut joined = String::new();
        for r in records {
            assert!(r.len() < MAX_RECORD, "{}", r.len());
            let (level, text) = decode(r);
            assert_eq!(level, Level::Info);
            assert!(!text.contains('\u{fffd}'));
            joined.push_str(&text);
        }
        assert_eq!(joined, long);
    }

    #[test]
    fn lines_are_assembled_across_reads_and_an_unfinished_one_is_kept() {
        assert_eq!(
            lines_of(&[b"one\ntw", b"o\n", b"", b"thr", b"ee"]),
            ["one", "two", "(unfinished) three"]
        );
        let long = vec![b'a'; MAX_LINE + 10];
        let out = lines_of(&[&long, b"\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1].len(), 10);
    }
}
