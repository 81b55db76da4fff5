//! `start_response(status, headers, exc_info=None)` and the `write()` callable it returns.
//!
//! Validation follows mod_wsgi's `wsgi_validate.c` (errors quote the bad value). Repeated
//! calls follow mod_wsgi 6: until the head was sent, any call replaces the status and headers
//! (with or without `exc_info`); after it, a call with `exc_info` re-raises that exception and
//! one without raises RuntimeError. A non-tuple `exc_info` raises RuntimeError, as in mod_wsgi. Nothing is sent here: the head goes out with the first non-empty
//! body chunk, a `write()` call, or the end of the response.

use std::sync::Arc;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::input::EXPIRED;
use super::log_object::type_name;
use super::request::{SendError, Shared};

#[pyclass(frozen, module = "mod_wsgi", name = "StartResponse")]
pub(crate) struct StartResponse {
    shared: Arc<Shared>,
}

impl StartResponse {
    pub(crate) fn new(shared: Arc<Shared>) -> StartResponse {
        StartResponse { shared }
    }
}

pub(crate) type Headers = Vec<(Vec<u8>, Vec<u8>)>;

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if this.shared.is_expired() {
            return Err(PyRuntimeError::new_err(EXPIRED));
        }
        let exc_info = exc_info.filter(|e| !e.is_none());
        if let Some(info) = exc_info {
            if !info.is_instance_of::<PyTuple>() {
                // mod_wsgi raises RuntimeError here (not TypeError), whatever else holds.
                return Err(PyRuntimeError::new_err(format!(
                    "start_response() argument 'exc_info' must be a 3-tuple or None, value \
                     of type {} found",
                    type_name(info)
                )));
            }
        }
        {
            let resp = this
                .shared
                .response
                .lock_py_attached(py)
                .unwrap_or_else(|e| e.into_inner());
            // As mod_wsgi: until the head is sent, another call replaces status and headers,
            // with or without exc_info; after it, only exc_info (re-raised) is allowed.
            if resp.head_sent {
                drop(resp);
                return Err(match exc_info {
                    Some(info) => reraise(info),
                    None => PyRuntimeError::new_err(
                        "start_response() called more than once without exc_info, after the \
                         response headers were sent",
                    ),
                });
            }
        }
        let (status_given, headers_given) = (status, headers);
        let status = parse_status(status)?;
        let (headers, content_length) = parse_headers(headers)?;
        let mut resp = this
            .shared
            .response
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        if resp.head_sent {
            // Another thread sent the head meanwhile: only exc_info callers get here.
            drop(resp);
            return match exc_info {
                Some(info) => Err(reraise(info)),
                None => Err(PyRuntimeError::new_err(
                    "response headers have already been sent",
                )),
            };
        }
        resp.status = Some(status);
        resp.headers = headers;
        resp.content_length = content_length;
        drop(resp);
        if super::modwsgi::has_event_subscribers(py) {
            super::modwsgi::publish_response_started(py, status_given, headers_given, exc_info);
        }
        slf.getattr("write")
    }

    /// The PEP 3333 `write(data)` callable: sends the head if needed, then `data`, and flushes.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "expected bytes object for write(), value of type {} found",
                type_name(data)
            ))
        })?;
        if self.shared.is_expired() {
            return Err(PyRuntimeError::new_err(EXPIRED));
        }
        let data: &[u8] = bytes.as_bytes();
        let shared = &self.shared;
        shared
            .detach(py, || shared.send(data, true))
            .map_err(|e| match e {
                SendError::NotStarted => {
                    PyRuntimeError::new_err("write() called before start_response()")
                }
                SendError::Expired => PyRuntimeError::new_err(EXPIRED),
                SendError::Io(e) => {
                    PyOSError::new_err(format!("mod_rwsgi: failed to write response data: {e}"))
                }
            })
    }
}

/// `raise exc_info[1].with_traceback(exc_info[2])`
fn reraise(info: &Bound<'_, PyAny>) -> PyErr {
    let result = (|| -> PyResult<PyErr> {
        if info.len()? != 3 {
            return Err(PyTypeError::new_err(format!(
                "start_response() argument 'exc_info' must be a 3-tuple, length {} found",
                info.len()?
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

fn latin1(what: &str, value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let s = value.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected str object for {what}, value of type {} found",
            type_name(value)
        ))
    })?;
    let text = s.to_cow()?;
    text.chars()
        .map(|c| u8::try_from(u32::from(c)))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| {
            PyValueError::new_err(format!("{what} {:?} is not encodable as latin-1", &*text))
        })
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn show(bytes: &[u8]) -> String {
    format!(
        "{:?}",
        bytes.iter().map(|&b| char::from(b)).collect::<String>()
    )
}

/// "NNN reason": 3 digits (100-999), a space, a reason without control characters.
pub(crate) fn parse_status(value: &Bound<'_, PyAny>) -> PyResult<(u16, Vec<u8>)> {
    let s = latin1("status", value)?;
    validate_status(&s)
        .map_err(|why| PyValueError::new_err(format!("invalid status {}: {why}", show(&s))))
}

pub(crate) fn validate_status(s: &[u8]) -> Result<(u16, Vec<u8>), &'static str> {
    if s.len() < 3
        || !s[..3].iter().all(u8::is_ascii_digit)
        || s.get(3).is_some_and(u8::is_ascii_digit)
    {
        return Err("status code is not a 3 digit integer");
    }
    let code = s[..3]
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if code < 100 {
        return Err("status code must be between 100 and 999");
    }
    if s.get(3) != Some(&b' ') {
        return Err("no space following status code");
    }
    let reason = &s[4..];
    if reason.iter().any(|&b| is_ctl(b)) {
        return Err("control character present in reason phrase");
    }
    Ok((code, reason.to_vec()))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A list of (str, str) tuples → latin-1 bytes pairs, plus the Content-Length if declared.
pub(crate) fn parse_headers(value: &Bound<'_, PyAny>) -> PyResult<(Headers, Option<u64>)> {
    let list = value.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected list object for headers, value of type {} found",
            type_name(value)
        ))
    })?;
    let mut headers = Vec::with_capacity(list.len());
    let mut content_length = None;
    for item in list.iter() {
        let tuple = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "expected tuple object of length 2 for header, value {} of type {} found",
                    item.repr().map(|r| r.to_string()).unwrap_or_default(),
                    type_name(&item)
                ))
            })?;
        let name = latin1("header name", &tuple.get_item(0)?)?;
        let value = latin1("header value", &tuple.get_item(1)?)?;
        if let Err(why) = validate_header(&name, &value) {
            return Err(PyValueError::new_err(format!(
                "invalid header ({}, {}): {why}",
                show(&name),
                show(&value)
            )));
        }
        let limit = super::settings::process_info().header_buffer_size;
        let line = name.len() + 2 + value.len();
        if limit > 0 && line > limit {
            return Err(PyValueError::new_err(format!(
                "response header {} is {line} bytes long, over the daemon process group's \
                 header-buffer-size={limit}",
                show(&name)
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
                    return Err(PyValueError::new_err(format!(
                        "invalid Content-Length header value {}",
                        show(&value)
                    )));
                }
            }
        }
        headers.push((name, value));
    }
    Ok((headers, content_length))
}

pub(crate) fn validate_header(name: &[u8], value: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("header name is empty");
    }
    if !name.iter().all(|&b| is_tchar(b)) {
        return Err("header name contains a character that is not allowed in a token");
    }
    if value.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err("carriage return/line feed character present in header value");
    }
    if value.iter().any(|&b| is_ctl(b) && b != b'\t') {
        return Err("control character present in header value");
    }
    Ok(())
}
