//! Part of the composition root: what a directive does. Apache hands every mod_wsgi
//! directive to `set_directive` (the command table is in `mod.rs`); `apply_directive`
//! checks where it may appear, parses it with the config model and stores it in the
//! server-wide configuration, the server's slot or the directory's configuration. Nothing
//! here runs once Apache serves requests.

use std::ffi::c_void;
use std::os::raw::c_char;
use std::ptr;

use crate::apache::directive_context::{DirectiveContext, Forbid};
use crate::apache::log::{self, Level};
use crate::apache::virtual_host::VirtualHost;
use crate::config::{self, DirConfig, Directive, DirectiveInfo, Scope, Target};
use crate::ffi;
use crate::module::panic_guard::guard;
use crate::module::phase_hooks;
use crate::module::slot::{configuring_slot, with_global};

pub(super) unsafe extern "C" fn set_directive(
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
    if name.eq_ignore_ascii_case("<WSGIInterpreterOptions") {
        return interpreter_options_section(cmd, raw_args);
    }
    if name.starts_with('<') {
        return Err(format!("{name}> is not supported by mod_rwsgi yet"));
    }
    let info = config::directive_info(&name).ok_or_else(|| format!("{name}: unknown directive"))?;
    check_directive_context(cmd, info, &name)?;
    if !info.implemented {
        return Err(config::not_implemented_error(info.name).to_string());
    }
    let mut parsed = config::parse_directive(info.name, raw_args).map_err(|e| e.to_string())?;
    if let Directive::Flag {
        name: "WSGIPerInterpreterGIL",
        value: true,
    } = parsed
    {
        // Refused here, where the embedded Python's version is known (config/ is pure).
        if let Some(refusal) = crate::python::per_interpreter_gil_refusal() {
            return Err(refusal);
        }
    }
    compile_script_alias_pattern(info, &mut parsed)?;
    let location = cmd.location();
    let server = cmd
        .server()
        .ok_or("mod_rwsgi: directive outside a server")?;
    note_verbose_debugging(server, &parsed, &location);
    let site = Site {
        // The virtual host a directive sits in decides which daemon groups it may use.
        virtual_host: (!server.is_main()).then(|| server.as_ptr() as usize),
        server,
        location,
    };
    match info.target {
        Target::Global => apply_global(parsed, &name, &site),
        Target::Server => apply_server(parsed, info, &name, &site),
        Target::Dir => apply_dir(cmd, dir, parsed, info, &site),
    }
}

/// `<WSGIInterpreterOptions ...>`: main server configuration only; the directives inside
/// are read here (Apache does not run them), each checked against the section's list.
fn interpreter_options_section(
    cmd: &mut DirectiveContext<'_>,
    raw_args: &str,
) -> Result<(), String> {
    cmd.check_context(Forbid::AllButMainServer)?;
    let location = cmd.location();
    let mut section =
        config::InterpreterOptions::open(raw_args, &location).map_err(|e| e.to_string())?;
    for (name, args, at, nested) in cmd.children() {
        if nested {
            return Err(format!(
                "{name}> at {at}: no section is allowed inside <WSGIInterpreterOptions>"
            ));
        }
        section
            .apply(&name, &args)
            .map_err(|e| format!("{e} (at {at})"))?;
    }
    if section.per_interpreter_gil == Some(true) {
        if let Some(refusal) = crate::python::per_interpreter_gil_refusal() {
            return Err(format!("{refusal} (in {location})"));
        }
    }
    // SAFETY: a directive callback; no other reference to a slot is alive here.
    match unsafe { with_global(|g| g.interpreter_options.push(section)) }? {
        Some(()) => Ok(()),
        None => {
            Err("<WSGIInterpreterOptions> cannot be changed while Apache serves requests".into())
        }
    }
}

/// Where a directive sits: its server, that server as a virtual host (None for the main
/// server), and its location for messages.
struct Site {
    server: VirtualHost,
    virtual_host: Option<usize>,
    location: String,
}

/// Refuses a directive where its scope does not allow it, or in a .htaccess file whose
/// AllowOverride lacks its class.
fn check_directive_context(
    cmd: &mut DirectiveContext<'_>,
    info: &DirectiveInfo,
    name: &str,
) -> Result<(), String> {
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
    Ok(())
}

