//! Part of the composition root: the hooks mod_rwsgi registers with Apache and what each
//! does. check_config checks the whole configuration; post_config (in the Apache parent)
//! builds the embedded Python settings and launches the daemons; child_init prepares each
//! Apache child; translate_name and the handler hand a request to `handler`. The access
//! control phases are in `phase_hooks`. Every `extern "C"` function here is a thin shim
//! that catches panics and calls safe code.

use std::os::raw::c_int;
use std::ptr;

use crate::apache::log::{self, Level};
use crate::apache::pool::Pool;
use crate::apache::state;
use crate::apache::virtual_host::VirtualHost;
use crate::config::{DirConfig, ServerConfig};
use crate::ffi;
use crate::module::accounts::SystemAccounts;
use crate::module::daemon_launch;
use crate::module::daemon_plan::{self, server_python};
use crate::module::panic_guard::guard;
use crate::module::phase_hooks;
use crate::module::slot::{main_slot, server_slot};

use super::{ModuleList, module_ptr};

static AFTER_MOD_ALIAS: ModuleList = ModuleList([c"mod_alias.c".as_ptr(), ptr::null()]);

pub(super) unsafe extern "C" fn register_hooks(p: *mut ffi::apr_pool_t) {
    guard("register_hooks", (), || {
        // SAFETY: Apache has assigned module_index before calling register_hooks.
        log::set_module_index(unsafe { super::rwsgi_module.module_index });
        crate::module::slot::set_module(module_ptr());
        crate::logging::set_backend(log_backend);
        // SAFETY: registering hook functions with Apache's hook registry during
        // register_hooks, as every module does; null predecessor/successor lists.
        unsafe {
            ffi::ap_hook_check_config(
                Some(check_config),
                ptr::null(),
                ptr::null(),
                ffi::APR_HOOK_MIDDLE,
            );
            ffi::ap_hook_post_config(
                Some(post_config),
                ptr::null(),
                ptr::null(),
                ffi::APR_HOOK_MIDDLE,
            );
            ffi::ap_hook_child_init(
                Some(child_init),
                ptr::null(),
                ptr::null(),
                ffi::APR_HOOK_MIDDLE,
            );
            // After mod_alias, as mod_wsgi: an `Alias /static` wins over `WSGIScriptAlias /`.
            ffi::ap_hook_translate_name(
                Some(translate_name),
                AFTER_MOD_ALIAS.0.as_ptr(),
                ptr::null(),
                ffi::APR_HOOK_MIDDLE,
            );
            ffi::ap_hook_handler(
                Some(handler),
                ptr::null(),
                ptr::null(),
                ffi::APR_HOOK_MIDDLE,
            );
        }
        // SAFETY: Apache passes the pool of register_hooks, which outlives the providers' use.
        if let Some(pool) = unsafe { Pool::from_raw(p) } {
            phase_hooks::register(pool);
        }
    });
}

/// The logging facade's backend: Apache's error log (in daemons too: they inherit it).
fn log_backend(level: Level, msg: &str) {
    // Apache escapes newlines in a log line; log a traceback line by line so it stays
    // readable, as mod_wsgi does.
    for line in msg.split('\n') {
        // log-code: none (the backend of the other layers, whose lines carry their codes)
        log::process(level, line);
    }
}

unsafe extern "C" fn post_config(
    pconf: *mut ffi::apr_pool_t,
    _plog: *mut ffi::apr_pool_t,
    _ptemp: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> c_int {
    guard("post_config", ffi::HTTP_INTERNAL_SERVER_ERROR, || {
        // SAFETY: Apache passes its live configuration pool.
        let Some(pool) = (unsafe { Pool::from_raw(pconf) }) else {
            return ffi::OK;
        };
        // SAFETY: Apache passes the main server of the configuration just read.
        let Some(main) = (unsafe { VirtualHost::from_raw(s) }) else {
            return ffi::OK;
        };
        log::set_enabled_levels(main);
        let Some(slot) = main_slot() else {
            return ffi::OK;
        };
        let _ = slot.embedded.set(server_python(&slot.global));
        crate::module::scoreboard::install_scoreboard_reader();
        // Daemons start once per generation, in the real pass (not the dry start-up pass,
        // nor `-t`/`-S`).
        if !state::is_real_config_pass() {
            return ffi::OK;
        }
        let wants_scoreboard = slot.global.daemon_groups.iter().any(|g| g.server_metrics);
        if daemon_launch::defer_until_scoreboard(pool, main, wants_scoreboard) {
            return ffi::OK;
        }
        daemon_launch::launch_daemons(pool, main)
    })
}

/// Dropped with the Apache child's pool, as the child exits: stops embedded Python.
struct StopEmbeddedPython;

impl Drop for StopEmbeddedPython {
    fn drop(&mut self) {
        crate::handler::embedded::stop_python();
    }
}

/// Dropped with the Apache child's pool, before Python stops (cleanups run in reverse
/// order): ends the embedded-mode telemetry reporter, which sends the stopped event.
struct StopEmbeddedReporter(Option<crate::daemon::telemetry::Reporter>);

impl Drop for StopEmbeddedReporter {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.stopping("Apache child exiting", 0);
            r.finish("Apache child exiting", 0);
        }
    }
}

