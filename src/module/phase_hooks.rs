//! The entry points of Apache's access control phases: the access_checker hook
//! (WSGIAccessScript), the `wsgi` authentication provider (WSGIAuthUserScript) and the
//! `wsgi-group` authorisation provider (WSGIAuthGroupScript). Each is a thin shim: panics are
//! caught, the work is done by `handler::auth`, and what every one of them shares is
//! `answer_in_phase`.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use super::slot::main_slot;
use super::{ModuleList, guard, module_ptr};
use crate::apache::auth as apache_auth;
use crate::apache::directive_context::DirectiveContext as ApacheDirective;
use crate::apache::log::{self, Level};
use crate::apache::pool::Pool;
use crate::apache::request::Request;
use crate::config::{DirConfig, Directive};
use crate::ffi;
use crate::handler::auth;
use crate::handler::embedded::EmbeddedSettings;

static AUTHN_PROVIDER: ffi::authn_provider = ffi::authn_provider {
    check_password: Some(check_password),
    get_realm_hash: Some(get_realm_hash),
};

static AUTHZ_PROVIDER: ffi::authz_provider = ffi::authz_provider {
    check_authorization: Some(check_authorization),
    parse_require_line: Some(parse_require_line),
};

/// As mod_wsgi orders its access checker: after mod_ssl's, before mod_authz_host's.
static BEFORE_ACCESS: ModuleList = ModuleList([c"mod_ssl.c".as_ptr(), ptr::null()]);
static AFTER_ACCESS: ModuleList = ModuleList([c"mod_authz_host.c".as_ptr(), ptr::null()]);

/// Registers the providers and the hook (from register_hooks).
pub(super) fn register(pool: Pool) {
    apache_auth::register_authn_provider(pool, c"wsgi", &AUTHN_PROVIDER);
    apache_auth::register_authz_provider(pool, c"wsgi-group", &AUTHZ_PROVIDER);
    // SAFETY: registering a hook function during register_hooks; the ordering lists are
    // static, NULL-terminated and outlive the registry.
    unsafe {
        ffi::ap_hook_access_checker(
            Some(access_checker),
            BEFORE_ACCESS.0.as_ptr(),
            AFTER_ACCESS.0.as_ptr(),
            ffi::APR_HOOK_MIDDLE,
        );
    }
}

/// What a directive read in the server configuration means beyond its directory setting:
/// a phase script makes Apache children start Python at child_init; `WSGIGroupAuthoritative
/// Off` gets a note, since with Apache 2.4's providers it changes nothing (as in mod_wsgi 6).
pub(super) fn note_directive(cmd: &ApacheDirective<'_>, parsed: &Directive) -> Result<(), String> {
    match parsed {
        Directive::Other {
            name:
                "WSGIAccessScript" | "WSGIAuthUserScript" | "WSGIAuthGroupScript" | "WSGIDispatchScript",
            ..
        } => {
            // SAFETY: called from apply_directive, inside a directive callback, holding no
            // other slot reference. From a .htaccess file (read while Apache serves) this
            // changes nothing: with_global leaves the server-wide configuration alone then.
            unsafe { crate::module::slot::with_global(|g| g.phase_scripts = true) }?;
        }
        Directive::Flag {
            name: "WSGIGroupAuthoritative",
            value: false,
        } => {
            let location = cmd.location();
            match cmd.server() {
                Some(server) if crate::module::slot::reading_configuration() => log::startup(
                    server,
                    Level::Warning,
                    &format!(
                        "RW0079: WSGIGroupAuthoritative Off at {location} has no effect, as in \
                         mod_wsgi 6: with Apache 2.4's authorization providers a user outside \
                         the groups of `Require wsgi-group` is denied by it; use <RequireAny> \
                         to let another Require grant access"
                    ),
                ),
                // A .htaccess file is read again for every request: a warning each time
                // would flood the log, so this is for `LogLevel rwsgi:debug` only.
                _ => log::process_at!(
                    Level::Debug,
                    "RW0080: WSGIGroupAuthoritative Off at {location} has no effect, as in \
                     mod_wsgi 6"
                ),
            }
        }
        _ => {}
    }
    Ok(())
}

/// The embedded Python settings of this generation (set in post_config).
fn with_settings<T>(f: impl FnOnce(&EmbeddedSettings) -> T) -> T {
    match main_slot().and_then(|m| m.embedded.get()) {
        Some(settings) => f(settings),
        None => f(&EmbeddedSettings::default()),
    }
}

/// A request phase as its entry points answer Apache when they cannot ask the script.
struct Phase<T> {
    /// Names the phase in the panic line.
    name: &'static str,
    /// The answer when the entry point panicked.
    panicked: T,
    /// The answer for a request without a directory configuration of ours.
    unconfigured: T,
}

