//! Python in Apache's access control phases, run in the Apache child as mod_wsgi does:
//! WSGIAccessScript (access_checker), WSGIAuthUserScript (the `wsgi` authentication
//! provider for Basic and Digest) and WSGIAuthGroupScript (`Require wsgi-group NAME...`).
//!
//! Each answer maps to Apache's: an exception, a script that does not load, a missing
//! function or an answer of the wrong type is an internal server error (500), logged with
//! the traceback or the value, never a crash.

use crate::apache::auth::AuthRequest;
use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::config::{DirConfig, PhaseScript};
use crate::ffi;
use crate::python::{self, Access, AppHost, Password, PhaseRequest, RealmHash};

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

/// Runs `call` on the script's Python host with the cut-down auth environ.
fn with_script<T>(
    r: &Request<'_>,
    dir: &DirConfig,
    settings: &EmbeddedSettings,
    script: &PhaseScript,
    call: impl FnOnce(&AppHost, &PhaseRequest<'_>) -> Result<T, python::PhaseFailed>,
) -> Result<T, python::PhaseFailed> {
    run_phase_script(r, dir, settings, script, || r.auth_environ(), call)
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

/// access_checker: WSGIAccessScript's `allow_access(environ, host)`: True lets the request
/// on, False is 403, None leaves the decision to the other access checks.
pub fn check_access(r: &mut Request<'_>, dir: &DirConfig, settings: &EmbeddedSettings) -> i32 {
    let Some(script) = dir.access_script.as_ref() else {
        return ffi::DECLINED;
    };
    let host = r.remote_host().map(<[u8]>::to_vec);
    match with_script(r, dir, settings, script, |h, req| {
        h.allow_access(req, host.as_deref())
    }) {
        Ok(Access::Allow) => ffi::OK,
        Ok(Access::Decline) => ffi::DECLINED,
        Ok(Access::Deny) => {
            log::request(
                r,
                Level::Error,
                &format!(
                    "RW0054: mod_rwsgi: client denied by WSGIAccessScript '{}': '{}'.",
                    script.path,
                    String::from_utf8_lossy(r.filename().unwrap_or(r.uri()))
                ),
            );
            ffi::HTTP_FORBIDDEN
        }
        Err(python::PhaseFailed) => ffi::HTTP_INTERNAL_SERVER_ERROR,
    }
}

/// The WSGIAuthUserScript of this request, or an error-log line saying it is missing.
fn auth_user_script<'d>(r: &Request<'_>, dir: &'d DirConfig) -> Option<&'d PhaseScript> {
    let script = dir.auth_user_script.as_ref();
    if script.is_none() {
        log::request(
            r,
            Level::Error,
            "RW0055: mod_rwsgi: the 'wsgi' authentication provider is used here, but no \
             WSGIAuthUserScript applies to this location.",
        );
    }
    script
}

/// The `wsgi` provider for Basic authentication: `check_password(environ, user, password)`.
pub fn check_password(
    r: &mut Request<'_>,
    dir: &DirConfig,
    settings: &EmbeddedSettings,
    user: &[u8],
    password: &[u8],
) -> ffi::authn_status {
    let Some(script) = auth_user_script(r, dir) else {
        return ffi::authn_status_AUTH_GENERAL_ERROR;
    };
    match with_script(r, dir, settings, script, |h, req| {
        h.check_password(req, user, password)
    }) {
        Ok(Password::Granted(name)) => {
            if let Some(name) = name {
                r.set_user(name.as_bytes());
            }
            ffi::authn_status_AUTH_GRANTED
        }
        Ok(Password::Denied) => ffi::authn_status_AUTH_DENIED,
        Ok(Password::UserNotFound) => ffi::authn_status_AUTH_USER_NOT_FOUND,
        Err(python::PhaseFailed) => ffi::authn_status_AUTH_GENERAL_ERROR,
    }
}

/// The `wsgi` provider for Digest authentication: `get_realm_hash(environ, user, realm)`.
/// Returns the status and, when found, the hash for Apache to compare.
pub fn get_realm_hash(
    r: &mut Request<'_>,
    dir: &DirConfig,
    settings: &EmbeddedSettings,
    user: &[u8],
    realm: &[u8],
) -> (ffi::authn_status, Option<Vec<u8>>) {
    let Some(script) = auth_user_script(r, dir) else {
        return (ffi::authn_status_AUTH_GENERAL_ERROR, None);
    };
    match with_script(r, dir, settings, script, |h, req| {
        h.get_realm_hash(req, user, realm)
    }) {
        Ok(RealmHash::Found(hash)) => (ffi::authn_status_AUTH_USER_FOUND, Some(hash)),
        Ok(RealmHash::UserNotFound) => (ffi::authn_status_AUTH_USER_NOT_FOUND, None),
        Err(python::PhaseFailed) => (ffi::authn_status_AUTH_GENERAL_ERROR, None),
    }
}

/// The group names of a `Require wsgi-group ...` line (quotes as Apache's words).
pub fn required_groups(require_args: &str) -> Result<Vec<String>, String> {
    let groups =
        crate::config::tokenize("Require wsgi-group", require_args).map_err(|e| e.to_string())?;
    if groups.is_empty() {
        return Err("Require wsgi-group: expected at least one group name".into());
    }
    Ok(groups)
}

/// `Require wsgi-group NAME...`: granted when WSGIAuthGroupScript's
/// `groups_for_user(environ, user)` names one of the groups.
pub fn check_groups(
    r: &mut Request<'_>,
    dir: &DirConfig,
    settings: &EmbeddedSettings,
    require_args: &str,
) -> ffi::authz_status {
    let Some(user) = r.user().map(<[u8]>::to_vec) else {
        return ffi::authz_status_AUTHZ_DENIED_NO_USER;
    };
    let Some(script) = dir.auth_group_script.as_ref() else {
        log::request(
            r,
            Level::Error,
            "RW0056: mod_rwsgi: 'Require wsgi-group' is used here, but no WSGIAuthGroupScript applies \
             to this location.",
        );
        return ffi::authz_status_AUTHZ_GENERAL_ERROR;
    };
    let required = match required_groups(require_args) {
        Ok(g) => g,
        Err(e) => {
            log::request(r, Level::Error, &format!("RW0057: mod_rwsgi: {e}"));
            return ffi::authz_status_AUTHZ_GENERAL_ERROR;
        }
    };
    let groups = match with_script(r, dir, settings, script, |h, req| {
        h.groups_for_user(req, &user)
    }) {
        Ok(g) => g,
        Err(python::PhaseFailed) => return ffi::authz_status_AUTHZ_GENERAL_ERROR,
    };
    if groups.iter().any(|g| required.contains(g)) {
        return ffi::authz_status_AUTHZ_GRANTED;
    }
    log::request(
        r,
        Level::Error,
        &format!(
            "RW0058: mod_rwsgi: authorization of user '{}' to access '{}' failed: not a member of \
             {} (member of: {}).",
            String::from_utf8_lossy(&user),
            String::from_utf8_lossy(r.uri()),
            required.join(" or "),
            if groups.is_empty() {
                "no group".to_string()
            } else {
                groups.join(", ")
            }
        ),
    );
    ffi::authz_status_AUTHZ_DENIED
}

#[cfg(test)]
mod tests {
    use super::required_groups;

    #[test]
    fn require_line_words() {
        assert_eq!(
            required_groups("admins \"secret agents\"").unwrap(),
            vec!["admins".to_string(), "secret agents".to_string()]
        );
        assert!(
            required_groups("  ")
                .unwrap_err()
                .contains("at least one group")
        );
    }
}
