//! Embedded mode: the WSGI app runs inside the Apache child itself, through the same Python
//! host as daemon mode (`python::AppHost`), with the request and response going straight
//! through Apache's own body reader and output filters.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::apache::state;
use crate::ffi;
use crate::python::{self, AppHost, InterpreterSettings, Outcome, RequestIo, RequestSpec};

/// Python in this Apache child: started once (at child_init or on the first embedded
/// request), never in the Apache parent.
static HOST: OnceLock<Result<AppHost, String>> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());
/// Embedded requests running in this child now: Python is never stopped under one.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// What embedded mode needs from the server-wide configuration: the Python settings every
/// process shares (built once by `module`); the MPM's limits are added in the child.
pub type EmbeddedSettings = InterpreterSettings;

fn settings_for_this_mpm(s: &EmbeddedSettings) -> InterpreterSettings {
    let threads = state::mpm_query(ffi::AP_MPMQ_MAX_THREADS)
        .unwrap_or(1)
        .max(1) as u32;
    let processes = state::mpm_query(ffi::AP_MPMQ_MAX_DAEMONS)
        .unwrap_or(1)
        .max(1) as u32;
    InterpreterSettings {
        // As mod_wsgi: the MPM's limits decide (prefork: many processes, one thread).
        processes,
        processes_given: processes > 1,
        threads: if state::mpm_query(ffi::AP_MPMQ_IS_THREADED).unwrap_or(0) == 0 {
            1
        } else {
            threads
        },
        apache_version: state::server_version(),
        ..s.clone()
    }
}

/// Starts Python in this Apache child if it is not running yet.
pub fn ensure_python(s: &EmbeddedSettings) -> Result<&'static AppHost, String> {
    if let Some(done) = HOST.get() {
        return done.as_ref().map_err(Clone::clone);
    }
    let _guard = INIT_LOCK
        .lock()
        .map_err(|_| "embedded Python start-up lock poisoned")?;
    let result = HOST.get_or_init(|| {
        python::initialize(&settings_for_this_mpm(s))
            .map(|()| AppHost::new())
            .map_err(|e| {
                log::process(Level::Crit, &format!("RW0062: mod_rwsgi (embedded): {e}"));
                e
            })
    });
    result.as_ref().map_err(Clone::clone)
}

/// Stops Python as this Apache child exits (its pool cleanup), as mod_wsgi does: the
/// `subscribe_shutdown` callbacks, then, unless WSGIDestroyInterpreter is Off, atexit handlers
/// and finalisation. Apache calls it from the child's main thread once its worker threads
/// are joined; should a request still be running (prefork stopping mid-request), Python is
/// left alone rather than finalised under it.
pub fn stop_python() {
    if !matches!(HOST.get(), Some(Ok(_))) {
        return;
    }
    let running = IN_FLIGHT.load(Ordering::SeqCst);
    if running > 0 {
        log::process(
            Level::Info,
            &format!(
                "RW0063: mod_rwsgi (embedded): Apache child {} exits with {running} request(s) running; \
                 Python is not shut down (no shutdown callbacks, no atexit handlers).",
                std::process::id()
            ),
        );
        return;
    }
    python::shutdown();
}

/// Counts a running request in [`IN_FLIGHT`] while alive.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The Python host's view of a request in this Apache child.
struct ApacheIo {
    r: *mut ffi::request_rec,
    /// WSGIEnableSendfile.
    sendfile: bool,
}

// SAFETY: the host calls these methods only from the thread running `serve` (it detaches
// from Python but never hands `io` to another thread), and only while `serve` runs, during
// which Apache keeps the request alive.
unsafe impl Send for ApacheIo {}

impl ApacheIo {
    fn req(&mut self) -> Request<'_> {
        // SAFETY: see the Send note: the request is live and used by this thread only.
        unsafe { Request::from_raw(self.r) }.expect("request pointer is never null")
    }
}

impl RequestIo for ApacheIo {
    fn read_body(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.req()
            .read_body_into(&mut buf, max.clamp(1, 1024 * 1024))?;
        Ok(buf)
    }

    fn send_head(
        &mut self,
        status: u16,
        reason: &[u8],
        headers: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<()> {
        let mut r = self.req();
        r.set_status(status, reason);
        for (k, v) in headers {
            r.add_header_out(k, v);
        }
        Ok(())
    }

    fn send_body(&mut self, data: &[u8]) -> io::Result<()> {
        self.req().write(data)
    }

    /// The response's last bytes, gathered after the Python work: written and flushed at
    /// once, as mod_wsgi flushes its writes. The client then has the response while Apache
    /// still logs and frees the request, so on a kept-alive connection its next request is
    /// often there when Apache looks for one after the handler: this worker serves it
    /// straight away instead of handing the connection to the MPM's listener (a poll and
    /// two thread wake-ups). Unflushed, the bytes would wait for the write completion that
    /// follows that look.
    fn send_body_owned(&mut self, data: Vec<u8>) -> io::Result<()> {
        let mut r = self.req();
        r.write(&data)?;
        r.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.req().flush()
    }

    /// Apache copies a write smaller than its 8000-byte buffer anyway and passes a larger
    /// one on as it is: a larger body is written from the Python objects (with the GIL
    /// released, as mod_wsgi writes) rather than copied once more first.
    fn defer_limit(&self) -> usize {
        8000
    }

    fn send_file(&mut self, fd: std::os::fd::RawFd, offset: u64, len: u64) -> io::Result<bool> {
        // Apache may write the file after this returns; Python keeps its own descriptor.
        // SAFETY: `fd` is open for the duration of this call (the RequestIo contract).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let own = borrowed.try_clone_to_owned()?;
        let sendfile = self.sendfile;
        self.req()
            .send_file(own, offset, len, sendfile)
            .map(|()| true)
    }
}

/// Runs the request in this process. Returns Apache's handler result.
pub fn serve(
    r: &mut Request<'_>,
    settings: &EmbeddedSettings,
    spec: &RequestSpec<'_>,
    sendfile: bool,
) -> i32 {
    let host = match ensure_python(settings) {
        Ok(h) => h,
        Err(e) => {
            log::request(
                r,
                Level::Error,
                &format!("RW0064: mod_rwsgi (embedded): {e}"),
            );
            return ffi::HTTP_INTERNAL_SERVER_ERROR;
        }
    };
    let mut io = ApacheIo {
        r: r.as_mut_ptr(),
        sendfile,
    };
    let in_flight = InFlight::enter();
    let outcome = host.handle(spec, &mut io);
    drop(in_flight);
    match outcome {
        Outcome::Completed | Outcome::AppError { head_sent: false } => ffi::OK,
        // The app is unavailable until its script loads (a retry may succeed).
        // ReloadRequired is for daemons (embedded mode reloads in place); either way, the
        // app is unavailable for this request and a retry may succeed.
        Outcome::LoadFailed | Outcome::ReloadRequired => ffi::HTTP_SERVICE_UNAVAILABLE,
        Outcome::ClientGone | Outcome::AppError { head_sent: true } => {
            r.abort_connection();
            ffi::OK
        }
    }
}
