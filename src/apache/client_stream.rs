//! The client connection of a request after it switched protocols (101): bytes read and
//! written through the connection's own filters (so mod_ssl and any connection filter stay
//! in the path; the socket is never read or written directly), as a `Read + Write` for a
//! protocol library. Reads never block: no data is `WouldBlock`, and the caller polls
//! [`ClientStream::poll_fd`] first. Writes block (the socket's timeout bounds them) and
//! are flushed by `flush()`.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use crate::ffi;

use super::request::Request;

pub struct ClientStream<'r> {
    conn: &'r mut ffi::conn_rec,
    bb_in: *mut ffi::apr_bucket_brigade,
    bb_out: *mut ffi::apr_bucket_brigade,
    fd: RawFd,
}

impl<'r> ClientStream<'r> {
    /// The stream of `r`'s connection; None when it has no socket (not a network client).
    pub fn new(r: &'r mut Request<'_>) -> Option<ClientStream<'r>> {
        let raw = r.as_mut_ptr();
        // SAFETY: raw is the live request; its connection, pool and bucket allocator live at
        // least as long as the request, which outlives 'r.
        unsafe {
            let conn = (*raw).connection.as_mut()?;
            let sock = ffi::ap_get_conn_socket(conn);
            if sock.is_null() {
                return None;
            }
            let mut fd: ffi::apr_os_sock_t = -1;
            if ffi::apr_os_sock_get(&mut fd, sock) != 0 || fd < 0 {
                return None;
            }
            let pool = (*raw).pool;
            let bb_in = ffi::apr_brigade_create(pool, conn.bucket_alloc);
            let bb_out = ffi::apr_brigade_create(pool, conn.bucket_alloc);
            Some(ClientStream {
                conn,
                bb_in,
                bb_out,
                fd,
            })
        }
    }

    /// The client socket, to wait on for input (data may also sit decrypted in a filter:
    /// read until `WouldBlock` before waiting again).
    pub fn poll_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the socket stays open for the whole request, which outlives self.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

fn gone(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, what.to_string())
}

impl io::Read for ClientStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let want = ffi::apr_off_t::try_from(buf.len()).unwrap_or(ffi::apr_off_t::MAX);
        // SAFETY: the brigade and the connection's input filters are live (see new); the
        // flatten writes at most `len` bytes into buf.
        unsafe {
            ffi::apr_brigade_cleanup(self.bb_in.cast());
            let rv = ffi::ap_get_brigade(
                self.conn.input_filters,
                self.bb_in,
                ffi::ap_input_mode_t_AP_MODE_READBYTES,
                ffi::apr_read_type_e_APR_NONBLOCK_READ,
                want,
            );
            if rv == ffi::APR_EAGAIN as ffi::apr_status_t {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if rv == ffi::APR_EOF as ffi::apr_status_t {
                return Ok(0);
            }
            if rv != 0 {
                return Err(gone("reading from the client failed"));
            }
            let mut len: ffi::apr_size_t = buf.len() as ffi::apr_size_t;
            let rv = ffi::apr_brigade_flatten(self.bb_in, buf.as_mut_ptr().cast(), &mut len);
            ffi::apr_brigade_cleanup(self.bb_in.cast());
            if rv != 0 {
                return Err(gone("reading from the client failed"));
            }
            if len == 0 {
                // Only metadata (or nothing) came: no data yet.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(len as usize)
        }
    }
}

impl io::Write for ClientStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // SAFETY: the brigade and the output filters are live; apr_brigade_write copies buf
        // (passing full buffers down the filters through ap_filter_flush).
        let rv = unsafe {
            ffi::apr_brigade_write(
                self.bb_out,
                Some(ffi::ap_filter_flush),
                self.conn.output_filters.cast(),
                buf.as_ptr().cast(),
                buf.len() as ffi::apr_size_t,
            )
        };
        if rv != 0 || self.conn.aborted != 0 {
            return Err(gone("the client connection is gone"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // SAFETY: as in write; ap_fflush adds a flush bucket and passes the brigade down.
        let rv = unsafe { ffi::ap_fflush(self.conn.output_filters, self.bb_out) };
        // SAFETY: the brigade is live; its buckets were passed on.
        unsafe { ffi::apr_brigade_cleanup(self.bb_out.cast()) };
        if rv != 0 || self.conn.aborted != 0 {
            return Err(gone("the client connection is gone"));
        }
        Ok(())
    }
}
