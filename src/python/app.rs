//! The request driver: load the script, build environ, call the application, send its
//! response (streaming iterators, one flush for lists and tuples, Content-Length truncation,
//! the file_wrapper fast path), always call `close()`, and turn every failure into an
//! [`Outcome`]. No panic leaves [`AppHost::handle`] and the GIL is never left held.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::environ::{self, callable_name};
use super::gil_gate::GilGate;
use super::loader::{self, Loaded, Loader};
use super::log_object::{self, RequestScope, type_name};
use super::request::{Response, SendError, Shared};
use super::start_response::NOT_STARTED;
use super::{
    Outcome, RequestIo, RequestSpec, ScriptReloading, log, log_detached, log_prefix, python_error,
};
use super::{metrics, modwsgi, response_end, subinterp, telemetry};
use crate::logging::Level;
use crate::util::now_us;

/// Loaded WSGI scripts of this process. `Send + Sync`: one per process, shared by all worker
/// threads.
#[derive(Default)]
pub struct AppHost {
    /// Also loads the phase scripts (`phase_scripts.rs`).
    pub(super) loader: Loader,
    /// Counts request threads waiting for the GIL; a daemon's idle threads ask it before
    /// they take new work.
    gil_gate: GilGate,
}

/// Why sending a response stopped early.
enum Failure {
    /// The application (or its response) is at fault: log the traceback.
    App(PyErr),
    /// The client connection failed.
    Client(std::io::Error),
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Failure {
        Failure::App(e)
    }
}

