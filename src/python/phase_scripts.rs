//! Python in Apache's early request phases, as mod_wsgi runs it in the Apache child: the host
//! access check (`allow_access`), the authentication provider (`check_password`,
//! `get_realm_hash`), group authorisation (`groups_for_user`) and the dispatch hooks
//! (`process_group`, `application_group`, `callable_object`).
//!
//! The scripts load through the same [`Loader`](super::loader) as WSGI scripts, into the
//! interpreter of their application group (a sub-interpreter for a named group, as in
//! mod_wsgi; a script used both ways in one application group is one module); a touched script
//! is re-imported in place before the call when WSGIScriptReloading is On. Each function gets
//! a cut-down environ (the caller's CGI pairs, plus `wsgi.errors`, the version tuples and the
//! process and application group) and its own arguments.
//!
//! Failures come back as [`PhaseFailed`], already logged: a script that does not load, a
//! function it lacks, an exception (with its traceback), or an answer of the wrong type
//! (naming what was returned). Call every method without the GIL.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyString};

use super::app::AppHost;
use super::environ::latin1;
use super::loader::{self, Loaded};
use super::log_object::{self, RequestScope, type_name};
use super::settings::process_info;
use super::subinterp;
use super::{MOD_WSGI_VERSION, log_detached, log_prefix, python_error};
use crate::logging::Level;

/// Which script to run for one request, and how.
#[derive(Clone, Copy, Debug)]
pub struct PhaseRequest<'a> {
    pub script_path: &'a str,
    /// The application group, expanded ("" is `%{GLOBAL}`).
    pub app_group: &'a str,
    /// CGI variables as bytes from Apache; values become latin-1 `str`.
    pub env: &'a [(Vec<u8>, Vec<u8>)],
    /// WSGIScriptReloading: re-import the script first if its file changed.
    pub script_reloading: bool,
    /// WSGIPassApacheRequest On: `environ['apache.request_rec']`, as mod_wsgi gives these
    /// scripts (they run in the Apache child).
    pub apache_request: Option<super::ApacheRequestRec>,
}

/// The phase function gave no usable answer; the reason is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseFailed;

/// `allow_access(environ, host)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// True.
    Allow,
    /// False.
    Deny,
    /// None: no opinion, other access checks decide.
    Decline,
}

/// `check_password(environ, user, password)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// True, or a non-empty string: the user name to record instead of the one sent.
    Granted(Option<String>),
    /// False.
    Denied,
    /// None.
    UserNotFound,
}

/// `get_realm_hash(environ, user, realm)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealmHash {
    /// The hex MD5 of `user:realm:password`.
    Found(Vec<u8>),
    /// None.
    UserNotFound,
}

/// The dispatch script's answers; `None` keeps the configured value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dispatch {
    pub process_group: Option<String>,
    pub application_group: Option<String>,
    pub callable_object: Option<String>,
}

/// What a function returned that it may not: an error naming the value.
fn bad_result(value: &Bound<'_, PyAny>, expected: &str) -> String {
    let mut repr = value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_string());
    if repr.chars().count() > 200 {
        repr = repr.chars().take(200).collect::<String>() + "...";
    }
    format!("returned {repr} (type {}); {expected}", type_name(value))
}

/// A `str` of latin-1 characters or `bytes`, as text (bytes are read as latin-1).
fn latin1_text(value: &Bound<'_, PyAny>) -> Option<String> {
    if let Ok(s) = value.cast::<PyString>() {
        let s = s.to_str().ok()?;
        return s
            .chars()
            .all(|c| u32::from(c) <= 0xff)
            .then(|| s.to_string());
    }
    let b = value.cast::<PyBytes>().ok()?;
    Some(b.as_bytes().iter().map(|&c| char::from(c)).collect())
}

impl AppHost {
    /// The loaded script, re-imported first if it changed on disk (WSGIScriptReloading).
    fn phase_script(&self, req: &PhaseRequest<'_>) -> Result<Arc<Loaded>, PhaseFailed> {
        let (path, group) = (req.script_path, req.app_group);
        let loaded = self.loader.get(path, group).map_err(|_| PhaseFailed)?;
        if !req.script_reloading {
            return Ok(loaded);
        }
        let why = match loader::file_mtime(path) {
            Ok(now) if now == loaded.mtime => return Ok(loaded),
            Ok(_) => "its modification time changed".to_string(),
            Err(e) => format!("it can no longer be read ({e})"),
        };
        self.loader.discard(path, group, &loaded, &why);
        let _ = subinterp::attach(group, |_py| drop(loaded));
        self.loader.get(path, group).map_err(|_| PhaseFailed)
    }

