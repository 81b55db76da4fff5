//! `request_rec`: one HTTP request inside an Apache child. Bytes, not `str`, end to end.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::raw::{c_char, c_int};

use crate::apache::pool::Pool;
use crate::ffi;

/// A borrowed request, valid for the duration of the hook or handler that received it.
pub struct Request<'r> {
    raw: &'r mut ffi::request_rec,
}

fn client_error(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, msg.to_string())
}

/// The bytes of a C string Apache owns; None for null.
///
/// # Safety
/// `p` is null or a NUL-terminated string that stays valid and unchanged for `'a`.
unsafe fn cbytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        None
    } else {
        // SAFETY: Apache request strings are NUL-terminated and live in the request pool,
        // which outlives the borrow handed out ('a is bounded by the Request borrow).
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// The entries of an APR table as borrowed byte pairs.
///
/// # Safety
/// `table` must be a live APR table not modified while the returned slice is used.
unsafe fn table_entries<'a>(table: *const ffi::apr_table_t) -> Vec<(&'a [u8], &'a [u8])> {
    if table.is_null() {
        return Vec::new();
    }
    // SAFETY: apr_table_elts returns the table's own array header; entries are
    // apr_table_entry_t with NUL-terminated key/val (or null for deleted slots).
    unsafe {
        let header = &*ffi::apr_table_elts(table);
        let entries = header.elts as *const ffi::apr_table_entry_t;
        let count = usize::try_from(header.nelts).unwrap_or(0);
        (0..count)
            .filter_map(|i| {
                let e = &*entries.add(i);
                Some((cbytes(e.key)?, cbytes(e.val).unwrap_or(b"")))
            })
            .collect()
    }
}