fn send_failure(e: SendError) -> Failure {
    match e {
        SendError::NotStarted => {
            Failure::App(pyo3::exceptions::PyRuntimeError::new_err(NOT_STARTED))
        }
        SendError::Expired => Failure::Client(std::io::Error::other("the request has ended")),
        SendError::Io(e) => Failure::Client(e),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    crate::util::panic_message(payload).unwrap_or_else(|| "unknown panic".to_string())
}

impl AppHost {
    pub fn new() -> AppHost {
        AppHost::default()
    }

    /// Admission to Python under GIL contention (see [`GilGate`]).
    pub fn gil_gate(&self) -> &GilGate {
        &self.gil_gate
    }

    /// Preloads a script (WSGIImportScript / preloading) before serving. Call without the GIL.
    /// `Err` = the message (with traceback) already logged.
    pub fn preload(&self, script_path: &Path, app_group: &str) -> Result<(), String> {
        match catch_unwind(AssertUnwindSafe(|| self.loader.get(script_path, app_group))) {
            Ok(result) => result.map(|_| ()),
            Err(panic) => {
                let script_path = script_path.display();
                let msg = format!(
                    "{}Internal error (panic: {}) while preloading WSGI script '{script_path}'.",
                    log_prefix(),
                    panic_text(&*panic)
                );
                log(Level::Error, &format!("RW0081: {msg}"));
                Err(msg)
            }
        }
    }

    /// Loads a preloaded ASGI script's `callable` and runs its lifespan.startup (see
    /// `asgi.rs`), before the daemon takes requests. Call without the GIL. `Err`: logged; the
    /// daemon must not be put into service.
    pub fn asgi_startup(
        &self,
        script_path: &Path,
        app_group: &str,
        callable: &str,
        limit: std::time::Duration,
    ) -> Result<(), String> {
        let loaded = self.loader.get(script_path, app_group)?;
        let started = catch_unwind(AssertUnwindSafe(|| {
            subinterp::attach(app_group, |py| {
                let module = loaded.module.bind(py);
                let adapter =
                    super::asgi::startup(py, module, script_path, app_group, callable, limit)?;
                // Its first request may take the native path already.
                if let Some(adapter) = adapter {
                    let registered = super::asgi_native::register_app(
                        py,
                        script_path,
                        app_group,
                        callable,
                        &loaded,
                        &adapter,
                    );
                    if let Err(e) = registered {
                        native_path_unavailable(py, script_path, app_group, &e);
                    }
                }
                Ok(())
            })
        }));
        match started {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(e),
            Err(panic) => Err(format!("panic: {}", panic_text(&*panic))),
        }
    }

    /// Has this script (of this application group) changed on disk since it was loaded?
    /// No GIL: what a daemon checks per request with script reloading on, as mod_wsgi checks
    /// the script of the request only. `seen_mtime_us`: the mtime Apache's own stat found for
    /// it (0 = none); when it is the loaded version's, that settles it without a stat here.
    pub fn script_changed(&self, script_path: &Path, app_group: &str, seen_mtime_us: u64) -> bool {
        self.loader
            .script_changed(script_path, app_group, seen_mtime_us)
    }

    /// Is this script (of this application group) loaded here by a load that began before
    /// `t_us` (µs since the Unix epoch)? No GIL, no stat: what a daemon checks for a request
    /// resent after another process found the script needed a reload.
    pub fn script_loaded_before(&self, script_path: &Path, app_group: &str, t_us: u64) -> bool {
        self.loader.loaded_before(script_path, app_group, t_us)
    }

    /// (script, application group) of every script loaded so far: what a replacement
    /// process imports before it takes over.
    pub fn loaded_scripts(&self) -> Vec<(PathBuf, String)> {
        self.loader.loaded()
    }

    /// Serves one request end to end. Call without the GIL. Never panics; never leaves the GIL
    /// held; every `io` call happens detached from Python, and no Python object can reach `io`
    /// after this returns.
    pub fn handle(&self, spec: &RequestSpec<'_>, io: &mut dyn RequestIo) -> Outcome {
        subinterp::keep_thread_state();
        let slot = metrics::thread_slot();
        let began_us = metrics::request_began(slot);
        telemetry::request_began(slot, began_us, metrics::active_count(), spec);
        let observer = metrics::observer();
        if let Some(o) = observer {
            o.began();
        }
        let recording = metrics::recording();
        let shared = Shared::new(recording);
        if recording {
            let _ = shared.cpu_start.set(metrics::thread_cpu());
        }
        let outcome = shared.with_bound_io(io, || self.handle_bound(spec, &shared));
        let ended_us = now_us();
        let finished =
            recording.then(|| finished(spec, &shared, &outcome, slot, began_us, ended_us));
        metrics::request_ended(slot, began_us, ended_us, finished.as_ref());
        telemetry::request_ended(slot, finished.as_ref(), metrics::active_count());
        if let Some(o) = observer {
            let status = match finished.as_ref() {
                Some(f) => f.status,
                None => sent_status(&shared, &outcome),
            };
            o.ended(&metrics::RequestSummary {
                status,
                times: spec.times,
                began_us,
                ended_us,
                resent: outcome == Outcome::ReloadRequired,
            });
        }
        outcome
    }

    /// [`AppHost::handle`] with the io bound: a panic becomes a 500 (if nothing was sent) and
    /// a log line.
    fn handle_bound(&self, spec: &RequestSpec<'_>, shared: &Arc<Shared>) -> Outcome {
        let served = catch_unwind(AssertUnwindSafe(|| {
            let outcome = self.serve(spec, shared);
            match shared.send_deferred() {
                Err(SendError::Io(_)) if outcome == Outcome::Completed => Outcome::ClientGone,
                _ => outcome,
            }
        }));
        match served {
            Ok(outcome) => outcome,
            Err(panic) => {
                log(
                    Level::Error,
                    &format!(
                        "RW0082: {}Internal error (panic: {}) while processing WSGI script '{}'.",
                        log_prefix(),
                        panic_text(&*panic),
                        spec.script_path.display()
                    ),
                );
                let head_sent = shared.response().head_sent;
                if !head_sent {
                    let _ = catch_unwind(AssertUnwindSafe(|| response_end::send_500(shared)));
                }
                Outcome::AppError { head_sent }
            }
        }
    }

    fn serve(&self, spec: &RequestSpec<'_>, shared: &Arc<Shared>) -> Outcome {
        let remote = log_object::remote_prefix(spec.env);
        let _scope = RequestScope::enter(remote.clone());
        let (path, group) = (spec.script_path, spec.app_group);
        let Ok(loaded) = self.loader.get(path, group) else {
            return Outcome::LoadFailed;
        };
        // An ASGI HTTP request whose application has run here before and whose body is
        // here: served without the GIL on this thread (`asgi_native.rs`).
        if let Some(app) = super::asgi_native::lookup(spec, &loaded) {
            if let Some(body) = super::asgi_native::body_ahead(shared) {
                shared
                    .application_start_us
                    .store(now_us(), Ordering::Relaxed);
                let served = super::asgi_native::serve(spec, shared, app, body);
                if let super::asgi_native::Served::Done(outcome) = served {
                    shared
                        .application_finish_us
                        .store(now_us(), Ordering::Relaxed);
                    return outcome;
                }
            }
        }
        // mod_wsgi's reload checks run in the same hold of the GIL as the request; the stat
        // they need is done before, without it. A daemon has just compared this request's
        // script file with its load-time mtime (`script_changed`): no second stat there.
        let file_mtime = match spec.script_reloading {
            ScriptReloading::Off => None,
            ScriptReloading::InPlace => Some(loader::file_mtime(path)),
            ScriptReloading::ReplaceProcess => Some(Ok(loaded.mtime)),
        };
        let asked = shared.is_timed().then(Instant::now);
        let queued = self.gil_gate.queue();
        let checked = subinterp::attach(group, |py| {
            let inside = queued.enter();
            if let Some(asked) = asked {
                shared.stats.gil_wait(asked.elapsed());
            }
            if let Some(file_mtime) = &file_mtime {
                if let Some(why) = loader::reload_reason(py, &loaded, file_mtime, path, group) {
                    return Err(why);
                }
            }
            let outcome = call_application(py, spec, shared, &loaded, remote.clone());
            // Still attached: no thread queued for the GIL can take it before this counts.
            self.gil_gate.request_done(inside);
            Ok(outcome)
        });
        let why = match checked {
            Ok(Ok(outcome)) => return outcome,
            Ok(Err(why)) => why,
            // The group's interpreter could not be made (logged).
            Err(_) => return Outcome::LoadFailed,
        };
        if spec.script_reloading == ScriptReloading::ReplaceProcess {
            super::py_log_at!(
                Level::Info,
                "RW0083: {}Forcing restart of daemon process '{}' due to modification of script \
                 '{}'. Reason: {why}.",
                log_prefix(),
                super::settings::process_info().process_group,
                path.display()
            );
            return Outcome::ReloadRequired;
        }
        // In place: this request runs the freshly imported script (not checked again).
        self.loader.discard(path, group, &loaded, &why);
        let _ = subinterp::attach(group, |_py| drop(loaded));
        match self.loader.get(path, group) {
            Ok(fresh) => subinterp::attach(group, |py| {
                call_application(py, spec, shared, &fresh, remote)
            })
            .unwrap_or(Outcome::LoadFailed),
            Err(_) => Outcome::LoadFailed,
        }
    }
}

/// What the metrics window records of a request that ended.
/// The status the client gets: the app's, or 500 when it failed before its head went out.
fn sent_status(shared: &Shared, outcome: &Outcome) -> Option<u16> {
    match outcome {
        Outcome::LoadFailed | Outcome::AppError { head_sent: false } => Some(500),
        _ => shared.response().status.as_ref().map(|(code, _)| *code),
    }
}

fn finished(
    spec: &RequestSpec<'_>,
    shared: &Shared,
    outcome: &Outcome,
    slot: usize,
    began_us: u64,
    ended_us: u64,
) -> metrics::Finished {
    let (status, sent) = {
        let resp = shared.response();
        (resp.status.as_ref().map(|(code, _)| *code), resp.sent)
    };
    let status = match outcome {
        Outcome::LoadFailed => Some(500),
        _ => status,
    };
    let cpu_end = metrics::thread_cpu();
    let cpu = shared.cpu_start.get().map_or((0.0, 0.0), |start| {
        (cpu_end.0 - start.0, cpu_end.1 - start.1)
    });
    metrics::Finished {
        slot,
        began_us,
        ended_us,
        times: spec.times,
        application_start_us: shared.application_start_us.load(Ordering::Relaxed),
        application_finish_us: shared.application_finish_us.load(Ordering::Relaxed),
        status,
        io: shared
            .stats
            .totals(shared.input_length.load(Ordering::Relaxed), sent),
        cpu,
    }
}

fn call_application(
    py: Python<'_>,
    spec: &RequestSpec<'_>,
    shared: &Arc<Shared>,
    loaded: &Arc<Loaded>,
    remote: Option<Arc<str>>,
) -> Outcome {
    let name = callable_name(spec);
    let module = loaded.module.bind(py);
    let app = match module.dict().get_item(name) {
        Ok(Some(app)) => app,
        _ => {
            let msg = format!(
                "{}callable '{name}' not found in WSGI script '{}'.",
                log_prefix(),
                spec.script_path.display()
            );
            log_detached(py, Level::Error, &format!("RW0084: {msg}"));
            return Outcome::LoadFailed;
        }
    };
    // An ASGI application runs through its adapter, a WSGI callable (`asgi.rs`).
    let app = if spec.asgi {
        match super::asgi::adapter(py, &app, spec) {
            Ok(adapter) => {
                if let Err(e) = super::asgi_native::register(py, spec, loaded, &adapter) {
                    // The request runs here all the same; later ones too.
                    native_path_unavailable(py, spec.script_path, spec.app_group, &e);
                }
                adapter
            }
            Err(()) => return Outcome::LoadFailed,
        }
    } else {
        app
    };
    let state = match super::interp_state::current(py) {
        Ok(state) => state,
        Err(e) => return fail(py, spec, shared, Failure::App(e)),
    };
    let errors = match log_object::request_errors(py, &state, remote) {
        Ok(errors) => errors,
        Err(e) => return fail(py, spec, shared, Failure::App(e)),
    };
    let outcome = run_app(py, spec, shared, app, &errors.stream, &state);
    // A partial last line is logged now, with this request's address.
    match errors
        .stream
        .call_method0(state.fixed(py, environ::Fixed::flush))
    {
        Ok(_) => log_object::recycle_errors(py, &state, errors),
        Err(e) => log_exception(py, spec, &e),
    }
    outcome
}

/// The ASGI native path could not be set up for an application (its requests then take the
/// WSGI-shaped path).
fn native_path_unavailable(py: Python<'_>, script_path: &Path, app_group: &str, err: &PyErr) {
    let msg = python_error(py, err, script_path, app_group);
    log_detached(
        py,
        Level::Error,
        &format!(
            "RW0351: {}ASGI native path not available, requests stay on the WSGI-shaped path: \
             {msg}",
            log_prefix()
        ),
    );
}

fn run_app<'py>(
    py: Python<'py>,
    spec: &RequestSpec<'_>,
    shared: &Arc<Shared>,
    mut app: Bound<'py, PyAny>,
    errors: &Bound<'py, PyAny>,
    state: &super::interp_state::InterpState,
) -> Outcome {
    let events = modwsgi::has_event_subscribers(py);
    if events {
        // Subscribers get the request's I/O times, GIL waits and CPU times.
        shared.timed.store(true, Ordering::Relaxed);
        let _ = shared.cpu_start.set(metrics::thread_cpu());
    }
    let _context = modwsgi::RequestContext::enter(events.then(|| request_id(spec)).flatten());
    let application_start_us = now_us();
    shared
        .application_start_us
        .store(application_start_us, Ordering::Relaxed);
    let prepared = (|| -> PyResult<_> {
        let input = super::input::new(state, py, Arc::clone(shared))?;
        let events = super::start_response::Events {
            has_subscribers: modwsgi::has_event_subscribers,
            publish: modwsgi::publish_response_started,
        };
        let start = super::start_response::new(state, py, Arc::clone(shared), events)?;
        let environ = environ::build(py, spec, &input, errors, state, application_start_us)?;
        if spec.websocket {
            let ws = super::websocket::new(state, py, Arc::clone(shared))?;
            environ.set_item(PyString::new(py, "mod_rwsgi.websocket"), ws)?;
        }
        Ok((environ, start))
    })();
    let (environ, start) = match prepared {
        Ok(p) => p,
        Err(e) => return fail(py, spec, shared, Failure::App(e)),
    };
    if events {
        app = publish_started(py, spec, &environ, app);
    }
    let result = match app.call1((&environ, &start)) {
        Ok(result) => result,
        Err(e) => {
            shared
                .application_finish_us
                .store(now_us(), Ordering::Relaxed);
            let outcome = fail(py, spec, shared, Failure::App(e));
            if events {
                publish_finished(py, spec, shared);
            }
            return outcome;
        }
    };
    // A list or tuple has no close(); looking for one on Python before 3.13 raises and
    // clears an AttributeError.
    let has_close = if result.is_exact_instance_of::<pyo3::types::PyList>()
        || result.is_exact_instance_of::<pyo3::types::PyTuple>()
    {
        Ok(false)
    } else {
        result.hasattr("close")
    };
    // Nothing of the app's runs after the body (no close(), no event subscriber): the end of
    // the response then goes out together with its last bytes, in one write.
    let ends_with_body = !events && matches!(has_close, Ok(false));
    let sent = respond(py, shared, &result, ends_with_body);
    let close_error = match has_close {
        Ok(true) => result.call_method0("close").err(),
        Ok(false) => None,
        Err(e) => Some(e),
    };
    drop(result);
    shared
        .application_finish_us
        .store(now_us(), Ordering::Relaxed);
    let outcome = match sent {
        Ok(()) => check_promised_length(py, spec, shared),
        Err(failure) => fail(py, spec, shared, failure),
    };
    if let Some(e) = close_error.filter(|e| !modwsgi::is_request_timeout(py, e)) {
        // The response itself is settled; a close() failure is only logged.
        log_exception(py, spec, &e);
        if events {
            modwsgi::publish_exception(py, &e);
        }
    }
    if events {
        publish_finished(py, spec, shared);
    }
    outcome
}