/// Embedded mode with WSGITelemetryService: this Apache child reports as mod_wsgi's do
/// (a reporter that cannot start is logged; the child serves without it).
fn start_embedded_reporter(pool: Option<Pool>, global: &crate::config::GlobalConfig) {
    // In the Apache child before it serves: asking Apache for its version and MPM is safe.
    let (version, mpm) = (state::server_version(), state::mpm_name());
    let plan = crate::module::daemon_plan::telemetry_plan(global, version, &mpm);
    let (Some(pool), Some(plan)) = (pool, plan) else {
        return;
    };
    match crate::daemon::telemetry::Reporter::start(&plan, "") {
        Ok(r) => {
            pool.alloc_rust(StopEmbeddedReporter(Some(r)));
        }
        Err(e) => log::process(
            Level::Warning,
            &format!(
                "RW0202: mod_rwsgi: Apache child (pid {}): no telemetry reporter for 'unix:{}': {e}",
                std::process::id(),
                plan.socket.display()
            ),
        ),
    }
}

/// The scripts every Apache child loads at start (group "" of [`daemon_plan::preloads`]).
fn embedded_preloads(slot: &crate::module::slot::ServerSlot) -> Vec<daemon_plan::Preload> {
    let Some(main) = VirtualHost::main() else {
        return Vec::new();
    };
    let servers = main.iter().filter_map(server_slot).map(|v| &v.server);
    let mut all = daemon_plan::preloads(&slot.global, servers);
    all.retain(|p| p.group.is_empty());
    all
}

unsafe extern "C" fn child_init(pchild: *mut ffi::apr_pool_t, _s: *mut ffi::server_rec) {
    guard("child_init", (), || {
        // WSGIHeapPolicy Off leaves glibc's defaults to the other modules in this child.
        if main_slot().is_none_or(|slot| slot.global.heap_policy) {
            crate::heap::limit_malloc_arenas();
        }
        // SAFETY: Apache passes the child's pool, live until the child exits.
        if let Some(pool) = unsafe { Pool::from_raw(pchild) } {
            pool.alloc_rust(StopEmbeddedPython);
        }
        // Apache children connect to daemons by path; they need no listening socket.
        if let Some(slot) = main_slot() {
            let fds =
                std::mem::take(&mut *slot.listener_fds.lock().unwrap_or_else(|e| e.into_inner()));
            for fd in fds {
                // SAFETY: these descriptors were created by post_config in the parent and
                // are not used by anything in this Apache child.
                unsafe { libc::close(fd) };
            }
            // Embedded mode: when no daemon group exists every WSGI request runs here, so
            // Python starts now (as mod_wsgi does); otherwise only if an embedded request
            // comes. WSGIRestrictEmbedded On keeps WSGI requests out of Apache children; a
            // phase script (WSGIAuthUserScript ...) runs here whatever the mode, as in mod_wsgi.
            // WSGIImportScript process-group=%{GLOBAL} (and WSGIScriptAlias with both groups
            // literal, the process group %{GLOBAL}) preload into each Apache child, also
            // starting Python here, as in mod_wsgi.
            let preloads = embedded_preloads(slot);
            let wsgi_here = !slot.global.restrict_embedded && slot.global.daemon_groups.is_empty();
            let preload_here = !slot.global.restrict_embedded && !preloads.is_empty();
            if wsgi_here || preload_here || slot.global.phase_scripts {
                let embedded = slot.embedded.get_or_init(|| server_python(&slot.global));
                match crate::handler::embedded::ensure_python(embedded) {
                    Ok(host) => {
                        if wsgi_here {
                            // SAFETY: as above, the child's pool.
                            let pool = unsafe { Pool::from_raw(pchild) };
                            start_embedded_reporter(pool, &slot.global);
                        }
                        for p in preloads.iter().filter(|_| preload_here) {
                            // A failure is logged by the loader (with its traceback); the
                            // first request retries it.
                            let _ =
                                host.preload(std::path::Path::new(&p.script), &p.application_group);
                        }
                    }
                    Err(e) => log::process(Level::Error, &format!("RW0008: mod_rwsgi: {e}")),
                }
            }
        }
    });
}

