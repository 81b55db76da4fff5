//! `start_response(status, headers, exc_info=None)` and the `write()` callable it returns.
//!
//! The checks, their order, exception types and messages follow mod_wsgi 6
//! (`Adapter_start_response`, `wsgi_convert.c`, `wsgi_validate.c`; its
//! `tests/wsgi/start_response.sh` matches on them): argument count, then `headers` must be a
//! list (TypeError), then a non-tuple `exc_info` (RuntimeError), then repeated calls: until the
//! head was sent, any call replaces the status and headers (with or without `exc_info`); after
//! it, a call with `exc_info` re-raises that exception and one without raises RuntimeError.
//! Then the status and each header are converted to latin-1 (TypeError for a non-str,
//! UnicodeEncodeError from the codec) and validated (ValueError quoting the bytes).
//!
//! Beyond mod_wsgi: a header name must be an HTTP token and a value must not hold other
//! control characters than tab (mod_wsgi lets these through and Apache then answers 500 for
//! the response), a status code must be 100-999, a header line must fit the daemon's
//! header-buffer-size, and a bad Content-Length is refused here rather than at the first body
//! byte. Keyword arguments are accepted too. Nothing is sent here: the head goes out with the
//! first non-empty body chunk, a `write()` call, or the end of the response.

use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::input::EXPIRED;
use super::log_object::type_name;
use super::native_class;
use super::request::{SendError, Shared};

/// A request's `start_response` and the `write` callable it returns: instances of
/// `mod_wsgi.StartResponse` and `mod_wsgi.Write`, classes defined per interpreter
/// (`native_class.rs`; no type object shared between interpreters), both over this state.
pub(crate) struct StartResponse {
    shared: Arc<Shared>,
    events: Events,
}

/// The `response_started` event of `mod_wsgi.subscribe_events` (`modwsgi.rs`, handed in by
/// the caller so this module does not depend on it): whether anybody listens, and the publisher
/// of (status, headers, exc_info).
#[derive(Clone, Copy)]
pub(crate) struct Events {
    pub has_subscribers: fn(Python<'_>) -> bool,
    pub publish: Publish,
}

/// `modwsgi::publish_response_started(py, status, headers, exc_info)`.
pub(crate) type Publish =
    for<'py> fn(Python<'py>, &Bound<'py, PyAny>, &Bound<'py, PyAny>, Option<&Bound<'py, PyAny>>);

static SPEC: native_class::Spec<Arc<StartResponse>> = native_class::Spec {
    name: c"mod_wsgi.StartResponse",
    doc: c"start_response(status, response_headers, exc_info=None)",
    methods: None,
    members: None,
    slots: start_response_slots,
    _value: std::marker::PhantomData,
};

static WRITE_SPEC: native_class::Spec<Arc<StartResponse>> = native_class::Spec {
    name: c"mod_wsgi.Write",
    doc: c"write(data): the PEP 3333 write callable.",
    methods: None,
    members: None,
    slots: write_slots,
    _value: std::marker::PhantomData,
};

fn start_response_slots() -> Vec<ffi::PyType_Slot> {
    vec![ffi::PyType_Slot {
        slot: ffi::Py_tp_call,
        pfunc: pyo3::impl_::trampoline::get_trampoline_function!(ternaryfunc, call_start)
            as *mut std::ffi::c_void,
    }]
}

fn write_slots() -> Vec<ffi::PyType_Slot> {
    vec![ffi::PyType_Slot {
        slot: ffi::Py_tp_call,
        pfunc: pyo3::impl_::trampoline::get_trampoline_function!(ternaryfunc, call_write)
            as *mut std::ffi::c_void,
    }]
}

/// Defines `mod_wsgi.StartResponse` in the current interpreter.
pub(crate) fn define(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    native_class::define(py, &SPEC)
}

/// Defines `mod_wsgi.Write` in the current interpreter.
pub(crate) fn define_write(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    native_class::define(py, &WRITE_SPEC)
}

/// `start_response` for the request of `shared`, in the interpreter of `state`.
pub(crate) fn new<'py>(
    state: &super::interp_state::InterpState,
    py: Python<'py>,
    shared: Arc<Shared>,
    events: Events,
) -> PyResult<Bound<'py, PyAny>> {
    native_class::new(
        state.start_response.bind(py),
        Arc::new(StartResponse { shared, events }),
        None,
    )
}