/// A string CGI variable of the request.
fn env_value<'a>(spec: &RequestSpec<'a>, name: &[u8]) -> Option<&'a [u8]> {
    spec.env.get(name)
}

/// `mod_wsgi.request_id`: Apache's log id of the request.
fn request_id(spec: &RequestSpec<'_>) -> Option<String> {
    env_value(spec, b"mod_wsgi.request_id").map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The fields request_started and request_finished share: thread, Apache child, instants.
fn common_fields(
    spec: &RequestSpec<'_>,
    event: &Bound<'_, PyDict>,
    application_start_us: u64,
) -> PyResult<()> {
    let seconds = |us: u64| us as f64 / 1e6;
    event.set_item("thread_id", metrics::thread_slot() + 1)?;
    let server_pid = env_value(spec, b"mod_wsgi.server_pid")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok())
        .unwrap_or_else(std::process::id);
    event.set_item("server_pid", server_pid)?;
    event.set_item("request_start", seconds(spec.times.request_start_us))?;
    event.set_item("queue_start", seconds(spec.times.queue_start_us))?;
    event.set_item("daemon_start", seconds(spec.times.daemon_start_us))?;
    event.set_item("application_start", seconds(application_start_us))?;
    Ok(())
}

fn publish_started<'py>(
    py: Python<'py>,
    spec: &RequestSpec<'_>,
    environ: &Bound<'py, PyDict>,
    app: Bound<'py, PyAny>,
) -> Bound<'py, PyAny> {
    let event = PyDict::new(py);
    let filled = (|| -> PyResult<()> {
        modwsgi::set_request_fields(py, &event)?;
        event.set_item("request_environ", environ)?;
        event.set_item("application_object", &app)?;
        event.set_item("callable_object", callable_name(spec))?;
        // The same instant as environ['mod_wsgi.application_start'], as in mod_wsgi.
        let start_us = match environ.get_item(pyo3::types::PyString::intern(
            py,
            "mod_wsgi.application_start",
        ))? {
            Some(start) => (start.extract::<f64>()? * 1e6) as u64,
            None => now_us(),
        };
        common_fields(spec, &event, start_us)?;
        event.set_item("daemon_connects", spec.daemon_attempts.connects)?;
        event.set_item("daemon_restarts", spec.daemon_attempts.restarts)?;
        Ok(())
    })();
    if filled.is_err() {
        return app;
    }
    modwsgi::publish(py, "request_started", &event);
    // A subscriber may wrap the application, as mod_wsgi allows.
    match event.get_item("application_object") {
        Ok(Some(wrapped)) => wrapped,
        _ => app,
    }
}

