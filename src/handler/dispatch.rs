//! WSGIDispatchScript: per request, before the application runs, the script's
//! `process_group(environ)`, `application_group(environ)` and `callable_object(environ)` (each
//! optional) may replace the configured values. This calls the script; [`super::route`]
//! applies its answer: a returned group is expanded as the directive's value would be
//! (`%{GLOBAL}` is embedded mode), and the handler then refuses a process group that is not
//! defined, naming it.

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::config::{DirConfig, PhaseScript};
use crate::ffi;
use crate::python::{Dispatch, PhaseFailed};

use super::HandlerContext;
use super::route::{Refusal, Selection};

/// The dispatch script's answer, and the script's path for log lines.
pub(super) struct Answer {
    pub answer: Dispatch,
    pub path: String,
}

/// Calls `script`'s functions for the request `sel` selects; `Err` is the status to answer
/// with (the failure logged).
pub(super) fn call(
    r: &mut Request<'_>,
    ctx: &HandlerContext<'_>,
    dir: &DirConfig,
    script: &PhaseScript,
    sel: &Selection,
) -> Result<Answer, i32> {
    // The script sees the environ the application would (mod_wsgi runs it after building it).
    r.add_cgi_variables();
    r.ensure_log_ids();
    let env = super::owned_environ(
        r,
        dir,
        &sel.script_name,
        &super::cgi_env::collapse_slashes(&sel.path_info),
        sel.pass_authorization,
        // mod_wsgi.handler_script: not known to the dispatch script.
        b"",
    );
    let (answer, path) = super::phase_script::run_phase_script(
        r,
        dir,
        ctx.embedded,
        script,
        || env,
        |host, req| {
            let answer = host.dispatch(req)?;
            Ok((answer, req.script_path.to_owned()))
        },
    )
    .map_err(|PhaseFailed| ffi::HTTP_INTERNAL_SERVER_ERROR)?;
    Ok(Answer { answer, path })
}

/// Logs a refusal caused by the dispatch script's answer (the script at `path`); nothing
/// for any other refusal.
pub(super) fn log_refusal(r: &Request<'_>, refusal: &Refusal, path: &str) {
    match refusal {
        Refusal::BadDispatchGroup { what, error: e } => log::request(
            r,
            Level::Error,
            &format!(
                "RW0060: mod_rwsgi: {what}() in WSGI dispatch script '{path}' returned an \
                 invalid group: {e}"
            ),
        ),
        Refusal::EmptyDispatchCallable => log::request(
            r,
            Level::Error,
            &format!(
                "RW0061: mod_rwsgi: callable_object() in WSGI dispatch script '{path}' returned an \
                 empty name."
            ),
        ),
        _ => {}
    }
}