unsafe extern "C" fn translate_name(r: *mut ffi::request_rec) -> c_int {
    guard("translate_name", ffi::DECLINED, || {
        // SAFETY: Apache passes the live request being translated.
        let Some(mut req) = (unsafe { crate::apache::request::Request::from_raw(r) }) else {
            return ffi::DECLINED;
        };
        let Some(server) = req.server() else {
            return ffi::DECLINED;
        };
        match server_slot(server) {
            Some(slot) if !slot.server.script_aliases.is_empty() => {
                crate::handler::translate_name(&mut req, &slot.server)
            }
            _ => ffi::DECLINED,
        }
    })
}

unsafe extern "C" fn handler(r: *mut ffi::request_rec) -> c_int {
    guard("handler", ffi::HTTP_INTERNAL_SERVER_ERROR, || {
        // SAFETY: Apache passes the live request being handled.
        let Some(mut req) = (unsafe { crate::apache::request::Request::from_raw(r) }) else {
            return ffi::DECLINED;
        };
        // SAFETY: our dir-config slot always holds a DirConfig.
        let dir = unsafe { req.dir_config::<DirConfig>(module_ptr()) };
        let server = req.server();
        let default_server = ServerConfig::default();
        let server_conf = server.and_then(server_slot).map(|s| &s.server);
        let default_embedded = crate::handler::embedded::EmbeddedSettings::default();
        let main = main_slot();
        let groups = main
            .and_then(|m| m.daemons.get())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let ctx = crate::handler::HandlerContext {
            server: server_conf.unwrap_or(&default_server),
            dir,
            groups,
            embedded: main
                .and_then(|m| m.embedded.get())
                .unwrap_or(&default_embedded),
            restrict_embedded: main.is_some_and(|m| m.global.restrict_embedded),
            heap_policy: main.is_none_or(|m| m.global.heap_policy),
        };
        crate::handler::handle(&mut req, &ctx)
    })
}

/// After the whole configuration is read (also under `apache2 -t`): cross-directive checks
/// such as a process group that is referenced but never defined.
unsafe extern "C" fn check_config(
    _pconf: *mut ffi::apr_pool_t,
    _plog: *mut ffi::apr_pool_t,
    _ptemp: *mut ffi::apr_pool_t,
    s: *mut ffi::server_rec,
) -> c_int {
    guard("check_config", ffi::HTTP_INTERNAL_SERVER_ERROR, || {
        // SAFETY: Apache passes the main server of the configuration just read.
        let Some(s) = (unsafe { VirtualHost::from_raw(s) }) else {
            return ffi::OK;
        };
        let Some(slot) = main_slot() else {
            return ffi::OK;
        };
        // A group whose venv has another Python runs on that Python's host: only there does
        // its WSGIFreeThreading take effect or not.
        let (on_own_python, other_pythons) =
            super::daemon_hosts::free_threading_asked(&slot.global);
        if let Some(warning) = crate::python::free_threading_warning(on_own_python) {
            log::startup(s, Level::Warning, &format!("RW0009: mod_rwsgi: {warning}"));
        }
        for warning in other_pythons {
            log::startup(s, Level::Warning, &format!("RW0320: mod_rwsgi: {warning}"));
        }
        // Virtual hosts have their final ServerName by now (Apache fixed them up).
        let server_name = |id: usize| {
            s.iter()
                .find(|v| v.as_ptr() as usize == id)
                .map(|v| v.hostname())
        };
        let warnings = slot.global.warnings();
        for warning in warnings
            .into_iter()
            .chain(slot.global.virtual_host_warnings(&server_name))
        {
            log::startup(s, Level::Warning, &format!("RW0010: mod_rwsgi: {warning}"));
        }
        let checked = match slot.global.check(&SystemAccounts) {
            Ok(()) => ffi::OK,
            Err(errors) => {
                for e in errors {
                    log::startup(s, Level::Emerg, &format!("RW0011: mod_rwsgi: {e}"));
                }
                ffi::HTTP_INTERNAL_SERVER_ERROR
            }
        };
        // Every daemon process group needs a daemon host for its Python.
        match super::daemon_hosts::hosts(&slot.global) {
            Ok(_) => checked,
            Err(errors) => {
                for e in errors {
                    log::startup(s, Level::Emerg, &format!("RW0296: mod_rwsgi: {e}"));
                }
                ffi::HTTP_INTERNAL_SERVER_ERROR
            }
        }
    })
}