fn publish_finished(py: Python<'_>, spec: &RequestSpec<'_>, shared: &Shared) {
    let (status, sent) = {
        let resp = shared
            .response
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        (resp.status.as_ref().map_or(0, |(code, _)| *code), resp.sent)
    };
    let io = shared
        .stats
        .totals(shared.input_length.load(Ordering::Relaxed), sent);
    let start_us = shared.application_start_us.load(Ordering::Relaxed);
    let finish_us = shared.application_finish_us.load(Ordering::Relaxed);
    let cpu_end = metrics::thread_cpu();
    let (user, system) = shared.cpu_start.get().map_or((0.0, 0.0), |s| {
        ((cpu_end.0 - s.0).max(0.0), (cpu_end.1 - s.1).max(0.0))
    });
    let event = PyDict::new(py);
    let filled = (|| -> PyResult<()> {
        modwsgi::set_request_fields(py, &event)?;
        common_fields(spec, &event, start_us)?;
        event.set_item("application_finish", finish_us as f64 / 1e6)?;
        event.set_item(
            "application_time",
            finish_us.saturating_sub(start_us) as f64 / 1e6,
        )?;
        event.set_item("input_reads", io.input_reads)?;
        event.set_item("input_length", io.input_bytes)?;
        event.set_item("input_time", io.input_time)?;
        event.set_item("output_writes", io.output_writes)?;
        event.set_item("output_length", io.output_bytes)?;
        event.set_item("output_time", io.output_time)?;
        event.set_item("status", status)?;
        event.set_item("cpu_user_time", user)?;
        event.set_item("cpu_system_time", system)?;
        event.set_item("cpu_time", user + system)?;
        event.set_item("gil_wait_time", io.gil_wait_time)?;
        event.set_item("gil_wait_count", io.gil_waits)?;
        Ok(())
    })();
    if filled.is_ok() {
        modwsgi::publish(py, "request_finished", &event);
    }
}