/// `tp_call` of `StartResponse`: returns a new `write` callable.
///
/// # Safety
/// CPython's `tp_call` contract on a `StartResponse` instance.
unsafe fn call_start(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    native_class::catch_panic("start_response", || {
        // SAFETY: the caller's contract: args is a tuple, kwargs a dict or null, both borrowed.
        let (this, args, kwargs) = unsafe {
            (
                native_class::value::<Arc<StartResponse>>(slf)?,
                Bound::from_borrowed_ptr(py, args).cast_into_unchecked::<PyTuple>(),
                Bound::from_borrowed_ptr_or_opt(py, kwargs)
                    .map(|k| k.cast_into_unchecked::<PyDict>()),
            )
        };
        this.call(py, &args, kwargs.as_ref())?;
        let state = super::interp_state::current(py)?;
        Ok(native_class::new(state.write.bind(py), Arc::clone(this), None)?.into_ptr())
    })
}

/// `tp_call` of `Write`: `write(data)`.
///
/// # Safety
/// CPython's `tp_call` contract on a `Write` instance.
unsafe fn call_write(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    native_class::catch_panic("write", || {
        // SAFETY: as for `call_start`.
        let (writer, args, kwargs) = unsafe {
            (
                native_class::value::<Arc<StartResponse>>(slf)?,
                Bound::from_borrowed_ptr(py, args).cast_into_unchecked::<PyTuple>(),
                Bound::from_borrowed_ptr_or_opt(py, kwargs)
                    .map(|k| k.cast_into_unchecked::<PyDict>()),
            )
        };
        let data = match (args.len(), kwargs.filter(|k| !k.is_empty())) {
            (1, None) => args.get_item(0)?,
            (0, Some(k)) if k.len() == 1 => k.get_item("data")?.ok_or_else(|| {
                PyTypeError::new_err("write() got an unexpected keyword argument")
            })?,
            (n, k) => {
                return Err(PyTypeError::new_err(format!(
                    "write() takes exactly one argument ({} given)",
                    n + k.map_or(0, |k| k.len())
                )));
            }
        };
        writer.write(py, &data)?;
        Ok(py.None().into_ptr())
    })
}