    /// Calls `func` of the script with the environ and `args`, hands its result to
    /// `answer`; `required`: a script without `func` is an error (else `Ok(None)`).
    fn call_phase<T>(
        &self,
        req: &PhaseRequest<'_>,
        funcs: &[&str],
        required: bool,
        mut call: impl for<'py> FnMut(
            &str,
            &Bound<'py, PyAny>,
            &Bound<'py, PyDict>,
        ) -> Result<Option<T>, PhaseError>,
    ) -> Result<Vec<Option<T>>, PhaseFailed> {
        let loaded = self.phase_script(req)?;
        let remote =
            log_object::remote_prefix(req.env.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        let _scope = RequestScope::enter(remote.clone());
        let (path, group) = (req.script_path, req.app_group);
        // In the group's interpreter; `Err`: it could not be made (logged).
        subinterp::attach(group, |py| {
            let dict = loaded.module.bind(py).dict();
            let found: Vec<Option<Bound<'_, PyAny>>> = funcs
                .iter()
                .map(|f| dict.get_item(*f).ok().flatten())
                .collect();
            if required && found.iter().any(Option::is_none) {
                let msg = format!(
                    "{}Target WSGI script '{path}' does not provide '{}' (for {}).",
                    log_prefix(),
                    funcs.join("', '"),
                    super::interp_context(group)
                );
                log_detached(py, Level::Error, &format!("RW0105: {msg}"));
                return Err(PhaseFailed);
            }
            let errors = log_object::new_stream(py, "<wsgi.errors>", remote)
                .map_err(|e| log_exception(py, &e, req))?;
            let environ =
                phase_environ(py, req, &errors).map_err(|e| log_exception(py, &e, req))?;
            let mut answers = Vec::with_capacity(funcs.len());
            let mut outcome = Ok(());
            for (name, func) in funcs.iter().zip(found) {
                let Some(func) = func else {
                    answers.push(None);
                    continue;
                };
                match call(name, &func, &environ) {
                    Ok(answer) => answers.push(answer),
                    Err(PhaseError::Raised(e)) => {
                        log_exception(py, &e, req);
                        outcome = Err(PhaseFailed);
                        break;
                    }
                    Err(PhaseError::BadResult(why)) => {
                        let msg =
                            format!("{}{name}() in WSGI script '{path}' {why}.", log_prefix());
                        log_detached(py, Level::Error, &format!("RW0106: {msg}"));
                        outcome = Err(PhaseFailed);
                        break;
                    }
                }
            }
            // A partial last line is logged now, with this request's address.
            if let Err(e) = errors.call_method0(PyString::intern(py, "flush")) {
                log_exception(py, &e, req);
            }
            outcome.map(|()| answers)
        })
        .unwrap_or(Err(PhaseFailed))
    }

    fn call_one<T>(
        &self,
        req: &PhaseRequest<'_>,
        func: &str,
        call: impl for<'py> FnMut(
            &str,
            &Bound<'py, PyAny>,
            &Bound<'py, PyDict>,
        ) -> Result<Option<T>, PhaseError>,
    ) -> Result<T, PhaseFailed> {
        self.call_phase(req, &[func], true, call)?
            .pop()
            .flatten()
            .ok_or(PhaseFailed)
    }

    /// WSGIAccessScript: `allow_access(environ, host)`; `host` is the client's name or
    /// address.
    pub fn allow_access(
        &self,
        req: &PhaseRequest<'_>,
        host: Option<&[u8]>,
    ) -> Result<Access, PhaseFailed> {
        self.call_one(req, "allow_access", |_, func, environ| {
            let py = func.py();
            let host = host.map(|h| latin1(py, h));
            let result = func.call1((environ, host)).map_err(PhaseError::Raised)?;
            if result.is_none() {
                return Ok(Some(Access::Decline));
            }
            match result.cast::<PyBool>() {
                Ok(b) if b.is_true() => Ok(Some(Access::Allow)),
                Ok(_) => Ok(Some(Access::Deny)),
                Err(_) => Err(PhaseError::BadResult(bad_result(
                    &result,
                    "expected True, False or None",
                ))),
            }
        })
    }

    /// WSGIAuthUserScript for Basic authentication: `check_password(environ, user, password)`.
    pub fn check_password(
        &self,
        req: &PhaseRequest<'_>,
        user: &[u8],
        password: &[u8],
    ) -> Result<Password, PhaseFailed> {
        self.call_one(req, "check_password", |_, func, environ| {
            let py = func.py();
            let result = func
                .call1((environ, latin1(py, user), latin1(py, password)))
                .map_err(PhaseError::Raised)?;
            if result.is_none() {
                return Ok(Some(Password::UserNotFound));
            }
            if let Ok(b) = result.cast::<PyBool>() {
                return Ok(Some(if b.is_true() {
                    Password::Granted(None)
                } else {
                    Password::Denied
                }));
            }
            match result
                .cast::<PyString>()
                .ok()
                .and_then(|s| s.to_str().ok().map(str::to_string))
            {
                Some(name) if !name.is_empty() => Ok(Some(Password::Granted(Some(name)))),
                _ => Err(PhaseError::BadResult(bad_result(
                    &result,
                    "expected True, False, None or a non-empty user name string",
                ))),
            }
        })
    }

    /// WSGIAuthUserScript for Digest authentication: `get_realm_hash(environ, user, realm)`.
    pub fn get_realm_hash(
        &self,
        req: &PhaseRequest<'_>,
        user: &[u8],
        realm: &[u8],
    ) -> Result<RealmHash, PhaseFailed> {
        self.call_one(req, "get_realm_hash", |_, func, environ| {
            let py = func.py();
            let result = func
                .call1((environ, latin1(py, user), latin1(py, realm)))
                .map_err(PhaseError::Raised)?;
            if result.is_none() {
                return Ok(Some(RealmHash::UserNotFound));
            }
            match latin1_text(&result) {
                Some(hash) if !hash.is_empty() => Ok(Some(RealmHash::Found(
                    hash.chars().map(|c| c as u8).collect(),
                ))),
                _ => Err(PhaseError::BadResult(bad_result(
                    &result,
                    "expected None or a non-empty string (the hex MD5 of user:realm:password)",
                ))),
            }
        })
    }

    /// WSGIAuthGroupScript: `groups_for_user(environ, user)`, the names of the user's groups.
    pub fn groups_for_user(
        &self,
        req: &PhaseRequest<'_>,
        user: &[u8],
    ) -> Result<Vec<String>, PhaseFailed> {
        self.call_one(req, "groups_for_user", |_, func, environ| {
            let py = func.py();
            let result = func
                .call1((environ, latin1(py, user)))
                .map_err(PhaseError::Raised)?;
            let expected = "expected an iterable of group name strings";
            if result.is_instance_of::<PyString>() || result.is_instance_of::<PyBytes>() {
                return Err(PhaseError::BadResult(bad_result(&result, expected)));
            }
            let iter = result
                .try_iter()
                .map_err(|_| PhaseError::BadResult(bad_result(&result, expected)))?;
            let mut groups = Vec::new();
            for item in iter {
                let item = item.map_err(PhaseError::Raised)?;
                match latin1_text(&item) {
                    Some(name) => groups.push(name),
                    None => {
                        return Err(PhaseError::BadResult(format!(
                            "yielded a group that is not a latin-1 string: {}",
                            bad_result(&item, expected)
                        )));
                    }
                }
            }
            Ok(Some(groups))
        })
    }

    /// WSGIDispatchScript: whichever of `process_group(environ)`, `application_group(environ)`
    /// and `callable_object(environ)` the script defines; None keeps the configured value.
    pub fn dispatch(&self, req: &PhaseRequest<'_>) -> Result<Dispatch, PhaseFailed> {
        let answers = self.call_phase(
            req,
            &["process_group", "application_group", "callable_object"],
            false,
            |_, func, environ| {
                let result = func.call1((environ,)).map_err(PhaseError::Raised)?;
                if result.is_none() {
                    return Ok(None);
                }
                match latin1_text(&result) {
                    Some(value) => Ok(Some(value)),
                    None => Err(PhaseError::BadResult(bad_result(
                        &result,
                        "expected None or a string",
                    ))),
                }
            },
        )?;
        let mut answers = answers.into_iter();
        Ok(Dispatch {
            process_group: answers.next().flatten(),
            application_group: answers.next().flatten(),
            callable_object: answers.next().flatten(),
        })
    }
}