/// A WSGIScriptAliasMatch pattern is compiled now, once, with Apache's PCRE and the
/// regex options in force here, as mod_alias does for AliasMatch: a bad one fails
/// configtest, and requests use this compiled pattern, kept with the alias (freed with
/// the configuration).
fn compile_script_alias_pattern(
    info: &DirectiveInfo,
    parsed: &mut Directive,
) -> Result<(), String> {
    if let Directive::ScriptAlias(alias) = parsed {
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
    Ok(())
}

/// WSGIVerboseDebugging On is accepted and logged as having no effect.
fn note_verbose_debugging(server: VirtualHost, parsed: &Directive, location: &str) {
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
}

// apply_global, apply_server and apply_dir run only from a directive callback
// (`apply_directive`), and no other reference to a slot is alive when each with_global and
// configuring_slot in them is made.

/// A server-wide directive, into the global configuration.
fn apply_global(parsed: Directive, name: &str, site: &Site) -> Result<(), String> {
    // SAFETY: a directive callback; no other reference to a slot is alive here.
    match unsafe {
        with_global(|g| {
            g.apply_in(parsed, &site.location, site.virtual_host)
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

/// A per-server directive, into the server's slot (noting the daemon group it names).
fn apply_server(
    parsed: Directive,
    info: &DirectiveInfo,
    name: &str,
    site: &Site,
) -> Result<(), String> {
    if let Directive::ScriptAlias(alias) = &parsed {
        if let Some(group) = alias.literal_process_group() {
            // SAFETY: a directive callback; no other reference to a slot is alive here.
            unsafe {
                with_global(|g| {
                    g.note_group_ref(group, info.name, &site.location, site.virtual_host)
                })
            }?;
        }
    }
    // SAFETY: a directive callback; no other reference to a slot is alive here (the
    // main slot's borrow above has ended: for the main server it is this slot).
    let slot = unsafe { configuring_slot(site.server) }
        .ok_or_else(|| format!("{name} cannot be changed while Apache serves requests"))?;
    slot.server.apply(parsed).map_err(|e| e.to_string())
}

/// A directory directive, into the directory's configuration (noting the daemon group it
/// names, trusted proxy sites and phase scripts).
fn apply_dir(
    cmd: &DirectiveContext<'_>,
    dir: Option<&mut DirConfig>,
    parsed: Directive,
    info: &DirectiveInfo,
    site: &Site,
) -> Result<(), String> {
    let named_group = match &parsed {
        Directive::ProcessGroup(selector) => selector.literal_name().map(str::to_owned),
        other => other.handler_script_group(),
    };
    if let Some(group) = named_group {
        // SAFETY: a directive callback; no other reference to a slot is alive here.
        unsafe {
            with_global(|g| g.note_group_ref(&group, info.name, &site.location, site.virtual_host))
        }?;
    }
    if let Directive::TrustedProxies(_) | Directive::TrustedProxyHeaders(_) = &parsed {
        let proxy_site = config::ProxySite {
            proxies: matches!(parsed, Directive::TrustedProxies(_)),
            server: site.server.as_ptr() as usize,
            main_server: site.server.is_main(),
            section: cmd.section_path(),
            location: site.location.clone(),
        };
        // SAFETY: a directive callback; no other reference to a slot is alive here.
        unsafe { with_global(|g| g.note_proxy_site(proxy_site)) }?;
    }
    phase_hooks::note_directive(cmd, &parsed)?;
    let dir = dir.ok_or("mod_rwsgi: directive outside a directory configuration")?;
    dir.apply(parsed).map_err(|e| e.to_string())
}

/// Apache's compiled regular expressions are the configuration's WSGIScriptAliasMatch
/// patterns (the config layer only names the operation).
impl config::UrlPattern for crate::apache::regex::Regex {
    fn captures(&self, subject: &[u8]) -> Option<[Option<(usize, usize)>; config::PATTERN_GROUPS]> {
        const _: () = assert!(crate::apache::regex::MAX_MATCH == config::PATTERN_GROUPS);
        crate::apache::regex::Regex::captures(self, subject)
    }
}