fn response_state<'a>(py: Python<'_>, shared: &'a Shared) -> std::sync::MutexGuard<'a, Response> {
    shared
        .response
        .lock_py_attached(py)
        .unwrap_or_else(|e| e.into_inner())
}

/// Sends the application's result. `ends_with_body`: the response's end follows at once, so
/// its last bytes need no flush of their own.
fn respond(
    py: Python<'_>,
    shared: &Shared,
    result: &Bound<'_, PyAny>,
    ends_with_body: bool,
) -> Result<(), Failure> {
    let state = super::interp_state::current(py)?;
    if result.is_instance(state.file_wrapper.bind(py))? && send_file(py, shared, result)? {
        return Ok(());
    }
    if let Ok(list) = result.cast::<PyList>() {
        return send_sequence(py, shared, list.iter().collect(), ends_with_body);
    }
    if let Ok(tuple) = result.cast::<PyTuple>() {
        return send_sequence(py, shared, tuple.iter().collect(), ends_with_body);
    }
    for item in result.try_iter()? {
        let item = item?;
        let bytes = body_bytes(&item)?;
        let data: &[u8] = bytes.as_bytes();
        if data.is_empty() {
            continue;
        }
        shared
            .detach(py, || shared.send(data, true))
            .map_err(send_failure)?;
        if response_state(py, shared).length_reached() {
            break;
        }
    }
    shared
        .detach(py, || finish(shared, ends_with_body))
        .map_err(send_failure)
}

