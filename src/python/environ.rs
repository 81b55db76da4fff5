//! The WSGI environ: CGI byte pairs → latin-1 `str` (PEP 3333), plus the wsgi.* and
//! mod_wsgi.* keys of mod_wsgi 6 (the string ones, such as `mod_wsgi.request_id`, arrive as
//! CGI pairs from Apache; the version tuples, timing floats and thread id are added here). The per-process constant part is built once and copied per request; keys
//! are interned.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyType};

use super::interp_state::RememberedValue;
use super::settings::process_info;
use super::{MOD_WSGI_VERSION, RequestSpec};

/// The keys whose values are the same for every request of this process, made once per
/// interpreter (`interp_state.rs`) with that interpreter's `file_wrapper` class.
pub(crate) fn new_base(py: Python<'_>, file_wrapper: &Bound<'_, PyType>) -> PyResult<Py<PyDict>> {
    let info = process_info();
    let d = PyDict::new(py);
    d.set_item(PyString::intern(py, "wsgi.version"), (1, 0))?;
    d.set_item(PyString::intern(py, "wsgi.input_terminated"), true)?;
    d.set_item(PyString::intern(py, "wsgi.multithread"), info.multithread)?;
    d.set_item(PyString::intern(py, "wsgi.multiprocess"), info.multiprocess)?;
    d.set_item(PyString::intern(py, "wsgi.run_once"), info.run_once)?;
    d.set_item(PyString::intern(py, "wsgi.file_wrapper"), file_wrapper)?;
    d.set_item(
        PyString::intern(py, "mod_wsgi.process_group"),
        info.process_group.as_str(),
    )?;
    d.set_item(PyString::intern(py, "mod_wsgi.version"), MOD_WSGI_VERSION)?;
    d.set_item(PyString::intern(py, "apache.version"), info.apache_version)?;
    Ok(d.unbind())
}

/// latin-1 bytes → str: CPython's own latin-1 decoder (one pass over ASCII bytes, then a
/// copy), as mod_wsgi converts the CGI variables.
pub(crate) fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // Any length a slice can have fits in isize.
    let len = bytes.len() as pyo3::ffi::Py_ssize_t;
    // SAFETY: the GIL is held (`py`); the pointer and length describe `bytes`, which latin-1
    // decodes whatever they hold; the result is a new reference to a str (null only when
    // out of memory, which from_owned_ptr reports as a panic, as PyString::new does).
    unsafe {
        let ptr = pyo3::ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null());
        Bound::from_owned_ptr(py, ptr).cast_into_unchecked()
    }
}

/// Declares `KNOWN_KEYS` and [`known_index`] over the variable names Apache and mod_rwsgi
/// give (most requests have only these): their str keys are interned once per interpreter
/// ([`new_known_keys`], kept in its `InterpState`).
macro_rules! known_keys {
    ($($name:literal),* $(,)?) => {
        const KNOWN_KEYS: &[&str] = &[$($name),*];

        /// The index in `KNOWN_KEYS` of CGI name `name` (comparisons with constants, which
        /// the compiler inlines).
        fn known_index(name: &[u8]) -> Option<usize> {
            let mut i = 0;
            $(
                if name == $name.as_bytes() {
                    return Some(i);
                }
                i += 1;
            )*
            let _ = i;
            None
        }
    };
}

known_keys!(
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "HTTP_ACCEPT",
    "HTTP_ACCEPT_ENCODING",
    "HTTP_ACCEPT_LANGUAGE",
    "HTTP_CONNECTION",
    "HTTP_COOKIE",
    "HTTP_REFERER",
    "HTTP_CACHE_CONTROL",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_SIGNATURE",
    "SERVER_SOFTWARE",
    "SERVER_NAME",
    "SERVER_ADDR",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "REMOTE_USER",
    "AUTH_TYPE",
    "DOCUMENT_ROOT",
    "REQUEST_SCHEME",
    "CONTEXT_PREFIX",
    "CONTEXT_DOCUMENT_ROOT",
    "SERVER_ADMIN",
    "SCRIPT_FILENAME",
    "PATH_TRANSLATED",
    "UNIQUE_ID",
    "GATEWAY_INTERFACE",
    "SERVER_PROTOCOL",
    "REQUEST_METHOD",
    "QUERY_STRING",
    "REQUEST_URI",
    "SCRIPT_NAME",
    "PATH_INFO",
    "mod_wsgi.script_name",
    "mod_wsgi.path_info",
    "mod_wsgi.listener_host",
    "mod_wsgi.listener_port",
    "mod_wsgi.server_pid",
    "mod_wsgi.request_id",
    "mod_wsgi.connection_id",
    "mod_wsgi.request_handler",
    "mod_wsgi.handler_script",
);