pub(crate) type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// The three arguments, from positional and keyword arguments (mod_wsgi takes positional
/// ones only; its count messages are CPython's `PyArg_ParseTuple` ones).
fn call_args<'py>(
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<[Option<Bound<'py, PyAny>>; 3]> {
    const NAMES: [&[&str]; 3] = [&["status"], &["headers", "response_headers"], &["exc_info"]];
    let given = args.len() + kwargs.map_or(0, |k| k.len());
    if args.len() > 3 {
        return Err(PyTypeError::new_err(format!(
            "start_response() takes at most 3 arguments ({given} given)"
        )));
    }
    let mut out: [Option<Bound<'py, PyAny>>; 3] = [None, None, None];
    for (slot, value) in out.iter_mut().zip(args.iter()) {
        *slot = Some(value);
    }
    for (key, value) in kwargs.into_iter().flat_map(|k| k.iter()) {
        let key = key.str()?.to_cow()?.into_owned();
        let Some(index) = NAMES.iter().position(|names| names.contains(&key.as_str())) else {
            return Err(PyTypeError::new_err(format!(
                "start_response() got an unexpected keyword argument '{key}'"
            )));
        };
        if out[index].is_some() {
            return Err(PyTypeError::new_err(format!(
                "start_response() got multiple values for argument '{key}'"
            )));
        }
        out[index] = Some(value);
    }
    if out[0].is_none() || out[1].is_none() {
        return Err(PyTypeError::new_err(format!(
            "start_response() takes at least 2 arguments ({given} given)"
        )));
    }
    Ok(out)
}

impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None)`; the caller returns `write`.
    fn call<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<()> {
        let this = self;
        if this.shared.is_expired() {
            return Err(PyRuntimeError::new_err(
                "start_response() called after request completed",
            ));
        }
        let [status, headers, exc_info] = call_args(args, kwargs)?;
        let (Some(status), Some(headers)) = (status, headers) else {
            unreachable!("call_args checked both");
        };
        if !headers.is_instance_of::<PyList>() {
            return Err(PyTypeError::new_err(format!(
                "start_response() argument 2 must be list, not {}",
                type_name(&headers)
            )));
        }
        let exc_info = exc_info.filter(|e| !e.is_none());
        if let Some(info) = &exc_info {
            if !info.is_instance_of::<PyTuple>() {
                // mod_wsgi raises RuntimeError here (not TypeError).
                return Err(PyRuntimeError::new_err(
                    "start_response() argument 'exc_info' must be a 3-tuple or None",
                ));
            }
        }
        if this.head_sent(py) {
            return Err(after_head(exc_info.as_ref()));
        }
        let parsed_status = parse_status(&status)?;
        let (parsed_headers, content_length) = parse_headers(&headers)?;
        let mut resp = this
            .shared
            .response
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        if resp.head_sent {
            // Another thread sent the head meanwhile.
            drop(resp);
            return Err(after_head(exc_info.as_ref()));
        }
        resp.status = Some(parsed_status);
        resp.headers = parsed_headers;
        resp.content_length = content_length;
        drop(resp);
        if (self.events.has_subscribers)(py) {
            (self.events.publish)(py, &status, &headers, exc_info.as_ref());
        }
        Ok(())
    }

    /// The PEP 3333 `write(data)` callable: sends the head if needed, then `data`, and flushes.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.shared.is_expired() {
            return Err(PyRuntimeError::new_err(
                "write() called after request completed",
            ));
        }
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be bytes, not {}",
                type_name(data)
            ))
        })?;
        let data: &[u8] = bytes.as_bytes();
        let shared = &self.shared;
        shared
            .detach(py, || shared.send(data, true))
            .map_err(|e| match e {
                SendError::NotStarted => PyRuntimeError::new_err(NOT_STARTED),
                SendError::Expired => PyRuntimeError::new_err(EXPIRED),
                SendError::Io(e) => {
                    PyOSError::new_err(format!("mod_rwsgi: failed to write response data: {e}"))
                }
            })
    }
}

/// Output before start_response: mod_wsgi's RuntimeError message.
pub(crate) const NOT_STARTED: &str =
    "start_response() must be called before response content is produced";

impl StartResponse {
    fn head_sent(&self, py: Python<'_>) -> bool {
        self.shared
            .response
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
            .head_sent
    }
}

/// A call after the head was sent: `exc_info` is re-raised; without it, RuntimeError.
fn after_head(exc_info: Option<&Bound<'_, PyAny>>) -> PyErr {
    match exc_info {
        Some(info) => reraise(info),
        None => PyRuntimeError::new_err("start_response() called more than once without exc_info"),
    }
}

/// `raise exc_info[1].with_traceback(exc_info[2])`
fn reraise(info: &Bound<'_, PyAny>) -> PyErr {
    let result = (|| -> PyResult<PyErr> {
        let len = info.len()?;
        if len != 3 {
            // What mod_wsgi's PyArg_ParseTuple(exc_info, "OOO") raises.
            return Err(PyTypeError::new_err(format!(
                "function takes exactly 3 arguments ({len} given)"
            )));
        }
        let value = info.get_item(1)?;
        let tb = info.get_item(2)?;
        let value = if tb.is_none() {
            value
        } else {
            value.call_method1("with_traceback", (tb,))?
        };
        Ok(PyErr::from_value(value))
    })();
    result.unwrap_or_else(|e| e)
}

/// A str as latin-1 bytes, as mod_wsgi converts it: TypeError "must be str, not T" for
/// another type, and the codec's own UnicodeEncodeError for a character above U+00FF.
fn latin1(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let s = value
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("must be str, not {}", type_name(value))))?;
    let text = s.to_cow()?;
    match text
        .chars()
        .map(|c| u8::try_from(u32::from(c)))
        .collect::<Result<Vec<u8>, _>>()
    {
        Ok(bytes) => Ok(bytes),
        // Let the codec raise, so the exception is exactly CPython's (str.encode unbound:
        // a str subclass cannot change it).
        Err(_) => {
            let py = value.py();
            py.get_type::<PyString>()
                .getattr(PyString::intern(py, "encode"))?
                .call1((s, "latin-1"))?;
            Err(PyValueError::new_err("not encodable as latin-1"))
        }
    }
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// `%R` of the bytes: Python's repr, `b'...'`.
fn bytes_repr(py: Python<'_>, bytes: &[u8]) -> String {
    PyBytes::new(py, bytes)
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| format!("{:?}", String::from_utf8_lossy(bytes)))
}

/// A validation failure: its message, followed by the value's repr unless `bare`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub message: &'static str,
    pub bare: bool,
}

const fn invalid(message: &'static str) -> Invalid {
    Invalid {
        message,
        bare: false,
    }
}

fn value_error(py: Python<'_>, why: Invalid, bytes: &[u8]) -> PyErr {
    if why.bare {
        PyValueError::new_err(why.message)
    } else {
        PyValueError::new_err(format!("{}: {}", why.message, bytes_repr(py, bytes)))
    }
}

/// "NNN reason" or "NNN": 3 digits (100-999), then nothing or a space and a reason without
/// control characters.
pub(crate) fn parse_status(value: &Bound<'_, PyAny>) -> PyResult<(u16, Vec<u8>)> {
    let s = latin1(value)?;
    validate_status(&s).map_err(|why| value_error(value.py(), why, &s))
}

pub(crate) fn validate_status(s: &[u8]) -> Result<(u16, Vec<u8>), Invalid> {
    if s.len() < 3
        || !s[..3].iter().all(u8::is_ascii_digit)
        || s.get(3).is_some_and(u8::is_ascii_digit)
    {
        return Err(invalid("status code must be a 3 digit integer"));
    }
    let code = s[..3]
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if code < 100 {
        return Err(invalid("status code must be between 100 and 999"));
    }
    let reason = match s.get(3) {
        // HTTP/2 sends no reason phrase: mod_wsgi 6 accepts a bare code.
        None => &[][..],
        Some(b' ') => &s[4..],
        Some(_) => return Err(invalid("no space following status code")),
    };
    if reason.iter().any(|&b| is_ctl(b)) {
        return Err(invalid("control character in status reason phrase"));
    }
    Ok((code, reason.to_vec()))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Response headers and the Content-Length they declare.
pub(crate) type Parsed = (Headers, Option<u64>);

/// A list of (str, str) tuples → latin-1 bytes pairs, plus the Content-Length if declared.
/// The caller checked that `value` is a list.
pub(crate) fn parse_headers(value: &Bound<'_, PyAny>) -> PyResult<Parsed> {
    let list = value.cast::<PyList>()?;
    let mut headers = Vec::with_capacity(list.len());
    for item in list.iter() {
        let tuple = item.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!(
                "each header must be a 2-tuple, not {}",
                type_name(&item)
            ))
        })?;
        if tuple.len() != 2 {
            return Err(PyValueError::new_err(format!(
                "each header must be a 2-tuple, got length {}",
                tuple.len()
            )));
        }
        headers.push((latin1(&tuple.get_item(0)?)?, latin1(&tuple.get_item(1)?)?));
    }
    check_headers(value.py(), headers)
}

/// Checks response headers as bytes (names, values, line length, Content-Length): the
/// headers and the Content-Length they declare.
pub(crate) fn check_headers(py: Python<'_>, headers: Headers) -> PyResult<Parsed> {
    let mut content_length = None;
    let limit = super::settings::process_info().header_buffer_size;
    for (name, value) in &headers {
        validate_header_name(name).map_err(|why| value_error(py, why, name))?;
        validate_header_value(value).map_err(|why| value_error(py, why, value))?;
        let line = name.len() + 2 + value.len();
        if limit > 0 && line > limit {
            return Err(PyValueError::new_err(format!(
                "response header {} is {line} bytes long, over the daemon process group's \
                 header-buffer-size={limit}",
                bytes_repr(py, name)
            )));
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let text = value.trim_ascii();
            let parsed = std::str::from_utf8(text)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok());
            match parsed {
                Some(n) => content_length = Some(n),
                None => {
                    // mod_wsgi's message (it raises it at the first body byte).
                    return Err(PyValueError::new_err(format!(
                        "invalid Content-Length header value: '{}'",
                        String::from_utf8_lossy(value)
                    )));
                }
            }
        }
    }
    Ok((headers, content_length))
}

pub(crate) fn validate_header_name(name: &[u8]) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid {
            message: "header name is empty",
            bare: true,
        });
    }
    if name.iter().any(|&b| is_ctl(b)) {
        return Err(invalid("control character in header name"));
    }
    if name.contains(&b' ') {
        return Err(invalid("space character in header name"));
    }
    if !name.iter().all(|&b| is_tchar(b)) {
        return Err(invalid("invalid character in header name"));
    }
    Ok(())
}

pub(crate) fn validate_header_value(value: &[u8]) -> Result<(), Invalid> {
    if value.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(invalid(
            "carriage return/line feed character in header value",
        ));
    }
    if value.iter().any(|&b| is_ctl(b) && b != b'\t') {
        return Err(invalid("control character in header value"));
    }
    Ok(())
}
