//! Composition root: the exported `rwsgi_module`, the directive table, the config-vector
//! callbacks and the hook registration. Every `extern "C"` function here is a thin shim
//! that catches panics and calls safe code.

use std::ffi::{CStr, c_void};
use std::os::raw::{c_char, c_int};
use std::ptr;

use crate::apache::directive_context::{DirectiveContext, Forbid};
use crate::apache::log::{self, Level};
use crate::apache::pool::Pool;
use crate::apache::state;
use crate::apache::virtual_host::VirtualHost;
use crate::config::{self, DirConfig, Directive, Scope, ServerConfig, Target};
use crate::ffi;
use crate::module::accounts::SystemAccounts;
use crate::module::daemon_plan::server_python;
use crate::module::panic_guard::guard;
use crate::module::slot::{ServerSlot, configuring_slot, main_slot, server_slot, with_global};

mod accounts;
mod daemon_launch;
mod daemon_plan;
mod panic_guard;
mod phase_hooks;
mod scoreboard;
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

// ---------------------------------------------------------------------------------------
// Directives.

unsafe extern "C" fn set_directive(
    cmd: *mut ffi::cmd_parms,
    mconfig: *mut c_void,
    args: *const c_char,
) -> *const c_char {
    guard(
        "a configuration directive",
        c"mod_rwsgi: internal error (see error log)".as_ptr(),
        || {
            // SAFETY: Apache passes the cmd_parms of this callback.
            let Some(mut directive) = (unsafe { DirectiveContext::from_raw(cmd) }) else {
                return c"mod_rwsgi: directive without context".as_ptr();
            };
            let raw_args = if args.is_null() {
                String::new()
            } else {
                // SAFETY: Apache passes the directive's arguments as a NUL-terminated string
                // that outlives this call.
                let bytes = unsafe { std::ffi::CStr::from_ptr(args) }.to_bytes();
                match std::str::from_utf8(bytes) {
                    Ok(text) => text.to_owned(),
                    // A path with other bytes would silently name another file: refuse it.
                    Err(e) => {
                        let msg = format!(
                            "{}: the arguments are not valid UTF-8 (byte {} of '{}'); mod_rwsgi \
                             takes paths and names in UTF-8",
                            directive.name(),
                            e.valid_up_to(),
                            bytes.escape_ascii()
                        );
                        return directive.error(&msg);
                    }
                }
            };
            // SAFETY: for directives allowed in directory context, Apache passes the dir config
            // that create_dir_config made (a DirConfig); it is exclusively ours during the call.
            let dir = unsafe { mconfig.cast::<DirConfig>().as_mut() };
            match apply_directive(&mut directive, dir, &raw_args) {
                Ok(()) => ptr::null(),
                Err(msg) => directive.error(&msg),
            }
        },
    )
}