const ACCESS: Phase<c_int> = Phase {
    name: "WSGIAccessScript",
    panicked: ffi::HTTP_INTERNAL_SERVER_ERROR,
    unconfigured: ffi::DECLINED,
};
const AUTHN: Phase<ffi::authn_status> = Phase {
    name: "WSGIAuthUserScript",
    panicked: ffi::authn_status_AUTH_GENERAL_ERROR,
    unconfigured: ffi::authn_status_AUTH_GENERAL_ERROR,
};
const AUTHZ: Phase<ffi::authz_status> = Phase {
    name: "WSGIAuthGroupScript",
    panicked: ffi::authz_status_AUTHZ_GENERAL_ERROR,
    unconfigured: ffi::authz_status_AUTHZ_GENERAL_ERROR,
};

/// The body of every request-phase entry point: under the panic guard, `answer` gets the
/// request, its merged directory configuration and the embedded settings. `handler::auth`
/// does the work: script, Python host, outcome, log lines.
///
/// # Safety
/// `r` is the request Apache passed to the running hook or provider.
unsafe fn answer_in_phase<T: Copy>(
    phase: &Phase<T>,
    r: *mut ffi::request_rec,
    answer: impl FnOnce(&mut Request<'_>, &DirConfig, &EmbeddedSettings) -> T,
) -> T {
    guard(phase.name, phase.panicked, || {
        // SAFETY: the caller's promise.
        let Some((mut req, dir)) = (unsafe { request_and_dir(r) }) else {
            return phase.unconfigured;
        };
        with_settings(|settings| answer(&mut req, dir, settings))
    })
}

/// The request and its merged directory configuration.
///
/// # Safety
/// `r` is the request Apache passed to the running hook or provider.
unsafe fn request_and_dir<'r>(r: *mut ffi::request_rec) -> Option<(Request<'r>, &'r DirConfig)> {
    // SAFETY: the caller's promise.
    let req = unsafe { Request::from_raw(r) }?;
    // SAFETY: our dir-config slot always holds a DirConfig.
    let dir = unsafe { req.dir_config::<DirConfig>(module_ptr()) }?;
    Some((req, dir))
}

fn c_bytes<'a>(p: *const c_char) -> &'a [u8] {
    if p.is_null() {
        b""
    } else {
        // SAFETY: Apache passes NUL-terminated strings that live through the call.
        unsafe { CStr::from_ptr(p) }.to_bytes()
    }
}

unsafe extern "C" fn access_checker(r: *mut ffi::request_rec) -> c_int {
    // SAFETY: Apache passes the live request being checked.
    unsafe { answer_in_phase(&ACCESS, r, auth::check_access) }
}

unsafe extern "C" fn check_password(
    r: *mut ffi::request_rec,
    user: *const c_char,
    password: *const c_char,
) -> ffi::authn_status {
    let answer = |req: &mut Request<'_>, dir: &DirConfig, settings: &EmbeddedSettings| {
        auth::check_password(req, dir, settings, c_bytes(user), c_bytes(password))
    };
    // SAFETY: Apache passes the live request being authenticated.
    unsafe { answer_in_phase(&AUTHN, r, answer) }
}

unsafe extern "C" fn get_realm_hash(
    r: *mut ffi::request_rec,
    user: *const c_char,
    realm: *const c_char,
    rethash: *mut *mut c_char,
) -> ffi::authn_status {
    let answer = |req: &mut Request<'_>, dir: &DirConfig, settings: &EmbeddedSettings| {
        let (status, hash) =
            auth::get_realm_hash(req, dir, settings, c_bytes(user), c_bytes(realm));
        if let Some(hash) = hash {
            let copy = req.pool().c_bytes(&hash);
            // SAFETY: mod_auth_digest passes a valid out-pointer; the hash lives in the
            // request pool, as the provider contract asks.
            unsafe { *rethash = copy.cast_mut() };
        }
        status
    };
    // SAFETY: Apache passes the live request being authenticated.
    unsafe { answer_in_phase(&AUTHN, r, answer) }
}

unsafe extern "C" fn check_authorization(
    r: *mut ffi::request_rec,
    require_args: *const c_char,
    _parsed: *const c_void,
) -> ffi::authz_status {
    let answer = |req: &mut Request<'_>, dir: &DirConfig, settings: &EmbeddedSettings| {
        let args = String::from_utf8_lossy(c_bytes(require_args)).into_owned();
        auth::check_groups(req, dir, settings, &args)
    };
    // SAFETY: Apache passes the live request being authorised.
    unsafe { answer_in_phase(&AUTHZ, r, answer) }
}

/// Checks a `Require wsgi-group ...` line when the configuration is read.
unsafe extern "C" fn parse_require_line(
    cmd: *mut ffi::cmd_parms,
    require_line: *const c_char,
    _parsed: *mut *const c_void,
) -> *const c_char {
    guard(
        "Require wsgi-group",
        c"mod_rwsgi: internal error (see error log)".as_ptr(),
        || {
            let args = String::from_utf8_lossy(c_bytes(require_line)).into_owned();
            match auth::required_groups(&args) {
                Ok(_) => ptr::null(),
                Err(e) => {
                    // SAFETY: Apache passes the live cmd_parms of the Require directive.
                    match unsafe { ApacheDirective::from_raw(cmd) } {
                        Some(d) => d.error(&e),
                        None => c"Require wsgi-group: expected at least one group name".as_ptr(),
                    }
                }
            }
        },
    )
}
