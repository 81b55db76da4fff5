//! File descriptors alongside the byte stream (`SCM_RIGHTS`), for [`Frame::RespFile`]: the
//! daemon sends the descriptor of a `wsgi.file_wrapper` file with the frame's bytes, and the
//! Apache side hands the file to Apache, which sends it as it sends static files.
//!
//! The receiver must read every byte of the connection through [`FdReader`]: a plain
//! `read()` would silently drop (and close) descriptors in flight. A descriptor arrives
//! with the bytes it was sent with, so by the time a RespFile frame is decoded, its
//! descriptor is in the queue, in order.
//!
//! [`Frame::RespFile`]: crate::protocol::Frame::RespFile

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use nix::sys::stat::{SFlag, fstat};

use super::poll::wait_readable;

/// The most descriptors taken from one read; more in one read would be a peer bug (we send
/// one per RespFile frame) and are closed by the kernel.
const MAX_FDS_PER_READ: usize = 8;

/// A cmsghdr (16 bytes on 64-bit Linux) and MAX_FDS_PER_READ descriptors (checked against
/// CMSG_SPACE by a test).
const CONTROL_BYTES: usize = 16 + MAX_FDS_PER_READ * std::mem::size_of::<RawFd>();

/// Room for the control message of one read, on the stack: every read of a daemon
/// connection goes through here, so no allocation per read; aligned as a cmsghdr.
#[repr(C, align(8))]
struct ControlBuffer([u8; CONTROL_BYTES]);

/// Reads a Unix stream like `Read`, keeping the descriptors that arrive in `fds`.
///
/// It never sleeps in `recvmsg()`: when no bytes are there it waits in `poll()` for input
/// (see [`wait_readable`]) and then reads without blocking, so the peer consuming what this
/// side wrote does not wake it for nothing.
pub struct FdReader<'a> {
    pub stream: &'a UnixStream,
    pub fds: &'a mut VecDeque<OwnedFd>,
    /// How long one read waits for bytes (`None`: forever); then `TimedOut`.
    pub timeout: Option<Duration>,
    /// Wait for input before the first read: the caller knows the peer has not answered
    /// yet (it has just sent it something), which saves a read that would find nothing.
    pub wait_first: bool,
}

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut cmsg = ControlBuffer([0; CONTROL_BYTES]);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = loop {
            if std::mem::take(&mut self.wait_first) {
                wait_readable(self.stream.as_fd(), self.timeout)?;
            }
            match recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg.0),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(msg) => break msg,
                Err(Errno::EAGAIN) => self.wait_first = true,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        };
        let n = msg.bytes;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor in our table for us;
                    // nothing else owns it.
                    self.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Ok(n)
    }
}

/// Writes all of `data` with `fd` attached to its first byte. The sender keeps its own
/// descriptor (the receiver gets a duplicate).
pub fn write_all_with_fd(stream: &mut UnixStream, data: &[u8], fd: RawFd) -> io::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = loop {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(data)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    };
    if sent == 0 && !data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the peer accepted no bytes",
        ));
    }
    // The descriptor went with the first segment; the rest is plain bytes.
    stream.write_all(&data[sent..])
}

/// Whether `fd` is a regular file: what the Apache side accepts with a RespFile frame, to
/// send like a static file.
pub fn is_regular_file(fd: BorrowedFd<'_>) -> bool {
    // The type is a field, not a set of flags: a socket's type bits include S_IFREG's.
    fstat(fd).is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::io::{read_frame, write_frame};
    use crate::protocol::{Decoder, Frame};
    use std::io::{ErrorKind, Seek};
    use std::thread;

    #[test]
    fn control_buffer_holds_the_most_descriptors_of_one_read() {
        let payload = (MAX_FDS_PER_READ * std::mem::size_of::<RawFd>()) as u32;
        // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
        let needed = unsafe { libc::CMSG_SPACE(payload) } as usize;
        assert!(needed <= std::mem::size_of::<ControlBuffer>(), "{needed}");
    }

    #[test]
    fn descriptor_arrives_with_its_bytes_in_order() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile_with(b"file contents");
        file.seek(io::SeekFrom::Start(0)).unwrap();
        a.write_all(b"before;").unwrap();
        write_all_with_fd(&mut a, b"with-fd;", file.as_raw_fd()).unwrap();
        a.write_all(b"after").unwrap();
        drop(a);
        let (got, mut fds) = read_all(&b);
        assert_eq!(got, b"before;with-fd;after");
        assert_eq!(fds.len(), 1);
        let mut received = std::fs::File::from(fds.pop_front().unwrap());
        let mut text = String::new();
        received.seek(io::SeekFrom::Start(0)).unwrap();
        received.read_to_string(&mut text).unwrap();
        assert_eq!(text, "file contents");
    }

    #[test]
    fn large_payload_with_a_descriptor_is_written_whole() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let file = tempfile_with(b"x");
        let payload = vec![7u8; 4 * 1024 * 1024];
        let writer = std::thread::spawn(move || {
            write_all_with_fd(&mut a, &payload, file.as_raw_fd()).unwrap();
        });
        let (got, fds) = read_all(&b);
        writer.join().unwrap();
        assert_eq!(got.len(), 4 * 1024 * 1024);
        assert_eq!(fds.len(), 1);
    }

    /// An FdReader on `stream` that waits 50 ms for bytes.
    fn fd_reader<'a>(
        stream: &'a UnixStream,
        fds: &'a mut VecDeque<OwnedFd>,
        wait_first: bool,
    ) -> FdReader<'a> {
        FdReader {
            stream,
            fds,
            timeout: Some(Duration::from_millis(50)),
            wait_first,
        }
    }

    #[test]
    fn fd_reader_reads_late_bytes_and_end_of_stream() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut fds = VecDeque::new();
        let mut reader = fd_reader(&b, &mut fds, true);
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let err = reader.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // Bytes sent while it waits wake it.
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            a.write_all(b"late").unwrap();
            a
        });
        reader.timeout = Some(Duration::from_secs(10));
        reader.wait_first = true;
        assert_eq!(reader.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"late");
        // A closed peer reads as end of stream, not as a timeout.
        drop(writer.join().unwrap());
        assert_eq!(reader.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn fd_reader_waits_for_input_then_times_out() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut fds = VecDeque::new();
        let mut reader = fd_reader(&b, &mut fds, false);
        let mut dec = Decoder::default();
        let err = read_frame(&mut reader, &mut dec).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        write_frame(&mut a, &Frame::RespEnd).unwrap();
        reader.wait_first = true;
        assert_eq!(read_frame(&mut reader, &mut dec).unwrap(), Frame::RespEnd);
    }

    #[test]
    fn only_regular_files_pass_as_files() {
        let file = tempfile_with(b"x");
        assert!(is_regular_file(file.as_fd()));
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(!is_regular_file(a.as_fd()));
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        assert!(!is_regular_file(dir.as_fd()));
    }

    /// Everything until the peer closes, and the descriptors that came with it.
    fn read_all(stream: &UnixStream) -> (Vec<u8>, VecDeque<OwnedFd>) {
        let mut fds = VecDeque::new();
        let mut got = Vec::new();
        FdReader {
            stream,
            fds: &mut fds,
            timeout: Some(std::time::Duration::from_secs(10)),
            wait_first: false,
        }
        .read_to_end(&mut got)
        .unwrap();
        (got, fds)
    }

    fn tempfile_with(data: &[u8]) -> std::fs::File {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rwsgi-fdpass-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::write(&path, data).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }
}
