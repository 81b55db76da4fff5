//! The entry points of Apache's access control phases: the access_checker hook
//! (WSGIAccessScript), the `wsgi` authentication provider (WSGIAuthUserScript) and the
//! `wsgi-group` authorisation provider (WSGIAuthGroupScript). Each is a thin shim: panics are
//! caught, the work is done by `handler::auth`.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use super::{ModuleList, guard, main_slot, module_ptr};
use crate::apache::auth;
use crate::apache::directive_context::DirectiveContext as ApacheDirective;
use crate::apache::log::{self, Level};
use crate::apache::pool::Pool;
use crate::apache::request::Request;
use crate::config::{DirConfig, Directive};
use crate::ffi;
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
    auth::register_authn_provider(pool, c"wsgi", &AUTHN_PROVIDER);
    auth::register_authz_provider(pool, c"wsgi-group", &AUTHZ_PROVIDER);
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
            // SAFETY: reading Apache's global state; a .htaccess file is read while the
            // MPM runs, when the server-wide configuration must not change.
            let serving =
                unsafe { ffi::ap_state_query(ffi::AP_SQ_MAIN_STATE) } == ffi::AP_SQ_MS_RUN_MPM;
            if !serving {
                // SAFETY: called from apply_directive, inside a directive callback while
                // the configuration is read, holding no other slot reference.
                unsafe { crate::server_slot::with_global(|g| g.phase_scripts = true) }?;
            }
        }
        Directive::Flag {
            name: "WSGIGroupAuthoritative",
            value: false,
        } => match cmd.server() {
            Some(server) => log::startup(
                server,
                Level::Warning,
                &format!(
                    "RW0079: WSGIGroupAuthoritative Off at {} has no effect, as in mod_wsgi 6: with \
                 Apache 2.4's authorization providers a user outside the groups of `Require \
                 wsgi-group` is denied by it; use <RequireAny> to let another Require grant \
                 access",
                    cmd.location()
                ),
            ),
            None => log::process(
                Level::Warning,
                "RW0080: WSGIGroupAuthoritative Off has no effect",
            ),
        },
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
    guard("WSGIAccessScript", ffi::HTTP_INTERNAL_SERVER_ERROR, || {
        // SAFETY: Apache passes the live request being checked.
        let Some((mut req, dir)) = (unsafe { request_and_dir(r) }) else {
            return ffi::DECLINED;
        };
        if dir.access_script.is_none() {
            return ffi::DECLINED;
        }
        with_settings(|s| crate::handler::auth::check_access(&mut req, dir, s))
    })
}

unsafe extern "C" fn check_password(
    r: *mut ffi::request_rec,
    user: *const c_char,
    password: *const c_char,
) -> ffi::authn_status {
    guard(
        "WSGIAuthUserScript",
        ffi::authn_status_AUTH_GENERAL_ERROR,
        || {
            // SAFETY: Apache passes the live request being authenticated.
            let Some((mut req, dir)) = (unsafe { request_and_dir(r) }) else {
                return ffi::authn_status_AUTH_GENERAL_ERROR;
            };
            let (user, password) = (c_bytes(user), c_bytes(password));
            with_settings(|s| {
                crate::handler::auth::check_password(&mut req, dir, s, user, password)
            })
        },
    )
}

unsafe extern "C" fn get_realm_hash(
    r: *mut ffi::request_rec,
    user: *const c_char,
    realm: *const c_char,
    rethash: *mut *mut c_char,
) -> ffi::authn_status {
    guard(
        "WSGIAuthUserScript",
        ffi::authn_status_AUTH_GENERAL_ERROR,
        || {
            // SAFETY: Apache passes the live request being authenticated.
            let Some((mut req, dir)) = (unsafe { request_and_dir(r) }) else {
                return ffi::authn_status_AUTH_GENERAL_ERROR;
            };
            let (user, realm) = (c_bytes(user), c_bytes(realm));
            let (status, hash) = with_settings(|s| {
                crate::handler::auth::get_realm_hash(&mut req, dir, s, user, realm)
            });
            if let Some(hash) = hash {
                let copy = req.pool().c_bytes(&hash);
                // SAFETY: mod_auth_digest passes a valid out-pointer; the hash lives in the
                // request pool, as the provider contract asks.
                unsafe { *rethash = copy.cast_mut() };
            }
            status
        },
    )
}

unsafe extern "C" fn check_authorization(
    r: *mut ffi::request_rec,
    require_args: *const c_char,
    _parsed: *const c_void,
) -> ffi::authz_status {
    guard(
        "WSGIAuthGroupScript",
        ffi::authz_status_AUTHZ_GENERAL_ERROR,
        || {
            // SAFETY: Apache passes the live request being authorised.
            let Some((mut req, dir)) = (unsafe { request_and_dir(r) }) else {
                return ffi::authz_status_AUTHZ_GENERAL_ERROR;
            };
            let args = String::from_utf8_lossy(c_bytes(require_args)).into_owned();
            with_settings(|s| crate::handler::auth::check_groups(&mut req, dir, s, &args))
        },
    )
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
            match crate::handler::auth::required_groups(&args) {
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