fn body_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "response iterable must yield bytes, not {}",
            type_name(item)
        ))
    })
}

/// A list or tuple: every item is checked first, then all are sent in one detached section
/// and flushed once, or, when the response ends with them and they are small, deferred until
/// the request is done with Python. An item that is not bytes ends the response there, as
/// in a generator (mod_wsgi 6): the items before it are sent and flushed, then the error.
fn send_sequence(
    py: Python<'_>,
    shared: &Shared,
    items: Vec<Bound<'_, PyAny>>,
    ends_with_body: bool,
) -> Result<(), Failure> {
    let mut chunks: Vec<&[u8]> = Vec::with_capacity(items.len());
    for item in &items {
        match body_bytes(item) {
            Ok(bytes) => chunks.push(bytes.as_bytes()),
            Err(e) => {
                send_before_failure(py, shared, &chunks)?;
                return Err(Failure::App(e));
            }
        }
    }
    // Bodies up to the io's limit that end the response are copied and sent after the
    // Python work (see [`Response::defer`]); larger ones are sent from the Python objects,
    // detached.
    let defer_limit = shared.defer_limit.load(Ordering::Relaxed);
    if ends_with_body && chunks.iter().map(|c| c.len()).sum::<usize>() <= defer_limit {
        let mut resp = response_state(py, shared);
        // Even with nothing to send, the head goes out with the response's end.
        resp.defer(&[]).map_err(send_failure)?;
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            resp.defer(chunk).map_err(send_failure)?;
            if resp.length_reached() {
                break;
            }
        }
        return Ok(());
    }
    shared
        .detach(py, || {
            send_chunks(shared, &chunks)?;
            finish(shared, ends_with_body)
        })
        .map_err(send_failure)
}

/// Sends the non-empty `chunks`, stopping once the response's Content-Length is reached.
/// Call detached.
fn send_chunks(shared: &Shared, chunks: &[&[u8]]) -> Result<(), SendError> {
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        shared.send(chunk, false)?;
        if shared.response().length_reached() {
            break;
        }
    }
    Ok(())
}

