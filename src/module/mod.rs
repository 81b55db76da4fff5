//! The composition root, the only code that sees every layer. This file holds what Apache
//! loads: the exported `rwsgi_module`, its command table and the config-vector callbacks.
//! Beside it: `directives` (what each directive does), `hooks` (the hooks and what they
//! do), `phase_hooks` (the access control phases), `slot` (the per-server configuration
//! slot), `panic_guard` (which every `extern "C"` entry runs in), `accounts` (the system's
//! users and groups), `daemon_plan` (pure: configuration -> daemon plans), `daemon_launch`
//! (the Apache parent's side of daemon mode) and `scoreboard` (`mod_wsgi.server_metrics()`'s
//! reader of Apache's scoreboard). Every `extern "C"` function is a thin shim that catches
//! panics and calls safe code.

use std::ffi::{CStr, c_void};
use std::os::raw::c_char;
use std::ptr;

use crate::apache::pool::Pool;
use crate::config::{DirConfig, ServerConfig};
use crate::ffi;
use crate::module::directives::set_directive;
use crate::module::hooks::register_hooks;
use crate::module::panic_guard::guard;
use crate::module::slot::ServerSlot;

mod accounts;
mod daemon_hosts;
mod daemon_launch;
mod daemon_plan;
mod directives;
mod hooks;
mod panic_guard;
mod phase_hooks;
mod scoreboard;

/// A daemon host's way to map Apache's scoreboard (`rwsgi-daemon`'s composition root passes it on).
pub use scoreboard::attach_scoreboard;
mod slot;

// ---------------------------------------------------------------------------------------
// The module structure Apache loads with `LoadModule rwsgi_module .../mod_rwsgi.so`.

/// Apache writes `module_index`, `next` and `dynamic_load_handle` into this structure, so
/// it must live in writable memory (a read-only static segfaults `apache2 -t`).
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut rwsgi_module: ffi::module = ffi::module {
    version: ffi::RWSGI_MMN_MAJOR,
    minor_version: ffi::RWSGI_MMN_MINOR,
    module_index: -1,
    name: c"mod_rwsgi.c".as_ptr(),
    dynamic_load_handle: ptr::null_mut(),
    next: ptr::null_mut(),
    magic: ffi::RWSGI_MODULE_MAGIC_COOKIE,
    rewrite_args: None,
    create_dir_config: Some(create_dir_config),
    merge_dir_config: Some(merge_dir_config),
    create_server_config: Some(create_server_config),
    merge_server_config: Some(merge_server_config),
    // SAFETY: only the address of the static table is taken; Apache reads it read-only.
    cmds: &raw const COMMANDS as *const ffi::command_rec,
    register_hooks: Some(register_hooks),
    flags: 0,
};

/// A pointer to the module structure, for Apache calls that take `module *`.
pub(crate) fn module_ptr() -> *const ffi::module {
    &raw const rwsgi_module
}

/// A NULL-terminated list of module names for hook ordering. Apache keeps the pointer and
/// reads the list when it sorts hooks, long after register_hooks returned: it must be static.
pub(crate) struct ModuleList(pub(crate) [*const c_char; 2]);

// SAFETY: the list is immutable and points only at static C string literals.
unsafe impl Sync for ModuleList {}

/// The name of every directive mod_wsgi registers, so Apache hands each one to us. What a
/// directive means, where it may appear and whether it is implemented lives in
/// `config::DIRECTIVES`; a unit test keeps the two lists equal.
macro_rules! command_table {
    ($($name:literal),* $(,)?) => {
        pub(crate) const DIRECTIVE_NAMES: &[&CStr] = &[$(
            match CStr::from_bytes_with_nul(concat!($name, "\0").as_bytes()) {
                Ok(c) => c,
                Err(_) => panic!("directive name with NUL"),
            }
        ),*];
        static mut COMMANDS: [ffi::command_rec; [$($name),*].len() + 1] = {
            let mut table = [ffi::command_rec {
                name: ptr::null(),
                func: ffi::cmd_func { raw_args: None },
                cmd_data: ptr::null_mut(),
                req_override: 0,
                args_how: 0,
                errmsg: ptr::null(),
            }; [$($name),*].len() + 1];
            let mut i = 0;
            while i < DIRECTIVE_NAMES.len() {
                table[i].name = DIRECTIVE_NAMES[i].as_ptr();
                table[i].func = ffi::cmd_func { raw_args: Some(set_directive) };
                // Apache lets the directive through anywhere; `set_directive` then applies
                // the exact contexts mod_wsgi allows (config::Scope), with Apache's own
                // "cannot occur within ..." messages, and in .htaccess the AllowOverride
                // class (FileInfo, or AuthConfig for the auth scripts).
                table[i].req_override =
                    ffi::RSRC_CONF | ffi::ACCESS_CONF | ffi::OR_FILEINFO | ffi::OR_AUTHCFG;
                table[i].args_how = ffi::cmd_how_RAW_ARGS;
                table[i].errmsg = c"a mod_wsgi directive (see mod_rwsgi's README)".as_ptr();
                i += 1;
            }
            table
        };
    };
}