/// How one call failed.
enum PhaseError {
    /// The function raised.
    Raised(PyErr),
    /// It returned something it may not; the text names the value and what was expected.
    BadResult(String),
}

fn log_exception(py: Python<'_>, e: &PyErr, req: &PhaseRequest<'_>) -> PhaseFailed {
    let msg = python_error(py, e, req.script_path, req.app_group);
    log_detached(py, Level::Error, &format!("RW0107: {msg}"));
    PhaseFailed
}

/// The environ a phase function gets: the caller's CGI pairs, `wsgi.errors`, the version
/// tuples, and the groups it runs in (always embedded: the process group is "").
fn phase_environ<'py>(
    py: Python<'py>,
    req: &PhaseRequest<'_>,
    errors: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    for (name, value) in req.env {
        env.set_item(latin1(py, name), latin1(py, value))?;
    }
    env.set_item("wsgi.errors", errors)?;
    env.set_item("mod_wsgi.version", MOD_WSGI_VERSION)?;
    env.set_item("apache.version", process_info().apache_version)?;
    env.set_item("mod_wsgi.process_group", "")?;
    env.set_item("mod_wsgi.application_group", req.app_group)?;
    if let Some(request_rec) = req.apache_request {
        env.set_item(
            "apache.request_rec",
            super::environ::request_rec_capsule(py, request_rec)?,
        )?;
    }
    // The dispatch script decides the callable: it is not shown the configured one.
    if env.contains("mod_wsgi.callable_object")? {
        env.del_item("mod_wsgi.callable_object")?;
    }
    Ok(env)
}