/// The current interpreter's interned str of each of [`KNOWN_KEYS`], in that order.
pub(crate) fn new_known_keys(py: Python<'_>) -> Vec<Py<PyString>> {
    KNOWN_KEYS
        .iter()
        .map(|k| PyString::intern(py, k).unbind())
        .collect()
}

/// Declares the str constants the request path uses besides [`KNOWN_KEYS`]: interned once per
/// interpreter ([`new_fixed`], kept in its `InterpState` in this order) and found by index.
macro_rules! fixed {
    ($($id:ident = $s:literal),* $(,)?) => {
        /// Indexes into an interpreter's `fixed` strings.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        pub(crate) enum Fixed { $($id),* }
        const FIXED: &[&str] = &[$($s),*];
    };
}

fixed!(
    script_name = "SCRIPT_NAME",
    path_info = "PATH_INFO",
    url_scheme = "wsgi.url_scheme",
    input = "wsgi.input",
    errors = "wsgi.errors",
    application_group = "mod_wsgi.application_group",
    callable_object = "mod_wsgi.callable_object",
    saved_script_name = "mod_wsgi.script_name",
    saved_path_info = "mod_wsgi.path_info",
    request_start = "mod_wsgi.request_start",
    queue_start = "mod_wsgi.queue_start",
    daemon_start = "mod_wsgi.daemon_start",
    application_start = "mod_wsgi.application_start",
    thread_id = "mod_wsgi.thread_id",
    request_rec = "apache.request_rec",
    https = "https",
    http = "http",
    empty = "",
    flush = "flush",
    mode = "mode",
    w = "w",
    mtime = "__mtime__",
    reload_required = "reload_required",
    encoding = "encoding",
    errors_attr = "errors",
    write_through = "write_through",
    line_buffering = "line_buffering",
);

/// The current interpreter's interned str of each of `FIXED`, in that order.
pub(crate) fn new_fixed(py: Python<'_>) -> Vec<Py<PyString>> {
    FIXED
        .iter()
        .map(|k| PyString::intern(py, k).unbind())
        .collect()
}

impl super::interp_state::InterpState {
    /// The interpreter's interned str `which`.
    pub(crate) fn fixed<'py>(&self, py: Python<'py>, which: Fixed) -> &Bound<'py, PyString> {
        self.fixed[which as usize].bind(py)
    }
}

/// The environ key for CGI name `bytes`, not one of [`KNOWN_KEYS`].
fn other_key<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(s) if bytes.is_ascii() => PyString::intern(py, s),
        _ => latin1(py, bytes),
    }
}

/// Values of known keys up to this long are remembered ([`new_known_values`]).
const REMEMBERED_VALUE_MAX: usize = 128;

/// Known keys whose values differ on every request: not remembered.
fn changes_every_request(name: &[u8]) -> bool {
    matches!(
        name,
        b"UNIQUE_ID" | b"mod_wsgi.request_id" | b"mod_wsgi.connection_id" | b"REMOTE_PORT"
    )
}

/// Per known key, the str last made for its value in this interpreter and the bytes it was
/// made from (kept in its `InterpState`): most values (the server's names, the method, the
/// client's headers ...) are the same from one request to the next, and a str is immutable,
/// so it is shared rather than decoded again. Keys whose values change on every request
/// get no slot.
pub(crate) fn new_known_values() -> Vec<Option<Mutex<RememberedValue>>> {
    KNOWN_KEYS
        .iter()
        .map(|key| (!changes_every_request(key.as_bytes())).then(|| Mutex::new((Vec::new(), None))))
        .collect()
}

/// The str of `bytes`, the value of known key number `index`, from `remembered` (the
/// interpreter's [`new_known_values`]) when its bytes are the same.
fn known_value<'py>(
    py: Python<'py>,
    remembered: &[Option<Mutex<RememberedValue>>],
    index: usize,
    bytes: &[u8],
) -> Bound<'py, PyString> {
    let Some(Some(slot)) = remembered.get(index) else {
        return latin1(py, bytes);
    };
    if bytes.len() > REMEMBERED_VALUE_MAX {
        return latin1(py, bytes);
    }
    // Held only to compare bytes and take or store a reference, never across a call into
    // Python.
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    let (last, value) = &mut *slot;
    if let Some(value) = value.as_ref().filter(|_| last.as_slice() == bytes) {
        return value.bind(py).clone();
    }
    let made = latin1(py, bytes);
    last.clear();
    last.extend_from_slice(bytes);
    // The str it replaces is only a str: dropping it runs no Python code.
    *value = Some(made.clone().unbind());
    made
}