command_table![
    "WSGIScriptAlias",
    "WSGIScriptAliasMatch",
    "WSGIDaemonProcess",
    "WSGIProcessGroup",
    "WSGIApplicationGroup",
    "WSGIPythonHome",
    "WSGIPythonPath",
    "WSGIVerboseDebugging",
    "WSGIRestrictStdout",
    "WSGIRestrictStdin",
    "WSGIRestrictSignal",
    "WSGIRestrictEmbedded",
    "WSGIRestrictProcess",
    "WSGIScriptReloading",
    "WSGISocketPrefix",
    "WSGISocketRotation",
    "WSGIPassAuthorization",
    "WSGICallableObject",
    "WSGIImportScript",
    "WSGIChunkedRequest",
    "WSGITrustedProxies",
    "WSGITrustedProxyHeaders",
    "WSGIMapHEADToGET",
    "WSGIErrorOverride",
    "WSGIIgnoreActivity",
    "WSGIEnableSendfile",
    "WSGIPassApacheRequest",
    "WSGIDispatchScript",
    "WSGIHandlerScript",
    "WSGIAccessScript",
    "WSGIAuthUserScript",
    "WSGIAuthGroupScript",
    "WSGIGroupAuthoritative",
    "WSGIAcceptMutex",
    "WSGICaseSensitivity",
    "WSGIPythonOptimize",
    "WSGIDontWriteBytecode",
    "WSGIPythonWarnings",
    "WSGIPythonHashSeed",
    "WSGIPythonEggs",
    "WSGIDestroyInterpreter",
    "WSGISwitchInterval",
    "WSGIPerInterpreterGIL",
    "WSGIFreeThreading",
    "WSGIServerMetrics",
    "WSGIHeapPolicy",
    "WSGITelemetryService",
    "WSGISlowRequests",
    "WSGITelemetryOptions",
    "<WSGIInterpreterOptions",
];

// ---------------------------------------------------------------------------------------
// Config vectors.

unsafe extern "C" fn create_dir_config(p: *mut ffi::apr_pool_t, _dir: *mut c_char) -> *mut c_void {
    guard("create_dir_config", ptr::null_mut(), || {
        // SAFETY: Apache passes the live pool the config vector belongs to.
        match unsafe { Pool::from_raw(p) } {
            Some(pool) => pool.alloc_rust(DirConfig::default()).cast(),
            None => ptr::null_mut(),
        }
    })
}

unsafe extern "C" fn merge_dir_config(
    p: *mut ffi::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    guard("merge_dir_config", add, || {
        // SAFETY: both configs were created by create_dir_config/merge_dir_config above and
        // live in pools that outlive this merge; the result goes into Apache's pool `p`.
        let (pool, base_conf, add_conf) = unsafe {
            (
                Pool::from_raw(p),
                base.cast::<DirConfig>().as_ref(),
                add.cast::<DirConfig>().as_ref(),
            )
        };
        match (pool, base_conf, add_conf) {
            (Some(pool), Some(b), Some(a)) => pool.alloc_rust(DirConfig::merge(b, a)).cast(),
            _ => add,
        }
    })
}

unsafe extern "C" fn create_server_config(
    p: *mut ffi::apr_pool_t,
    _s: *mut ffi::server_rec,
) -> *mut c_void {
    guard("create_server_config", ptr::null_mut(), || {
        // SAFETY: Apache passes the live configuration pool.
        match unsafe { Pool::from_raw(p) } {
            Some(pool) => pool.alloc_rust(ServerSlot::default()).cast(),
            None => ptr::null_mut(),
        }
    })
}

unsafe extern "C" fn merge_server_config(
    p: *mut ffi::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    guard("merge_server_config", add, || {
        // SAFETY: both slots were created by create_server_config in this generation.
        let (pool, base_slot, add_slot) = unsafe {
            (
                Pool::from_raw(p),
                base.cast::<ServerSlot>().as_ref(),
                add.cast::<ServerSlot>().as_ref(),
            )
        };
        match (pool, base_slot, add_slot) {
            (Some(pool), Some(b), Some(a)) => pool
                .alloc_rust(ServerSlot {
                    server: ServerConfig::merge(&b.server, &a.server),
                    ..ServerSlot::default()
                })
                .cast(),
            _ => add,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn command_table_matches_config_model() {
        let mut ours: Vec<String> = DIRECTIVE_NAMES
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('<'))
            .collect();
        let mut model: Vec<String> = config::DIRECTIVES
            .iter()
            .map(|d| d.name.to_string())
            .collect();
        ours.sort();
        model.sort();
        assert_eq!(ours, model);
    }
}