impl<'r> Request<'r> {
    /// # Safety
    /// `raw` must be the request Apache passed to the running hook/handler.
    pub unsafe fn from_raw(raw: *mut ffi::request_rec) -> Option<Request<'r>> {
        // SAFETY: a non-null request from Apache is valid and ours during the hook.
        unsafe { raw.as_mut() }.map(|raw| Request { raw })
    }

    pub fn as_ptr(&self) -> *const ffi::request_rec {
        self.raw
    }

    pub fn as_mut_ptr(&mut self) -> *mut ffi::request_rec {
        self.raw
    }

    pub fn pool(&self) -> Pool {
        // SAFETY: the request pool lives as long as the request.
        unsafe { Pool::from_raw(self.raw.pool) }.expect("request without pool")
    }

    /// The virtual host (or main server) handling this request.
    pub fn server(&self) -> Option<crate::apache::virtual_host::VirtualHost> {
        // SAFETY: a live request's server is a server_rec of the current generation, live
        // while the request runs.
        unsafe { crate::apache::virtual_host::VirtualHost::from_raw(self.raw.server) }
    }

    pub fn method(&self) -> &[u8] {
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        unsafe { cbytes(self.raw.method) }.unwrap_or(b"GET")
    }

    /// The port the request came to as Apache reports it (`ap_get_server_port`: the
    /// connection's local port, or ServerName's with `UseCanonicalName On`).
    pub fn server_port(&self) -> u16 {
        // SAFETY: a live request; ap_get_server_port only reads it, its server and its
        // connection.
        unsafe { ffi::ap_get_server_port(self.as_ptr()) }
    }

    pub fn uri(&self) -> &[u8] {
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        unsafe { cbytes(self.raw.uri) }.unwrap_or(b"")
    }

    pub fn unparsed_uri(&self) -> &[u8] {
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        unsafe { cbytes(self.raw.unparsed_uri) }.unwrap_or(b"")
    }

    pub fn args(&self) -> Option<&[u8]> {
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        unsafe { cbytes(self.raw.args) }
    }

    pub fn protocol(&self) -> &[u8] {
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        unsafe { cbytes(self.raw.protocol) }.unwrap_or(b"HTTP/1.0")
    }

    pub fn handler(&self) -> Option<&[u8]> {
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        unsafe { cbytes(self.raw.handler) }
    }

    pub fn filename(&self) -> Option<&[u8]> {
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        unsafe { cbytes(self.raw.filename) }
    }

    pub fn path_info(&self) -> Option<&[u8]> {
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        unsafe { cbytes(self.raw.path_info) }
    }

    /// Microseconds since the epoch when Apache read the request line.
    pub fn request_time_us(&self) -> i64 {
        self.raw.request_time
    }

    /// Makes sure the request and its connection have a log id (`%L` in ErrorLogFormat),
    /// generated by Apache's generate_log_id hook if not yet, as mod_wsgi does for the
    /// request. Each is made once, in the request's or the connection's pool.
    pub fn ensure_log_ids(&mut self) {
        let c = self.raw.connection;
        // SAFETY: the connection of a live request is live; the hook writes a pool string
        // into the pointer we pass, which is the field the hook contract designates. The
        // core module's hook always answers; Apache itself fills these ids the same way.
        unsafe {
            if !c.is_null() && (*c).log_id.is_null() {
                ffi::ap_run_generate_log_id(c, std::ptr::null(), &mut (*c).log_id);
            }
            if self.raw.log_id.is_null() {
                ffi::ap_run_generate_log_id(c, self.raw, &mut self.raw.log_id);
            }
        }
    }

    /// The request's log id and its connection's (see [`Request::ensure_log_ids`]).
    pub fn log_ids(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        // SAFETY: the connection of a live request is live.
        let conn = unsafe { self.raw.connection.as_ref() };
        // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
        // that outlives the borrow.
        (
            unsafe { cbytes(self.raw.log_id) },
            conn.and_then(|c| unsafe { cbytes(c.log_id) }),
        )
    }

    /// The address of the listener the request came in on, as `Listen` gave it ("" for a
    /// wildcard), and its port: mod_wsgi's `listener_host` and `listener_port`.
    pub fn listener(&self) -> (&[u8], u16) {
        // SAFETY: the connection of a live request and its local address are live for the
        // request's duration (connection pool).
        let addr = unsafe {
            self.raw
                .connection
                .as_ref()
                .and_then(|c| c.local_addr.as_ref())
        };
        match addr {
            // SAFETY: a string field of a live Apache record: null or NUL-terminated, in a pool
            // that outlives the borrow.
            Some(a) => (unsafe { cbytes(a.hostname) }.unwrap_or(b""), a.port),
            None => (b"", 0),
        }
    }

    /// `text` copied into the request pool, borrowed for the request's duration.
    pub fn pool_bytes(&self, text: &[u8]) -> &[u8] {
        let p = self.pool().c_bytes(text);
        // SAFETY: the NUL-terminated copy just made in the request pool, which outlives
        // the borrow.
        unsafe { cbytes(p) }.unwrap_or(b"")
    }

    pub fn is_main(&self) -> bool {
        self.raw.main.is_null()
    }

    pub fn header_only(&self) -> bool {
        self.raw.header_only != 0
    }

    /// Apache's method number (a HEAD request is `M_GET` with `header_only`).
    pub fn method_number(&self) -> i32 {
        self.raw.method_number
    }

    /// Whether the first output filter works on the content (below the protocol level,
    /// e.g. DEFLATE or INCLUDES): such a filter needs the body even for a HEAD request.
    pub fn has_content_output_filter(&self) -> bool {
        // SAFETY: output_filters is this request's live filter chain (or NULL); a filter's
        // frec is its registered, server-lifetime filter record.
        unsafe {
            self.raw
                .output_filters
                .as_ref()
                .and_then(|f| f.frec.as_ref())
                .is_some_and(|frec| frec.ftype < ffi::ap_filter_type_AP_FTYPE_PROTOCOL)
        }
    }

    pub fn header_in(&self, name: &CStr) -> Option<&[u8]> {
        // SAFETY: headers_in is a live table of the request; name is NUL-terminated; the
        // value (or null) lives in the request pool.
        unsafe { cbytes(ffi::apr_table_get(self.raw.headers_in, name.as_ptr())) }
    }

    pub fn headers_in(&self) -> Vec<(&[u8], &[u8])> {
        // SAFETY: headers_in is live and not modified while the result is used (&self).
        unsafe { table_entries(self.raw.headers_in) }
    }

    /// Does the script file exist as a regular file (Apache stat()ed it in map_to_storage)?
    pub fn file_is_regular(&self) -> bool {
        self.raw.finfo.filetype == ffi::apr_filetype_e_APR_REG
    }

    /// The mtime (µs since the Unix epoch) Apache's stat() in map_to_storage found for
    /// `r->filename`, when that is the regular file `path`.
    pub fn file_mtime_us(&self, path: &[u8]) -> Option<u64> {
        (self.file_is_regular() && self.filename() == Some(path))
            .then(|| u64::try_from(self.raw.finfo.mtime).ok())
            .flatten()
    }

    /// Adds Apache's CGI variables (HTTP_*, SERVER_*, REMOTE_*, DOCUMENT_ROOT ...) to
    /// subprocess_env, next to SetEnv values; read them with [`subprocess_env`](Self::subprocess_env).
    pub fn add_cgi_variables(&mut self) {
        // SAFETY: ap_add_common_vars only adds entries to this request's subprocess_env.
        unsafe { ffi::ap_add_common_vars(self.raw) };
    }

    /// Every entry of subprocess_env, in order.
    pub fn subprocess_env(&self) -> Vec<(&[u8], &[u8])> {
        // SAFETY: subprocess_env is live; not modified while the borrow lasts (&self).
        unsafe { table_entries(self.raw.subprocess_env) }
    }

    /// Sets the script path, handler and PATH_INFO (translate_name for WSGIScriptAlias).
    pub fn route_to_script(&mut self, filename: &[u8], handler: &'static CStr, path_info: &[u8]) {
        let pool = self.pool();
        self.raw.filename = pool.c_bytes(filename).cast_mut();
        self.raw.handler = handler.as_ptr();
        self.raw.path_info = pool.c_bytes(path_info).cast_mut();
        // Keep mod_mime from replacing our handler by one for the file's extension.
        // SAFETY: notes is a live table; handler is a static string.
        unsafe {
            ffi::apr_table_setn(
                self.raw.notes,
                c"alias-forced-type".as_ptr(),
                handler.as_ptr(),
            )
        };
    }

    /// Sets a note: bytes, as a URL's are (a NUL becomes '?').
    pub fn set_note(&mut self, key: &'static CStr, value: &[u8]) {
        let v = self.pool().c_bytes(value);
        // SAFETY: notes is live; the key is static, the value lives in the request pool.
        unsafe { ffi::apr_table_setn(self.raw.notes, key.as_ptr(), v) };
    }

    pub fn note(&self, key: &CStr) -> Option<&[u8]> {
        // SAFETY: notes is live; key is NUL-terminated; the value (or null) lives in the
        // request pool.
        unsafe { cbytes(ffi::apr_table_get(self.raw.notes, key.as_ptr())) }
    }

    /// The value `%{ENV:name}` stands for, as mod_wsgi looks it up: the request's notes,
    /// then its subprocess_env (SetEnv, SetEnvIf, RewriteRule [E=...]), then the process
    /// environment.
    pub fn variable(&self, name: &str) -> Option<Vec<u8>> {
        let key = std::ffi::CString::new(name).ok()?;
        // SAFETY: notes and subprocess_env are live tables of the request; key is
        // NUL-terminated; a value (or null) lives in the request pool.
        let in_request = unsafe {
            cbytes(ffi::apr_table_get(self.raw.notes, key.as_ptr()))
                .or_else(|| cbytes(ffi::apr_table_get(self.raw.subprocess_env, key.as_ptr())))
        };
        match in_request {
            Some(value) => Some(value.to_vec()),
            None => std::env::var_os(name).map(std::os::unix::ffi::OsStringExt::into_vec),
        }
    }

    /// Status and reason of the response (the reason may be empty).
    pub fn set_status(&mut self, status: u16, reason: &[u8]) {
        self.raw.status = c_int::from(status);
        if !reason.is_empty() {
            let mut line = status.to_string().into_bytes();
            line.push(b' ');
            line.extend_from_slice(reason);
            self.raw.status_line = self.pool().c_bytes(&line);
        }
    }

    /// Adds a response header; Content-Type and Content-Length get Apache's own setters.
    pub fn add_header_out(&mut self, name: &[u8], value: &[u8]) {
        let pool = self.pool();
        if name.eq_ignore_ascii_case(b"content-type") {
            // SAFETY: the string is copied into the request pool which outlives r.
            unsafe { ffi::ap_set_content_type(self.raw, pool.c_bytes(value)) };
            return;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if let Some(len) = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                // SAFETY: plain setter on a live request.
                unsafe { ffi::ap_set_content_length(self.raw, len) };
                return;
            }
        }
        // SAFETY: key and value are copied into the request pool by apr_table_addn's
        // caller (c_bytes) and live as long as the request.
        unsafe {
            ffi::apr_table_addn(
                self.raw.headers_out,
                pool.c_bytes(name),
                pool.c_bytes(value),
            )
        };
    }

    /// Adds a response header that a daemon process sent, as mod_wsgi's daemon mode does
    /// (its CGI-style scan of the daemon's headers): a repeated name is folded into one
    /// comma-separated value, except Set-Cookie and WWW-Authenticate (one line each, which
    /// some browsers need); Location, Content-Range and Transfer-Encoding keep the last.
    pub fn fold_header_out(&mut self, name: &[u8], value: &[u8]) {
        let one_line_each = [b"set-cookie".as_slice(), b"www-authenticate"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n));
        let last_wins = [
            b"location".as_slice(),
            b"content-range",
            b"transfer-encoding",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
        if one_line_each
            || name.eq_ignore_ascii_case(b"content-type")
            || name.eq_ignore_ascii_case(b"content-length")
        {
            return self.add_header_out(name, value);
        }
        let pool = self.pool();
        let (key, value) = (pool.c_bytes(name), pool.c_bytes(value));
        // SAFETY: key and value were copied into the request pool (c_bytes) and live as long
        // as the request; the table is the live request's.
        unsafe {
            if last_wins {
                ffi::apr_table_setn(self.raw.headers_out, key, value);
            } else {
                ffi::apr_table_mergen(self.raw.headers_out, key, value);
            }
        }
    }

    /// Prepares to read the body, de-chunking chunked requests. Err(status) on a bad body.
    pub fn setup_body(&mut self) -> Result<bool, i32> {
        // SAFETY: standard Apache body-reading protocol on the live request.
        let rc = unsafe { ffi::ap_setup_client_block(self.raw, ffi::REQUEST_CHUNKED_DECHUNK) };
        if rc != ffi::OK {
            return Err(rc);
        }
        // SAFETY: as above.
        Ok(unsafe { ffi::ap_should_client_block(self.raw) } != 0)
    }

    /// The body length Content-Length announced, once [`setup_body`](Self::setup_body) ran;
    /// None for a chunked body.
    pub fn declared_body_length(&self) -> Option<u64> {
        if self.raw.read_chunked != 0 {
            None
        } else {
            u64::try_from(self.raw.remaining).ok()
        }
    }

    /// Appends up to `max` body bytes to `out` without zero-filling its buffer first: Ok(0)
    /// at the end, Err on a client error.
    pub fn read_body_into(&mut self, out: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
        out.reserve(max);
        let spare = out.spare_capacity_mut();
        let want = max.min(spare.len());
        // SAFETY: `spare` is writable memory of at least `want` bytes owned by `out`;
        // ap_get_client_block writes at most `want` bytes into it and returns how many.
        let n = unsafe { ffi::ap_get_client_block(self.raw, spare.as_mut_ptr().cast(), want) };
        let n = usize::try_from(n).map_err(|_| client_error("reading the request body failed"))?;
        // SAFETY: the first `n` spare bytes were just written by Apache.
        unsafe { out.set_len(out.len() + n.min(want)) };
        Ok(n)
    }

    /// Writes response bytes; Err when the client has gone.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let len = c_int::try_from(data.len()).map_err(|_| client_error("write too large"))?;
        // SAFETY: data is valid for len bytes; ap_rwrite copies or passes them on before
        // returning.
        let n = unsafe { ffi::ap_rwrite(data.as_ptr().cast(), len, self.raw) };
        if n < 0 {
            Err(client_error("the client connection is gone"))
        } else {
            Ok(())
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        // SAFETY: flushes the live request's output filters.
        if unsafe { ffi::ap_rflush(self.raw) } < 0 {
            Err(client_error("the client connection is gone"))
        } else {
            Ok(())
        }
    }

    /// Sends `len` bytes of the regular file `fd` from `offset` as a file bucket, so Apache
    /// writes it as it writes static files (with sendfile when `sendfile`, else mmap or
    /// reads), possibly after the handler returns (write completion). The request pool owns
    /// `fd` from here: it is closed when the pool is destroyed, which Apache does only after
    /// the whole response has been written (the end-of-request bucket). Err when the client
    /// has gone.
    pub fn send_file(
        &mut self,
        fd: OwnedFd,
        offset: u64,
        len: u64,
        sendfile: bool,
    ) -> std::io::Result<()> {
        let (Ok(start), Ok(length)) = (
            ffi::apr_off_t::try_from(offset),
            ffi::apr_off_t::try_from(len),
        ) else {
            return Err(client_error("file range too large"));
        };
        let mut os_fd: ffi::apr_os_file_t = fd.as_raw_fd();
        // Closed when the request pool goes, after every bucket referring to it is written.
        self.pool().alloc_rust(fd);
        // SAFETY: the request, its pool and its connection's bucket allocator are live for the
        // whole handler; the apr_file_t only borrows the descriptor (APR marks it NOCLEANUP),
        // which the request pool keeps open for as long as any bucket can refer to it.
        unsafe {
            let conn = self.raw.connection;
            if conn.is_null() {
                return Err(client_error("the request has no connection"));
            }
            let alloc = (*conn).bucket_alloc;
            let pool = self.raw.pool;
            let mut file: *mut ffi::apr_file_t = std::ptr::null_mut();
            // Without the sendfile flag Apache's core maps or reads the file (as it does for
            // static files with its default EnableSendfile Off).
            let flags = if sendfile {
                ffi::APR_FOPEN_READ | ffi::APR_FOPEN_SENDFILE_ENABLED
            } else {
                ffi::APR_FOPEN_READ
            } as ffi::apr_int32_t;
            if ffi::apr_os_file_put(&mut file, &mut os_fd, flags, pool) != 0 || file.is_null() {
                return Err(client_error("cannot wrap the file for Apache"));
            }
            let bb = ffi::apr_brigade_create(pool, alloc);
            ffi::apr_brigade_insert_file(bb, file, start, length, pool);
            let rv = ffi::ap_pass_brigade(self.raw.output_filters, bb);
            ffi::apr_brigade_destroy(bb);
            if rv != 0 {
                return Err(client_error("the client connection is gone"));
            }
        }
        Ok(())
    }

    /// The request's protocol version as Apache numbers it (1001 = HTTP/1.1, 2000 = HTTP/2).
    pub fn proto_num(&self) -> i32 {
        self.raw.proto_num
    }

    /// Sends the status line of an interim (1xx) response set with
    /// [`set_status`](Self::set_status) and the headers out straight to the connection (as
    /// a 101 Switching Protocols must go: no body, no end of response).
    pub fn send_interim_response(&mut self) {
        // SAFETY: the live request, its status and status_line set by set_status.
        unsafe { ffi::ap_send_interim_response(self.raw, 1) };
    }

    /// Marks the connection so it is closed after this response (the body is incomplete).
    pub fn abort_connection(&mut self) {
        // SAFETY: connection is the live conn_rec of this request.
        if let Some(c) = unsafe { self.raw.connection.as_mut() } {
            c.keepalive = ffi::ap_conn_keepalive_e_AP_CONN_CLOSE;
            c.aborted = 1;
        }
    }

    /// The client socket's timeout (Apache's `Timeout` unless changed), which bounds each
    /// write of the response to the client.
    pub fn client_socket_timeout(&self) -> Option<std::time::Duration> {
        let sock = self.client_socket()?;
        let mut usec: ffi::apr_interval_time_t = 0;
        // SAFETY: sock is the live client socket of this request's connection; usec is a
        // valid out-parameter.
        let rv = unsafe { ffi::apr_socket_timeout_get(sock, &mut usec) };
        (rv == 0 && usec >= 0).then(|| std::time::Duration::from_micros(usec as u64))
    }

    /// Sets the client socket's timeout (e.g. response-socket-timeout while relaying a body).
    pub fn set_client_socket_timeout(&mut self, timeout: std::time::Duration) {
        if let Some(sock) = self.client_socket() {
            let usec = ffi::apr_interval_time_t::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
            // SAFETY: sock is the live client socket of this request's connection.
            unsafe { ffi::apr_socket_timeout_set(sock, usec) };
        }
    }

    fn client_socket(&self) -> Option<*mut ffi::apr_socket_t> {
        let conn = self.raw.connection;
        if conn.is_null() {
            return None;
        }
        // SAFETY: conn is this request's live conn_rec; ap_get_conn_socket reads its
        // core-module config (the client socket), or returns NULL.
        let sock = unsafe { ffi::ap_get_conn_socket(conn) };
        (!sock.is_null()).then_some(sock)
    }

    /// The client socket's descriptor (the TCP socket, under TLS too), to watch it for a
    /// hangup; `None` when Apache has none for this connection.
    pub fn client_socket_fd(&self) -> Option<std::os::fd::RawFd> {
        let sock = self.client_socket()?;
        let mut fd: ffi::apr_os_sock_t = -1;
        // SAFETY: sock is the live client socket of this request's connection; fd is a
        // valid out-parameter.
        let rv = unsafe { ffi::apr_os_sock_get(&mut fd, sock) };
        (rv == 0 && fd >= 0).then_some(fd)
    }

    pub fn client_aborted(&self) -> bool {
        // SAFETY: as above.
        unsafe { self.raw.connection.as_ref() }.is_some_and(|c| c.aborted != 0)
    }

    /// The request's per-directory config slot of a module.
    ///
    /// # Safety
    /// The slot must hold a `T` (created by that module's dir-config callbacks).
    pub unsafe fn dir_config<T>(&self, module: *const ffi::module) -> Option<&'r T> {
        // SAFETY: caller guarantees the type; per_dir_config lives as long as the request
        // ('r), and a merged dir config is not changed while the request runs.
        unsafe {
            ffi::ap_get_module_config(self.raw.per_dir_config, module)
                .cast::<T>()
                .as_ref()
        }
    }
}
