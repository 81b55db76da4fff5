//! What every phase script shares, whether it runs in an access control phase (`auth`:
//! WSGIAccessScript, WSGIAuthUserScript, WSGIAuthGroupScript) or before the application
//! (`dispatch`: WSGIDispatchScript): the embedded Python host of this Apache child, the
//! script's file and application group, and the request as the script sees it.

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::config::{DirConfig, PhaseScript};
use crate::python::{self, AppHost, PhaseRequest};

use super::embedded::{self, EmbeddedSettings};

/// The embedded Python host, started now if this Apache child has none yet.
fn python_host(r: &Request<'_>, settings: &EmbeddedSettings) -> Option<&'static AppHost> {
    match embedded::ensure_python(settings) {
        Ok(host) => Some(host),
        Err(e) => {
            log::request(
                r,
                Level::Error,
                &format!("RW0053: mod_rwsgi (embedded): {e}"),
            );
            None
        }
    }
}

/// The script file (ServerRoot-relative if relative) and its expanded application group.
fn script_target(
    r: &Request<'_>,
    script: &PhaseScript,
    settings: &EmbeddedSettings,
) -> (String, String) {
    let path = r.pool().absolute_or_server_root(&script.path);
    let uri = super::resource_script_name(settings, r.uri());
    let group = super::expand(script.application_group(), r, &uri);
    (path, group)
}

/// What every phase script (access, authentication, authorisation, dispatch) shares: the
/// embedded Python host (started now if need be; a failure is logged), the script's file
/// and application group, and the request as the script sees it (`env`, taken only once
/// the host is up); then `call`.
pub(super) fn run_phase_script<T>(
    r: &Request<'_>,
    dir: &DirConfig,
    settings: &EmbeddedSettings,
    script: &PhaseScript,
    env: impl FnOnce() -> Vec<(Vec<u8>, Vec<u8>)>,
    call: impl FnOnce(&AppHost, &PhaseRequest<'_>) -> Result<T, python::PhaseFailed>,
) -> Result<T, python::PhaseFailed> {
    let host = python_host(r, settings).ok_or(python::PhaseFailed)?;
    let (path, group) = script_target(r, script, settings);
    let env = env();
    let req = PhaseRequest {
        script_path: &path,
        app_group: &group,
        env: &env,
        script_reloading: dir.script_reloading(),
        apache_request: super::apache_request_rec(r, dir),
    };
    call(host, &req)
}