fn apply_directive(
    cmd: &mut DirectiveContext<'_>,
    dir: Option<&mut DirConfig>,
    raw_args: &str,
) -> Result<(), String> {
    let name = cmd.name();
    if name.starts_with('<') {
        return Err(format!("{name}> is not supported by mod_rwsgi yet"));
    }
    let info = config::directive_info(&name).ok_or_else(|| format!("{name}: unknown directive"))?;
    let forbid = match info.scope {
        Scope::ServerOnly => Forbid::AllButMainServer,
        Scope::ServerVhost => Forbid::DirectoryAndHtaccess,
        Scope::ServerVhostDir => Forbid::Htaccess,
        Scope::AnyDir => Forbid::Nothing,
        // Apache gives the AuthConfig class inside <AuthnProviderAlias> (no directory
        // there), never at server level: mod_wsgi's documented provider alias works.
        Scope::DirAuth if cmd.allows_override(ffi::OR_AUTHCFG) && cmd.section_path().is_none() => {
            Forbid::Nothing
        }
        Scope::DirAuth => Forbid::ServerAndHtaccessAllowed,
    };
    cmd.check_context(forbid)?;
    let override_class = match info.scope {
        Scope::DirAuth => Some((ffi::OR_AUTHCFG, "AuthConfig")),
        Scope::AnyDir => Some((ffi::OR_FILEINFO, "FileInfo")),
        _ => None,
    };
    if let Some((bits, class)) = override_class {
        if !cmd.allows_override(bits) {
            return Err(format!(
                "{name} not allowed here (in .htaccess it needs AllowOverride {class})"
            ));
        }
    }
    if !info.implemented {
        return Err(config::not_implemented_error(info.name).to_string());
    }
    let mut parsed = config::parse_directive(info.name, raw_args).map_err(|e| e.to_string())?;
    // A WSGIScriptAliasMatch pattern is compiled now, once, with Apache's PCRE and the
    // regex options in force here, as mod_alias does for AliasMatch: a bad one fails
    // configtest, and requests use this compiled pattern, kept with the alias (freed with
    // the configuration).
    if let Directive::ScriptAlias(alias) = &mut parsed {
        if alias.is_match {
            match crate::apache::regex::Regex::new(&alias.url) {
                Ok(re) => alias.pattern = Some(config::CompiledPattern::new(re)),
                Err(why) => {
                    return Err(config::ConfigError::at(
                        info.name,
                        "regular expression",
                        &alias.url,
                        format!("does not compile: {why}"),
                    )
                    .to_string());
                }
            }
        }
    }
    let location = cmd.location();
    let server = cmd
        .server()
        .ok_or("mod_rwsgi: directive outside a server")?;
    if let Directive::Flag {
        name: "WSGIVerboseDebugging",
        value: true,
    } = parsed
    {
        log::startup(
            server,
            Level::Info,
            &format!(
                "RW0006: WSGIVerboseDebugging at {location} has no effect, as in mod_wsgi 6: use \
                 `LogLevel rwsgi:debug` for more detail"
            ),
        );
    }
    // The virtual host a directive sits in decides which daemon groups it may use.
    let virtual_host = (!server.is_main()).then(|| server.as_ptr() as usize);
    match info.target {
        // SAFETY (every with_global and configuring_slot below): this is a directive
        // callback, and no other reference to a slot is alive when each is made.
        Target::Global => {
            // SAFETY: see above.
            match unsafe {
                with_global(|g| {
                    g.apply_in(parsed, &location, virtual_host)
                        .map_err(|e| e.to_string())
                })
            }? {
                Some(applied) => applied,
                // Server-wide directives are refused in .htaccess by check_context already.
                None => Err(format!(
                    "{name} cannot be changed while Apache serves requests"
                )),
            }
        }
        Target::Server => {
            if let Directive::ScriptAlias(alias) = &parsed {
                if let Some(group) = alias.literal_process_group() {
                    // SAFETY: see above.
                    unsafe {
                        with_global(|g| g.note_group_ref(group, info.name, &location, virtual_host))
                    }?;
                }
            }
            // SAFETY: a directive callback; no other reference to a slot is alive here (the
            // main slot's borrow above has ended: for the main server it is this slot).
            let slot = unsafe { configuring_slot(server) }
                .ok_or_else(|| format!("{name} cannot be changed while Apache serves requests"))?;
            slot.server.apply(parsed).map_err(|e| e.to_string())
        }
        Target::Dir => {
            let named_group = match &parsed {
                Directive::ProcessGroup(selector) => selector.literal_name().map(str::to_owned),
                other => other.handler_script_group(),
            };
            if let Some(group) = named_group {
                // SAFETY: see above.
                unsafe {
                    with_global(|g| g.note_group_ref(&group, info.name, &location, virtual_host))
                }?;
            }
            if let Directive::TrustedProxies(_) | Directive::TrustedProxyHeaders(_) = &parsed {
                let site = config::ProxySite {
                    proxies: matches!(parsed, Directive::TrustedProxies(_)),
                    server: server.as_ptr() as usize,
                    main_server: server.is_main(),
                    section: cmd.section_path(),
                    location: location.clone(),
                };
                // SAFETY: see above.
                unsafe { with_global(|g| g.note_proxy_site(site)) }?;
            }
            phase_hooks::note_directive(cmd, &parsed)?;
            let dir = dir.ok_or("mod_rwsgi: directive outside a directory configuration")?;
            dir.apply(parsed).map_err(|e| e.to_string())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hooks.

/// A NULL-terminated list of module names for hook ordering. Apache keeps the pointer and
/// reads the list when it sorts hooks, long after register_hooks returned: it must be static.
struct ModuleList([*const c_char; 2]);

// SAFETY: the list is immutable and points only at static C string literals.
unsafe impl Sync for ModuleList {}

static AFTER_MOD_ALIAS: ModuleList = ModuleList([c"mod_alias.c".as_ptr(), ptr::null()]);

unsafe extern "C" fn register_hooks(p: *mut ffi::apr_pool_t) {
    guard("register_hooks", (), || {
        // SAFETY: Apache has assigned module_index before calling register_hooks.
        log::set_module_index(unsafe { rwsgi_module.module_index });
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
        if crate::module::scoreboard::defer_until_scoreboard(
            pool,
            main,
            wants_scoreboard,
            launch_daemons,
        ) {
            return ffi::OK;
        }
        launch_daemons(pool, main)
    })
}

/// Starts the daemon groups of the configuration just read (post_config, or pre_mpm when
/// a group waits for the scoreboard) and keeps what Apache children need to reach them.
fn launch_daemons(pool: Pool, main: VirtualHost) -> c_int {
    let Some(slot) = main_slot() else {
        return ffi::OK;
    };
    let servers = main.iter().filter_map(server_slot).map(|v| &v.server);
    let preloads = crate::module::daemon_plan::preloads(&slot.global, servers);
    match crate::module::daemon_launch::start_daemons(pool, main, &slot.global, &preloads) {
        Ok(Some(started)) => {
            let _ = slot.daemons.set(started.targets);
            *slot.listener_fds.lock().unwrap_or_else(|e| e.into_inner()) = started.listener_fds;
            ffi::OK
        }
        Ok(None) => ffi::OK,
        Err(msg) => {
            log::startup(main, Level::Emerg, &format!("RW0007: mod_rwsgi: {msg}"));
            ffi::HTTP_INTERNAL_SERVER_ERROR
        }
    }
}

/// Dropped with the Apache child's pool, as the child exits: stops embedded Python.
struct StopEmbeddedPython;

impl Drop for StopEmbeddedPython {
    fn drop(&mut self) {
        crate::handler::embedded::stop_python();
    }
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
            let wsgi_here = !slot.global.restrict_embedded && slot.global.daemon_groups.is_empty();
            if wsgi_here || slot.global.phase_scripts {
                let embedded = slot.embedded.get_or_init(|| server_python(&slot.global));
                if let Err(e) = crate::handler::embedded::ensure_python(embedded) {
                    log::process(Level::Error, &format!("RW0008: mod_rwsgi: {e}"));
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
        if let Some(warning) = crate::python::free_threading_warning(slot.global.free_threading) {
            log::startup(s, Level::Warning, &format!("RW0009: mod_rwsgi: {warning}"));
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
        match slot.global.check(&SystemAccounts) {
            Ok(()) => ffi::OK,
            Err(errors) => {
                for e in errors {
                    log::startup(s, Level::Emerg, &format!("RW0011: mod_rwsgi: {e}"));
                }
                ffi::HTTP_INTERNAL_SERVER_ERROR
            }
        }
    })
}

/// Apache's compiled regular expressions are the configuration's WSGIScriptAliasMatch
/// patterns (the config layer only names the operation).
impl config::UrlPattern for crate::apache::regex::Regex {
    fn captures(&self, subject: &[u8]) -> Option<[Option<(usize, usize)>; config::PATTERN_GROUPS]> {
        const _: () = assert!(crate::apache::regex::MAX_MATCH == config::PATTERN_GROUPS);
        crate::apache::regex::Regex::captures(self, subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
