//! WSGIDispatchScript: per request, before the application runs, the script's
//! `process_group(environ)`, `application_group(environ)` and `callable_object(environ)` (each
//! optional) may replace the configured values. A returned group is expanded as the
//! directive's value would be (`%{GLOBAL}` is embedded mode); the handler then refuses a
//! process group that is not defined, naming it.

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::config::{DirConfig, GroupSelector};
use crate::ffi;
use crate::python::PhaseFailed;

use super::HandlerContext;

/// Where the request goes: process group, application group, callable.
pub(super) struct Targets {
    pub group: String,
    pub app_group: String,
    pub callable: String,
}

/// Applies the dispatch script of `dir` (if any) to `targets`; `Err` is the status to
/// answer with (logged).
pub(super) fn apply(
    r: &mut Request<'_>,
    ctx: &HandlerContext<'_>,
    dir: &DirConfig,
    script_name: &[u8],
    path_info: &[u8],
    pass_auth: bool,
    targets: Targets,
) -> Result<Targets, i32> {
    let Some(script) = dir.dispatch_script.as_ref() else {
        return Ok(targets);
    };
    // The script sees the environ the application would (mod_wsgi runs it after building it).
    r.add_cgi_variables();
    r.ensure_log_ids();
    let env = super::owned_environ(
        r,
        dir,
        script_name,
        &super::cgi_env::collapse_slashes(path_info),
        pass_auth,
        // mod_wsgi.handler_script: not known to the dispatch script.
        b"",
    );
    let script_name = super::resource_script_name(ctx.embedded, script_name);
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
    let expand = |what: &str, value: Option<String>, current: String| -> Result<String, i32> {
        let Some(value) = value else {
            return Ok(current);
        };
        match GroupSelector::parse("WSGIDispatchScript", &value) {
            Ok(selector) => Ok(super::expand(&selector, r, &script_name)),
            Err(e) => {
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "RW0060: mod_rwsgi: {what}() in WSGI dispatch script '{path}' returned an \
                         invalid group: {e}"
                    ),
                );
                Err(ffi::HTTP_INTERNAL_SERVER_ERROR)
            }
        }
    };
    let group = expand("process_group", answer.process_group, targets.group)?;
    let app_group = expand(
        "application_group",
        answer.application_group,
        targets.app_group,
    )?;
    let callable = match answer.callable_object {
        Some(c) if c.is_empty() => {
            log::request(
                r,
                Level::Error,
                &format!(
                    "RW0061: mod_rwsgi: callable_object() in WSGI dispatch script '{path}' returned an \
                     empty name."
                ),
            );
            return Err(ffi::HTTP_INTERNAL_SERVER_ERROR);
        }
        Some(c) => c,
        None => targets.callable,
    };
    Ok(Targets {
        group,
        app_group,
        callable,
    })
}
