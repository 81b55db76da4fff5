//! How a request's response ends when the application did not end it well: the error
//! pages sent in its place, the check of a body against its Content-Length, and the log
//! lines of those ends. Shared by the WSGI-shaped path (`app.rs`) and the native ASGI path
//! (`asgi_native.rs`).

use std::path::Path;

use pyo3::prelude::*;

use super::request::{Response, Shared};
use super::{RequestSpec, log, log_detached, log_object, log_prefix, python_error};
use crate::logging::Level;

const ERROR_BODY: &[u8] = b"<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n\
<html><head>\n<title>500 Internal Server Error</title>\n</head><body>\n\
<h1>Internal Server Error</h1>\n<p>The server encountered an internal error or\n\
misconfiguration and was unable to complete\nyour request.</p>\n</body></html>\n";

const GATEWAY_TIMEOUT_BODY: &[u8] = b"<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n\
<html><head>\n<title>504 Gateway Timeout</title>\n</head><body>\n\
<h1>Gateway Timeout</h1>\n<p>The application did not complete the request in time.</p>\n\
</body></html>\n";

/// An application's exception in the error log, with its traceback, as mod_wsgi logs it.
pub(super) fn log_app_exception(py: Python<'_>, script_path: &Path, app_group: &str, err: &PyErr) {
    let msg = python_error(py, err, script_path, app_group);
    if err.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
        // mod_wsgi's own header for it ("SystemExit exception raised by WSGI script ...;
        // ignored."): the process does not exit, the request fails.
        log_detached(py, Level::Error, &format!("RW0162: {msg}"));
    } else {
        log_detached(py, Level::Error, &format!("RW0085: {msg}"));
        // An import in the request refused by an extension module (sub-interpreters).
        let _ = super::subinterp::explain_refusal(
            py,
            err,
            app_group,
            &format!(
                "the request to WSGI script '{}' failed",
                script_path.display()
            ),
        );
    }
}

/// A write of the response failed and the application's part of it ended there (it let
/// the write's error propagate, or an ASGI response's write failed). Call detached.
pub(super) fn log_write_failed(script_path: &Path, why: &str) {
    super::py_log_at!(
        Level::Info,
        "RW0087: {}Client connection closed while sending the response of WSGI script '{}': \
         {why}.",
        log_prefix(),
        script_path.display()
    );
}

/// mod_wsgi 6's info lines for a request that request-timeout interrupted (its test suite
/// matches them). Call detached, on the request's thread (its address prefixes the line).
pub(super) fn log_request_timeout(head_sent: bool) {
    if head_sent {
        let msg = format!(
            "{}Request interrupted by RequestTimeout after headers sent; response truncated.",
            log_prefix()
        );
        log_object::log_in_request_detached(Level::Info, &format!("RW0088: {msg}"));
    } else {
        let msg = format!(
            "{}Request interrupted by RequestTimeout; thread recovered.",
            log_prefix()
        );
        log_object::log_in_request_detached(Level::Info, &format!("RW0160: {msg}"));
    }
}

/// A response's body fell short of its Content-Length (see [`shortfall`]).
/// Call detached.
pub(super) fn log_short_body(script_path: &Path, sent: u64, promised: u64) {
    log(
        Level::Error,
        &format!(
            "RW0089: {}WSGI script '{}' sent {sent} body bytes of the {promised} its \
             Content-Length promised; the connection is closed so the client sees an \
             incomplete response.",
            log_prefix(),
            script_path.display()
        ),
    );
}

/// (sent, promised) when a response's body fell short of its Content-Length.
pub(super) fn shortfall(spec: &RequestSpec<'_>, resp: &Response) -> Option<(u64, u64)> {
    let (promised, sent) = (resp.content_length?, resp.sent);
    let status = resp.status.as_ref().map_or(200, |(code, _)| *code);
    let head_request = spec
        .env
        .iter()
        .any(|(k, v)| k == b"REQUEST_METHOD" && v == b"HEAD");
    let bodiless = head_request || status < 200 || status == 204 || status == 304;
    (sent < promised && !bodiless).then_some((sent, promised))
}

pub(super) fn send_500(shared: &Shared) {
    send_error_page(shared, 500, "Internal Server Error", ERROR_BODY);
}

pub(super) fn send_gateway_timeout(shared: &Shared) {
    send_error_page(shared, 504, "Gateway Timeout", GATEWAY_TIMEOUT_BODY);
}

/// Sends a complete error response in place of the application's.
pub(super) fn send_error_page(shared: &Shared, status: u16, reason: &str, body: &[u8]) {
    let headers = [
        (
            b"Content-Type".to_vec(),
            b"text/html; charset=iso-8859-1".to_vec(),
        ),
        (
            b"Content-Length".to_vec(),
            body.len().to_string().into_bytes(),
        ),
    ];
    let mut resp = shared.response();
    resp.status = Some((status, reason.as_bytes().to_vec()));
    let result = shared.with_io(|io| -> std::io::Result<()> {
        io.send_head(status, reason.as_bytes(), &headers)?;
        io.send_body(body)?;
        io.flush()
    });
    if !matches!(result, Some(Ok(()))) {
        resp.io_failed = true;
    }
}