/// The items of a sequence before a bad one: sent and flushed, so the client has them before
/// the response is aborted. Nothing non-empty: nothing is sent (the failure is then a 500).
fn send_before_failure(py: Python<'_>, shared: &Shared, chunks: &[&[u8]]) -> Result<(), Failure> {
    if chunks.iter().all(|c| c.is_empty()) {
        return Ok(());
    }
    shared
        .detach(py, || {
            send_chunks(shared, chunks)?;
            shared.flush()
        })
        .map_err(send_failure)
}

/// End of the body: the head if nothing was sent yet, then a flush unless the response's end
/// follows at once (which writes out what is buffered anyway).
fn finish(shared: &Shared, ends_with_body: bool) -> Result<(), SendError> {
    let head_sent = shared.response().head_sent;
    match (head_sent, ends_with_body) {
        (true, true) => Ok(()),
        (true, false) => shared.flush(),
        (false, _) => shared.send(&[], !ends_with_body),
    }
}

/// The file_wrapper fast path. `Ok(false)` = use iteration instead.
fn send_file(py: Python<'_>, shared: &Shared, wrapper: &Bound<'_, PyAny>) -> Result<bool, Failure> {
    let content_length = {
        let resp = response_state(py, shared);
        if resp.status.is_none() || resp.head_sent || resp.sent > 0 {
            return Ok(false);
        }
        resp.content_length
    };
    let Some(span) = super::file_wrapper::file_span(wrapper) else {
        return Ok(false);
    };
    let available = span.size.saturating_sub(span.offset);
    let len = content_length.map_or(available, |cl| cl.min(available));
    shared
        .detach(py, || shared.send_file(span.fd, span.offset, len))
        .map_err(send_failure)
}

fn log_exception(py: Python<'_>, spec: &RequestSpec<'_>, err: &PyErr) {
    response_end::log_app_exception(py, spec.script_path, spec.app_group, err);
}

/// Logs a failure and settles the response: a 500 if nothing was sent, else truncation.
fn fail(py: Python<'_>, spec: &RequestSpec<'_>, shared: &Shared, failure: Failure) -> Outcome {
    let (head_sent, io_failed) = {
        let resp = response_state(py, shared);
        (resp.head_sent, resp.io_failed)
    };
    match failure {
        Failure::Client(e) => {
            super::py_log_detached_at!(
                py,
                Level::Info,
                "RW0086: {}Client connection closed while sending the response of WSGI script \
                 '{}': {e}.",
                log_prefix(),
                spec.script_path.display()
            );
            Outcome::ClientGone
        }
        // The app let the OSError from a failed write() propagate.
        Failure::App(e) if io_failed => {
            let why = e.to_string();
            py.detach(|| response_end::log_write_failed(spec.script_path, &why));
            Outcome::ClientGone
        }
        // mod_wsgi.RequestTimeout, from interrupt-timeout or raised by the app itself: the
        // request timed out, which is not an application error (no traceback); mod_wsgi 6's
        // info lines, which its own test suite matches.
        Failure::App(e) if modwsgi::is_request_timeout(py, &e) => {
            py.detach(|| response_end::log_request_timeout(head_sent));
            if !head_sent {
                py.detach(|| response_end::send_gateway_timeout(shared));
            }
            Outcome::AppError { head_sent }
        }
        Failure::App(e) => {
            log_exception(py, spec, &e);
            if modwsgi::has_event_subscribers(py) {
                modwsgi::publish_exception(py, &e);
            }
            if !head_sent {
                py.detach(|| response_end::send_500(shared));
            }
            Outcome::AppError { head_sent }
        }
    }
}

/// A response whose body fell short of its Content-Length: the client would wait for the
/// rest, and on a kept-alive connection read the next response as that rest. Treated as a
/// failure after the head (the connection ends, so the client sees the body is incomplete).
/// HEAD requests and 1xx/204/304 responses have no body to check.
fn check_promised_length(py: Python<'_>, spec: &RequestSpec<'_>, shared: &Shared) -> Outcome {
    let Some((sent, promised)) = response_end::shortfall(spec, &response_state(py, shared)) else {
        return Outcome::Completed;
    };
    // Nothing sent yet (an empty body): send the head, so the client sees what was promised.
    if let Err(SendError::Io(_)) = py.detach(|| shared.send(b"", true)) {
        return Outcome::ClientGone;
    }
    py.detach(|| response_end::log_short_body(spec.script_path, sent, promised));
    Outcome::AppError { head_sent: true }
}