/// Builds the environ of one request; `application_start_us` is the instant the application
/// is about to be called (µs since the epoch).
pub(crate) fn build<'py>(
    py: Python<'py>,
    spec: &RequestSpec<'_>,
    input: &Bound<'py, PyAny>,
    errors: &Bound<'py, PyAny>,
    state: &super::interp_state::InterpState,
    application_start_us: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let env = state.base_environ.bind(py).copy()?;
    let mut https = false;
    let mut request_scheme: Option<&[u8]> = None;
    let mut script_name = None;
    let mut path_info = None;
    // mod_wsgi.script_name/path_info from Apache: the values before a trusted proxy header
    // rewrote SCRIPT_NAME, as mod_wsgi saves them.
    let mut saved_names = false;
    for (name, value) in spec.env {
        match name {
            b"HTTPS" => {
                https = value.eq_ignore_ascii_case(b"on") || value == b"1";
                continue;
            }
            b"REQUEST_SCHEME" => request_scheme = Some(value),
            b"mod_wsgi.script_name" => saved_names = true,
            _ => {}
        }
        let (k, v) = match known_index(name) {
            Some(i) if i < state.known_keys.len() => (
                state.known_keys[i].bind(py).clone(),
                known_value(py, &state.known_values, i, value),
            ),
            _ => (other_key(py, name), latin1(py, value)),
        };
        match name {
            b"SCRIPT_NAME" => script_name = Some(v.clone()),
            b"PATH_INFO" => path_info = Some(v.clone()),
            _ => {}
        }
        env.set_item(k, v)?;
    }
    let scheme = if https {
        state.fixed(py, Fixed::https).clone()
    } else {
        match request_scheme {
            Some(s) if !s.is_empty() => latin1(py, s),
            _ => state.fixed(py, Fixed::http).clone(),
        }
    };
    let empty = state.fixed(py, Fixed::empty);
    let script_name = script_name.unwrap_or_else(|| empty.clone());
    let path_info = path_info.unwrap_or_else(|| empty.clone());
    if !env.contains(state.fixed(py, Fixed::script_name))? {
        env.set_item(state.fixed(py, Fixed::script_name), &script_name)?;
    }
    if !env.contains(state.fixed(py, Fixed::path_info))? {
        env.set_item(state.fixed(py, Fixed::path_info), &path_info)?;
    }
    env.set_item(state.fixed(py, Fixed::url_scheme), scheme)?;
    env.set_item(state.fixed(py, Fixed::input), input)?;
    env.set_item(state.fixed(py, Fixed::errors), errors)?;
    env.set_item(state.fixed(py, Fixed::application_group), spec.app_group)?;
    env.set_item(state.fixed(py, Fixed::callable_object), callable_name(spec))?;
    if !saved_names {
        env.set_item(state.fixed(py, Fixed::saved_script_name), script_name)?;
        env.set_item(state.fixed(py, Fixed::saved_path_info), path_info)?;
    }
    let times = &spec.times;
    env.set_item(
        state.fixed(py, Fixed::request_start),
        seconds(times.request_start_us),
    )?;
    env.set_item(
        state.fixed(py, Fixed::queue_start),
        seconds(times.queue_start_us),
    )?;
    env.set_item(
        state.fixed(py, Fixed::daemon_start),
        seconds(times.daemon_start_us),
    )?;
    env.set_item(
        state.fixed(py, Fixed::application_start),
        seconds(application_start_us),
    )?;
    // From 1, the number events and process_metrics() give the thread too, as mod_wsgi.
    env.set_item(
        state.fixed(py, Fixed::thread_id),
        super::metrics::thread_slot() + 1,
    )?;
    if let Some(request_rec) = spec.apache_request {
        env.set_item(
            state.fixed(py, Fixed::request_rec),
            request_rec_capsule(py, request_rec)?,
        )?;
    }
    Ok(env)
}

/// mod_wsgi's `apache.request_rec`: a capsule holding the request_rec address, with no name
/// and no destructor (Apache owns the request).
pub(crate) fn request_rec_capsule(
    py: Python<'_>,
    request_rec: super::ApacheRequestRec,
) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: the GIL is held (`py`); PyCapsule_New takes a non-null pointer (it is a
    // NonNull), accepts a null name and no destructor, and returns a new reference or null
    // with an exception set, which from_owned_ptr_or_err turns into the PyErr.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyCapsule_New(request_rec.as_ptr(), std::ptr::null(), None),
        )
    }
}

/// µs since the epoch → float seconds (0 stays 0.0), as mod_wsgi's timing keys.
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

pub(crate) fn callable_name<'a>(spec: &RequestSpec<'a>) -> &'a str {
    if spec.callable.is_empty() {
        "application"
    } else {
        spec.callable
    }
}
