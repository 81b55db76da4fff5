//! L2 configuration model: mod_wsgi's directives parsed into typed values.
//!
//! Contract: pure Rust, `std` only (no ffi, libc, nix or pyo3). `module`
//! hands each directive's name and raw argument string to [`parse_directive`]
//! and applies the result to the structure named by [`DirectiveInfo::target`]:
//! [`GlobalConfig`] (server-wide), [`ServerConfig`] (per virtual host) or
//! [`DirConfig`] (per directory). Every error names the directive and the bad
//! token, at parse time, so `apachectl -t` reports it. System facts (users,
//! groups) come in through the [`Host`] trait, checked once with
//! [`GlobalConfig::check`] after the whole configuration is read.

mod args;
mod daemon_group;
mod directive_table;
mod directives;
mod error;
#[cfg(test)]
pub(crate) mod fuzz_harness;
mod handler_script;
mod interpreter_options;
mod not_implemented;
mod phase_script;
mod script_alias;
mod selector;
mod telemetry;
mod tokenizer;
mod trusted_proxy;

pub use daemon_group::{
    DAEMON_OPTIONS, DEFAULT_HEADER_BUFFER_SIZE, DEFAULT_LISTEN_BACKLOG,
    DEFAULT_RESPONSE_BUFFER_SIZE, DaemonGroupSpec, DaemonOption, OptionValue, ResolvedIds,
    WEBSOCKET_MAX_MESSAGE_SIZE_LIMIT, daemon_option, seconds_text,
};
pub use directive_table::{
    DIRECTIVES, DirectiveInfo, Scope, Target, UNSUPPORTED_SECTIONS, directive_info,
};
pub use directives::{Directive, MapHeadToGet, parse_directive, parse_directive_words};
pub use error::ConfigError;
pub use handler_script::{HANDLER_CALLABLE, HandlerScript};
pub use interpreter_options::{
    BaseOptions, InterpreterOptions, ResolvedOptions, SECTION_DIRECTIVES, resolve,
    resolve_free_threading,
};
pub use not_implemented::not_implemented_error;
pub use phase_script::PhaseScript;
pub use script_alias::{
    CompiledPattern, ImportScript, Interface, PATTERN_GROUPS, ScriptAlias, UrlPattern,
};
pub use selector::{GroupSelector, SelectorContext, expand_callable_object};
pub use telemetry::{Telemetry, telemetry_of};
pub use tokenizer::tokenize;
pub use trusted_proxy::{
    EnvPair, IpNet, KNOWN_PROXY_HEADERS, ProxyHeaderCategory, ProxyNote,
    apply_trusted_proxy_headers, canonical_proxy_header, forwarded_for_client, header_env_name,
    proxy_header_category,
};

#[cfg(test)]
pub(crate) use daemon_group::tests::FakeHost;

/// System facts the checks need; the real implementation is `module/accounts.rs`,
/// tests use a fake. User and group values may also be written `#123`.
pub trait Host {
    /// The uid of a user name (getpwnam).
    fn uid_of(&self, user: &str) -> Option<u32>;
    /// The gid of a group name (getgrnam).
    fn gid_of(&self, group: &str) -> Option<u32>;
    /// The primary gid of a uid (getpwuid); `None` if there is no such user.
    fn primary_gid_of_uid(&self, uid: u32) -> Option<u32>;
    /// The home directory of a uid (getpwuid).
    fn home_of_uid(&self, uid: u32) -> Option<String>;
    /// The user name of a uid (getpwuid).
    fn user_name_of_uid(&self, uid: u32) -> Option<String>;
}

/// A literal process-group name used somewhere in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// The group name.
    pub name: String,
    /// The directive that names it.
    pub directive: String,
    /// "file:line".
    pub location: String,
    /// The virtual host whose section holds the directive (an opaque server id); None
    /// outside every `<VirtualHost>`.
    pub virtual_host: Option<usize>,
}

/// Where a WSGITrustedProxies or WSGITrustedProxyHeaders was given, for
/// [`GlobalConfig::warnings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySite {
    /// WSGITrustedProxies (true) or WSGITrustedProxyHeaders (false).
    pub proxies: bool,
    /// Which server (virtual host) it is in: an opaque id.
    pub server: usize,
    /// Whether that is the main server, whose settings virtual hosts inherit.
    pub main_server: bool,
    /// The enclosing `<Directory>`/`<Location>` path; None at server level.
    pub section: Option<String>,
    /// "file:line".
    pub location: String,
}

/// Server-wide settings: the daemon groups and the main-server-only directives.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    /// Every WSGIDaemonProcess, in configuration order.
    pub daemon_groups: Vec<DaemonGroupSpec>,
    /// Every WSGIImportScript, in configuration order.
    pub import_scripts: Vec<ImportScript>,
    /// WSGIPythonHome, `prefix[:exec_prefix]`.
    pub python_home: Option<String>,
    /// WSGIPythonPath entries.
    pub python_path: Vec<String>,
    /// WSGISocketPrefix as written; `None` = `<runtime dir>/wsgi`.
    pub socket_prefix: Option<String>,
    /// WSGISocketRotation as written (mod_wsgi's default On). Socket paths never rotate in
    /// mod_rwsgi: a written `On` is refused while parsing.
    pub socket_rotation: bool,
    /// WSGIRestrictStdout (default Off).
    pub restrict_stdout: bool,
    /// WSGIRestrictEmbedded (default Off).
    pub restrict_embedded: bool,
    /// WSGIVerboseDebugging (default Off; a no-op since mod_wsgi 6.0).
    pub verbose_debugging: bool,
    /// WSGIRestrictStdin (default Off).
    pub restrict_stdin: bool,
    /// WSGIRestrictSignal (default On).
    pub restrict_signal: bool,
    /// WSGICaseSensitivity (default On).
    pub case_sensitivity: bool,
    /// WSGIDontWriteBytecode (default Off).
    pub dont_write_bytecode: bool,
    /// WSGIDestroyInterpreter (default On).
    pub destroy_interpreter: bool,
    /// WSGIPerInterpreterGIL (default Off): named application groups' sub-interpreters get
    /// their own GIL. `On` is refused when parsed on Python < 3.12 (`module/directives.rs`,
    /// `python::per_interpreter_gil_refusal`).
    pub per_interpreter_gil: bool,
    /// WSGIFreeThreading (default Off).
    pub free_threading: bool,
    /// WSGIServerMetrics (default Off).
    pub server_metrics: bool,
    /// WSGIHeapPolicy, mod_rwsgi's own (default On): Apache children limit glibc to two
    /// malloc arenas and trim the heap now and then (`crate::heap`); Off leaves glibc's
    /// defaults to the modules sharing that heap.
    pub heap_policy: bool,
    /// WSGIPythonOptimize (default 0).
    pub python_optimize: u8,
    /// WSGIPythonWarnings filters, in configuration order.
    pub python_warnings: Vec<String>,
    /// WSGIPythonHashSeed; `None` = random (the default).
    pub python_hash_seed: Option<u32>,
    /// WSGIPythonEggs (embedded mode; daemons use `python-eggs=`).
    pub python_eggs: Option<String>,
    /// WSGISwitchInterval seconds (embedded mode; daemons use `switch-interval=`).
    pub switch_interval: Option<f64>,
    /// Every `<WSGIInterpreterOptions>` section, in configuration order.
    pub interpreter_options: Vec<InterpreterOptions>,
    /// Validated arguments of server-wide directives without a typed form yet
    /// (WSGIAcceptMutex, telemetry, ...), in order.
    pub other: Vec<(&'static str, Vec<String>)>,
    /// Literal process-group references, checked by [`GlobalConfig::check`].
    pub group_refs: Vec<GroupRef>,
    /// Every WSGITrustedProxies/WSGITrustedProxyHeaders, for [`GlobalConfig::warnings`].
    pub proxy_sites: Vec<ProxySite>,
    /// A WSGIAccessScript, WSGIAuthUserScript, WSGIAuthGroupScript or WSGIDispatchScript in
    /// the server configuration: Apache children start Python at child_init, as mod_wsgi
    /// does (one in a `.htaccess` file starts it on first use).
    pub phase_scripts: bool,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            daemon_groups: Vec::new(),
            import_scripts: Vec::new(),
            python_home: None,
            python_path: Vec::new(),
            socket_prefix: None,
            socket_rotation: true,
            restrict_stdout: false,
            restrict_embedded: false,
            verbose_debugging: false,
            restrict_stdin: false,
            restrict_signal: true,
            case_sensitivity: true,
            dont_write_bytecode: false,
            destroy_interpreter: true,
            per_interpreter_gil: false,
            free_threading: false,
            server_metrics: false,
            heap_policy: true,
            python_optimize: 0,
            python_warnings: Vec::new(),
            python_hash_seed: None,
            python_eggs: None,
            switch_interval: None,
            interpreter_options: Vec::new(),
            other: Vec::new(),
            group_refs: Vec::new(),
            proxy_sites: Vec::new(),
            phase_scripts: false,
        }
    }
}

/// The error for a directive applied to the wrong configuration structure
/// (a bug in the caller, reported rather than ignored).
fn wrong_target(d: &Directive, structure: &str) -> ConfigError {
    let name = d.directive_name();
    ConfigError::new(
        name,
        format!("internal error: {name} does not belong in the {structure} configuration"),
    )
}

impl GlobalConfig {
    /// Applies a [`Target::Global`] directive read at `location` ("file:line").
    /// A second WSGIDaemonProcess with the same name is an error naming it. A
    /// WSGIImportScript's literal process group is recorded as a reference.
    pub fn apply(&mut self, d: Directive, location: &str) -> Result<(), ConfigError> {
        self.apply_in(d, location, None)
    }

    /// [`apply`](Self::apply) for a directive read inside the `<VirtualHost>` of server
    /// `virtual_host` (an opaque id; None outside every virtual host): a WSGIDaemonProcess
    /// there may serve only virtual hosts with that one's ServerName, as in mod_wsgi.
    pub fn apply_in(
        &mut self,
        d: Directive,
        location: &str,
        virtual_host: Option<usize>,
    ) -> Result<(), ConfigError> {
        match d {
            Directive::DaemonProcess(mut spec) => {
                if let Some(existing) = self.group(&spec.name) {
                    return Err(ConfigError::at(
                        "WSGIDaemonProcess",
                        "process group",
                        spec.name.as_str(),
                        format!("already defined at {}", existing.defined_at),
                    ));
                }
                spec.defined_at = location.to_owned();
                spec.virtual_host = virtual_host;
                self.daemon_groups.push(*spec);
            }
            Directive::ImportScript(mut script) => {
                script.defined_at = location.to_owned();
                if let Some(group) = script.literal_process_group() {
                    self.note_group_ref(group, "WSGIImportScript", location, virtual_host);
                }
                self.import_scripts.push(script);
            }
            Directive::PythonHome(home) => self.python_home = (!home.is_empty()).then_some(home),
            Directive::PythonPath(path) => self.python_path = path,
            Directive::SocketPrefix(prefix) => self.socket_prefix = Some(prefix),
            // mod_rwsgi keeps one socket path per group across restarts, so Apache children
            // of either generation reach a live daemon during a graceful restart; per
            // generation paths (On) would send the old children's new requests nowhere.
            Directive::Flag {
                name: "WSGISocketRotation",
                value: true,
            } => {
                return Err(ConfigError::at(
                    "WSGISocketRotation",
                    "argument",
                    "On",
                    "WSGISocketRotation On is not supported by mod_rwsgi, by design: daemon \
                     sockets keep one path per group across restarts (mod_wsgi's Off), so \
                     Apache children still finishing keep-alive connections after a graceful \
                     restart reach the new daemons, where with On their requests fail; remove \
                     the directive or set it Off",
                ));
            }
            Directive::PythonOptimize(level) => self.python_optimize = level,
            Directive::PythonWarnings(filter) => self.python_warnings.push(filter),
            Directive::PythonHashSeed(seed) => self.python_hash_seed = seed,
            Directive::PythonEggs(dir) => self.python_eggs = Some(dir),
            Directive::SwitchInterval(seconds) => self.switch_interval = Some(seconds),
            Directive::Flag { name, value } => {
                let slot = match name {
                    "WSGISocketRotation" => &mut self.socket_rotation,
                    "WSGIRestrictStdout" => &mut self.restrict_stdout,
                    "WSGIRestrictEmbedded" => &mut self.restrict_embedded,
                    "WSGIVerboseDebugging" => &mut self.verbose_debugging,
                    "WSGIRestrictStdin" => &mut self.restrict_stdin,
                    "WSGIRestrictSignal" => &mut self.restrict_signal,
                    "WSGICaseSensitivity" => &mut self.case_sensitivity,
                    "WSGIDontWriteBytecode" => &mut self.dont_write_bytecode,
                    "WSGIDestroyInterpreter" => &mut self.destroy_interpreter,
                    "WSGIPerInterpreterGIL" => &mut self.per_interpreter_gil,
                    "WSGIFreeThreading" => &mut self.free_threading,
                    "WSGIServerMetrics" => &mut self.server_metrics,
                    "WSGIHeapPolicy" => &mut self.heap_policy,
                    _ => {
                        return Err(wrong_target(
                            &Directive::Flag { name, value },
                            "server-wide",
                        ));
                    }
                };
                *slot = value;
            }
            Directive::Other { name, args }
                if directive_info(name).is_some_and(|i| i.target == Target::Global) =>
            {
                self.other.push((name, args));
            }
            other => return Err(wrong_target(&other, "server-wide")),
        }
        Ok(())
    }

    /// Records a literal process-group name used by `directive` at `location`;
    /// [`GlobalConfig::check`] reports it if no WSGIDaemonProcess defines it.
    /// `virtual_host` is the server whose `<VirtualHost>` holds the directive (None outside
    /// every virtual host).
    pub fn note_group_ref(
        &mut self,
        name: &str,
        directive: &str,
        location: &str,
        virtual_host: Option<usize>,
    ) {
        let r = GroupRef {
            name: name.to_owned(),
            directive: directive.to_owned(),
            location: location.to_owned(),
            virtual_host,
        };
        if !self.group_refs.contains(&r) {
            self.group_refs.push(r);
        }
    }

    /// Records where a WSGITrustedProxies or WSGITrustedProxyHeaders was given.
    pub fn note_proxy_site(&mut self, site: ProxySite) {
        self.proxy_sites.push(site);
    }

    /// What configtest should warn about, once the configuration is read: every
    /// WSGITrustedProxyHeaders with no WSGITrustedProxies in its own section or at server
    /// level (its virtual host's or the main server's). mod_wsgi then trusts every client
    /// to send those headers, as it documents, and so does mod_rwsgi. Every WSGIAcceptMutex.
    /// And every request-serving directive that names a `threads=0` group (a service-script
    /// group): mod_wsgi accepts that configuration, so it does not fail, but such a request
    /// is refused (500) at once.
    pub fn warnings(&self) -> Vec<String> {
        let guarded = |h: &ProxySite| {
            self.proxy_sites.iter().any(|p| {
                p.proxies
                    && ((p.server == h.server && (p.section.is_none() || p.section == h.section))
                        || (p.main_server && p.section.is_none()))
            })
        };
        let accept_mutex = self
            .other
            .iter()
            .filter(|(name, _)| *name == "WSGIAcceptMutex")
            .map(|(_, args)| {
                format!(
                    "WSGIAcceptMutex {} has no effect in mod_rwsgi: the processes of a daemon \
                     group take connections from their shared socket without an accept mutex",
                    args.join(" ")
                )
            });
        self.proxy_sites
            .iter()
            .filter(|h| !h.proxies && !guarded(h))
            .map(|h| {
                format!(
                    "WSGITrustedProxyHeaders at {} has no WSGITrustedProxies: as in mod_wsgi, \
                     every client is then trusted to set the listed headers (client address, \
                     host, scheme ...); list your proxies with WSGITrustedProxies",
                    h.location
                )
            })
            .chain(accept_mutex)
            .chain(interpreter_options::section_warnings(
                &self.interpreter_options,
                self.per_interpreter_gil,
                &std::iter::once("")
                    .chain(self.daemon_groups.iter().map(|g| g.name.as_str()))
                    .collect::<Vec<_>>(),
            ))
            .chain(self.service_group_refs())
            .collect()
    }

    /// What configtest should warn about once virtual hosts have their names
    /// (`server_name` gives a virtual host's ServerName by its id): every literal reference,
    /// inside one virtual host, to a daemon group defined inside another virtual host with a
    /// different ServerName. As mod_wsgi documents, such a group serves only virtual hosts
    /// with its own ServerName, so the requests it would get are refused (500).
    pub fn virtual_host_warnings(
        &self,
        server_name: &dyn Fn(usize) -> Option<String>,
    ) -> Vec<String> {
        self.group_refs
            .iter()
            .filter_map(|r| {
                let group = self.group(&r.name)?;
                let (used_in, defined_in) = (r.virtual_host?, group.virtual_host?);
                let (here, there) = (server_name(used_in)?, server_name(defined_in)?);
                (used_in != defined_in && here != there).then(|| {
                    format!(
                        "{} at {} (virtual host {here}) selects daemon process group '{}', \
                         defined at {} inside virtual host {there}: as in mod_wsgi, only \
                         virtual hosts with ServerName {there} may use it, so such requests \
                         are refused (500); define the group outside every <VirtualHost> to \
                         share it",
                        r.directive, r.location, r.name, group.defined_at
                    )
                })
            })
            .collect()
    }

    /// Warnings for references to `threads=0` groups by directives that send requests there
    /// (WSGIImportScript is how a service script starts, so not it).
    fn service_group_refs(&self) -> impl Iterator<Item = String> + '_ {
        self.group_refs
            .iter()
            .filter(|r| r.directive != "WSGIImportScript")
            .filter(|r| self.group(&r.name).is_some_and(|g| g.threads == 0))
            .map(|r| {
                format!(
                    "{} at {} selects daemon process group '{}', which has threads=0 (a \
                     service-script group that serves no requests): a request sent there is \
                     refused with 500 at once",
                    r.directive, r.location, r.name
                )
            })
    }

    /// The telemetry settings (WSGITelemetryService and its companions); None without
    /// WSGITelemetryService.
    pub fn telemetry(&self) -> Option<Telemetry> {
        telemetry_of(&self.other)
    }

    /// The daemon group called `name` (exact, case-sensitive match).
    pub fn group(&self, name: &str) -> Option<&DaemonGroupSpec> {
        self.daemon_groups.iter().find(|g| g.name == name)
    }

    /// Checks the whole configuration once it is read: every referenced
    /// process group is defined, and every daemon group's users and groups
    /// resolve (and none runs as root). Returns every problem found.
    pub fn check(&self, host: &dyn Host) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        for r in &self.group_refs {
            if self.group(&r.name).is_none() {
                errors.push(ConfigError::at(
                    r.directive.as_str(),
                    "process group",
                    r.name.as_str(),
                    format!(
                        "is referenced at {} but no WSGIDaemonProcess defines it",
                        r.location
                    ),
                ));
            }
        }
        for group in &self.daemon_groups {
            if let Err(e) = group.resolve_ids(host) {
                errors.extend(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Per-virtual-host settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerConfig {
    /// WSGIScriptAlias / WSGIScriptAliasMatch, in configuration order.
    pub script_aliases: Vec<ScriptAlias>,
}

impl ServerConfig {
    /// Applies a [`Target::Server`] directive.
    pub fn apply(&mut self, d: Directive) -> Result<(), ConfigError> {
        match d {
            Directive::ScriptAlias(alias) => {
                self.script_aliases.push(alias);
                Ok(())
            }
            other => Err(wrong_target(&other, "virtual host")),
        }
    }

    /// A virtual host's config over the main server's: the vhost's aliases are
    /// tried first, then the main server's (mod_wsgi's merge order).
    pub fn merge(base: &Self, vhost: &Self) -> Self {
        ServerConfig {
            script_aliases: vhost
                .script_aliases
                .iter()
                .chain(&base.script_aliases)
                .cloned()
                .collect(),
        }
    }
}

/// Per-directory settings (also the server/vhost defaults). `None` means "not
/// set here"; the getters give the effective value with mod_wsgi's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirConfig {
    /// WSGIProcessGroup.
    pub process_group: Option<GroupSelector>,
    /// WSGIApplicationGroup.
    pub application_group: Option<GroupSelector>,
    /// WSGICallableObject.
    pub callable_object: Option<String>,
    /// WSGIPassAuthorization.
    pub pass_authorization: Option<bool>,
    /// WSGIScriptReloading.
    pub script_reloading: Option<bool>,
    /// WSGIChunkedRequest.
    pub chunked_request: Option<bool>,
    /// WSGIMapHEADToGET.
    pub map_head_to_get: Option<MapHeadToGet>,
    /// WSGITrustedProxies (several directives in one context accumulate).
    pub trusted_proxies: Option<Vec<IpNet>>,
    /// WSGITrustedProxyHeaders, canonical spelling (accumulate like proxies).
    pub trusted_proxy_headers: Option<Vec<String>>,
    /// WSGIErrorOverride.
    pub error_override: Option<bool>,
    /// WSGIIgnoreActivity.
    pub ignore_activity: Option<bool>,
    /// WSGIEnableSendfile.
    pub enable_sendfile: Option<bool>,
    /// WSGIPassApacheRequest.
    pub pass_apache_request: Option<bool>,
    /// WSGIGroupAuthoritative.
    pub group_authoritative: Option<bool>,
    /// WSGIRestrictProcess: the process groups a request may select (`""` = embedded).
    pub restrict_process: Option<Vec<String>>,
    /// WSGIDispatchScript.
    pub dispatch_script: Option<PhaseScript>,
    /// WSGIAccessScript.
    pub access_script: Option<PhaseScript>,
    /// WSGIAuthUserScript.
    pub auth_user_script: Option<PhaseScript>,
    /// WSGIAuthGroupScript.
    pub auth_group_script: Option<PhaseScript>,
    /// WSGIHandlerScript, one entry per handler name (a later one of a name wins).
    pub handler_scripts: Option<Vec<HandlerScript>>,
}

static GLOBAL_SELECTOR: GroupSelector = GroupSelector::Global;
static RESOURCE_SELECTOR: GroupSelector = GroupSelector::Resource;

impl DirConfig {
    /// Applies a [`Target::Dir`] directive.
    pub fn apply(&mut self, d: Directive) -> Result<(), ConfigError> {
        match d {
            Directive::ProcessGroup(g) => self.process_group = Some(g),
            Directive::ApplicationGroup(g) => self.application_group = Some(g),
            Directive::CallableObject(c) => self.callable_object = Some(c),
            Directive::MapHeadToGet(m) => self.map_head_to_get = Some(m),
            Directive::TrustedProxies(nets) => {
                let list = self.trusted_proxies.get_or_insert_with(Vec::new);
                for net in nets {
                    if !list.contains(&net) {
                        list.push(net);
                    }
                }
            }
            Directive::TrustedProxyHeaders(headers) => {
                let list = self.trusted_proxy_headers.get_or_insert_with(Vec::new);
                for header in headers {
                    if !list.contains(&header) {
                        list.push(header);
                    }
                }
            }
            Directive::Flag { name, value } => {
                let slot = match name {
                    "WSGIPassAuthorization" => &mut self.pass_authorization,
                    "WSGIScriptReloading" => &mut self.script_reloading,
                    "WSGIChunkedRequest" => &mut self.chunked_request,
                    "WSGIErrorOverride" => &mut self.error_override,
                    "WSGIIgnoreActivity" => &mut self.ignore_activity,
                    "WSGIEnableSendfile" => &mut self.enable_sendfile,
                    "WSGIPassApacheRequest" => &mut self.pass_apache_request,
                    "WSGIGroupAuthoritative" => &mut self.group_authoritative,
                    _ => return Err(wrong_target(&Directive::Flag { name, value }, "directory")),
                };
                *slot = Some(value);
            }
            Directive::Other {
                name: "WSGIHandlerScript",
                args,
            } => {
                let handler = HandlerScript::parse("WSGIHandlerScript", &args)?;
                let list = self.handler_scripts.get_or_insert_with(Vec::new);
                list.retain(|h| h.name != handler.name);
                list.push(handler);
            }
            Directive::Other {
                name: "WSGIRestrictProcess",
                args,
            } => {
                self.restrict_process = Some(handler_script::parse_restrict_process(
                    "WSGIRestrictProcess",
                    &args,
                )?);
            }
            Directive::Other { name, args } => {
                let phase_slot = match name {
                    "WSGIDispatchScript" => Some(&mut self.dispatch_script),
                    "WSGIAccessScript" => Some(&mut self.access_script),
                    "WSGIAuthUserScript" => Some(&mut self.auth_user_script),
                    "WSGIAuthGroupScript" => Some(&mut self.auth_group_script),
                    _ => None,
                };
                if let Some(slot) = phase_slot {
                    *slot = Some(PhaseScript::parse(name, &args)?);
                    return Ok(());
                }
                return Err(wrong_target(&Directive::Other { name, args }, "directory"));
            }
            other => return Err(wrong_target(&other, "directory")),
        }
        Ok(())
    }

    /// `child` over `base`: every setting made in `child` wins.
    pub fn merge(base: &Self, child: &Self) -> Self {
        fn pick<T: Clone>(base: &Option<T>, child: &Option<T>) -> Option<T> {
            child.as_ref().or(base.as_ref()).cloned()
        }
        DirConfig {
            process_group: pick(&base.process_group, &child.process_group),
            application_group: pick(&base.application_group, &child.application_group),
            callable_object: pick(&base.callable_object, &child.callable_object),
            pass_authorization: pick(&base.pass_authorization, &child.pass_authorization),
            script_reloading: pick(&base.script_reloading, &child.script_reloading),
            chunked_request: pick(&base.chunked_request, &child.chunked_request),
            map_head_to_get: pick(&base.map_head_to_get, &child.map_head_to_get),
            trusted_proxies: pick(&base.trusted_proxies, &child.trusted_proxies),
            trusted_proxy_headers: pick(&base.trusted_proxy_headers, &child.trusted_proxy_headers),
            error_override: pick(&base.error_override, &child.error_override),
            ignore_activity: pick(&base.ignore_activity, &child.ignore_activity),
            enable_sendfile: pick(&base.enable_sendfile, &child.enable_sendfile),
            pass_apache_request: pick(&base.pass_apache_request, &child.pass_apache_request),
            group_authoritative: pick(&base.group_authoritative, &child.group_authoritative),
            restrict_process: pick(&base.restrict_process, &child.restrict_process),
            dispatch_script: pick(&base.dispatch_script, &child.dispatch_script),
            access_script: pick(&base.access_script, &child.access_script),
            auth_user_script: pick(&base.auth_user_script, &child.auth_user_script),
            auth_group_script: pick(&base.auth_group_script, &child.auth_group_script),
            handler_scripts: match (&base.handler_scripts, &child.handler_scripts) {
                (Some(b), Some(c)) => Some(handler_script::merge_handler_scripts(b, c)),
                (b, c) => pick(b, c),
            },
        }
    }

    /// WSGIProcessGroup; default `%{GLOBAL}` (embedded mode).
    pub fn process_group(&self) -> &GroupSelector {
        self.process_group.as_ref().unwrap_or(&GLOBAL_SELECTOR)
    }

    /// WSGIApplicationGroup; default `%{RESOURCE}`.
    pub fn application_group(&self) -> &GroupSelector {
        self.application_group
            .as_ref()
            .unwrap_or(&RESOURCE_SELECTOR)
    }

    /// WSGICallableObject; default `application`.
    pub fn callable_object(&self) -> &str {
        self.callable_object.as_deref().unwrap_or("application")
    }

    /// WSGIPassAuthorization; default Off.
    pub fn pass_authorization(&self) -> bool {
        self.pass_authorization.unwrap_or(false)
    }

    /// WSGIScriptReloading; default On.
    pub fn script_reloading(&self) -> bool {
        self.script_reloading.unwrap_or(true)
    }

    /// WSGIChunkedRequest; default Off.
    pub fn chunked_request(&self) -> bool {
        self.chunked_request.unwrap_or(false)
    }

    /// WSGIMapHEADToGET; default Auto.
    pub fn map_head_to_get(&self) -> MapHeadToGet {
        self.map_head_to_get.unwrap_or(MapHeadToGet::Auto)
    }

    /// WSGITrustedProxies; default none.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        self.trusted_proxies.as_deref().unwrap_or_default()
    }

    /// WSGITrustedProxyHeaders; default none.
    pub fn trusted_proxy_headers(&self) -> &[String] {
        self.trusted_proxy_headers.as_deref().unwrap_or_default()
    }

    /// WSGIErrorOverride; default Off.
    pub fn error_override(&self) -> bool {
        self.error_override.unwrap_or(false)
    }

    /// WSGIIgnoreActivity; default Off.
    pub fn ignore_activity(&self) -> bool {
        self.ignore_activity.unwrap_or(false)
    }

    /// WSGIEnableSendfile; default Off.
    pub fn enable_sendfile(&self) -> bool {
        self.enable_sendfile.unwrap_or(false)
    }

    /// WSGIPassApacheRequest; default Off.
    pub fn pass_apache_request(&self) -> bool {
        self.pass_apache_request.unwrap_or(false)
    }

    /// WSGIGroupAuthoritative; default On.
    pub fn group_authoritative(&self) -> bool {
        self.group_authoritative.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::directives::tests::VALID_LINES;
    use super::*;

    fn parse(name: &str, raw: &str) -> Directive {
        parse_directive(name, raw).unwrap_or_else(|e| panic!("{name} {raw}: {e}"))
    }

    #[test]
    fn every_directive_applies_to_its_target_and_changes_it() {
        for info in DIRECTIVES {
            let (_, raw) = VALID_LINES.iter().find(|(n, _)| *n == info.name).unwrap();
            let d = parse(info.name, raw);
            match info.target {
                Target::Global => {
                    let mut g = GlobalConfig::default();
                    g.apply(d.clone(), "t.conf:1")
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_ne!(g, GlobalConfig::default(), "{} changed nothing", info.name);
                    assert!(
                        ServerConfig::default().apply(d.clone()).is_err(),
                        "{}",
                        info.name
                    );
                    assert!(DirConfig::default().apply(d).is_err(), "{}", info.name);
                }
                Target::Server => {
                    let mut s = ServerConfig::default();
                    s.apply(d.clone()).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(s.script_aliases.len(), 1);
                    assert!(GlobalConfig::default().apply(d.clone(), "x:1").is_err());
                    assert!(DirConfig::default().apply(d).is_err(), "{}", info.name);
                }
                Target::Dir => {
                    let mut c = DirConfig::default();
                    c.apply(d.clone()).unwrap_or_else(|e| panic!("{e}"));
                    assert_ne!(c, DirConfig::default(), "{} changed nothing", info.name);
                    let e = GlobalConfig::default().apply(d.clone(), "x:1").unwrap_err();
                    assert!(e.to_string().contains("does not belong"), "{e}");
                    assert!(ServerConfig::default().apply(d).is_err(), "{}", info.name);
                }
            }
        }
    }

    #[test]
    fn global_defaults_and_flags() {
        let g = GlobalConfig::default();
        assert!(g.socket_rotation && g.restrict_signal && g.case_sensitivity);
        assert!(g.destroy_interpreter);
        assert!(!g.restrict_stdout && !g.restrict_embedded && !g.verbose_debugging);
        assert!(!g.restrict_stdin && !g.dont_write_bytecode && !g.server_metrics);
        assert!(!g.per_interpreter_gil && !g.free_threading);
        assert!(g.heap_policy);

        let mut g = GlobalConfig::default();
        for (name, raw) in [
            ("WSGIRestrictStdout", "On"),
            ("WSGIRestrictEmbedded", "on"),
            ("WSGIVerboseDebugging", "On"),
            ("WSGISocketRotation", "Off"),
            ("WSGIPythonHome", "/srv/venv"),
            ("WSGIPythonPath", "/a:/b"),
            ("WSGISocketPrefix", "/var/run/wsgi"),
            ("WSGIPythonOptimize", "2"),
            ("WSGIPythonWarnings", "error::DeprecationWarning"),
            ("WSGIPythonWarnings", "ignore::UserWarning"),
            ("WSGIPythonHashSeed", "123"),
            ("WSGIPythonEggs", "/var/cache/eggs"),
            ("WSGISwitchInterval", "0.002"),
            ("WSGIDontWriteBytecode", "On"),
            ("WSGIDestroyInterpreter", "Off"),
            ("WSGIRestrictStdin", "On"),
            ("WSGIRestrictSignal", "Off"),
            ("WSGIAcceptMutex", "fcntl"),
            ("WSGIHeapPolicy", "Off"),
        ] {
            g.apply(parse(name, raw), "t:1").unwrap();
        }
        assert!(!g.heap_policy);
        assert_eq!(g.python_optimize, 2);
        assert_eq!(
            g.python_warnings,
            ["error::DeprecationWarning", "ignore::UserWarning"]
        );
        assert_eq!(g.python_hash_seed, Some(123));
        assert_eq!(g.python_eggs.as_deref(), Some("/var/cache/eggs"));
        assert_eq!(g.switch_interval, Some(0.002));
        assert!(g.dont_write_bytecode && !g.destroy_interpreter);
        assert!(g.restrict_stdin && !g.restrict_signal);
        g.apply(parse("WSGIPythonHashSeed", "random"), "t:2")
            .unwrap();
        assert_eq!(g.python_hash_seed, None);
        assert!(g.restrict_stdout && g.restrict_embedded && g.verbose_debugging);
        assert!(!g.socket_rotation);
        assert_eq!(g.python_home.as_deref(), Some("/srv/venv"));
        assert_eq!(g.python_path, ["/a", "/b"]);
        assert_eq!(g.socket_prefix.as_deref(), Some("/var/run/wsgi"));
        assert_eq!(g.other, [("WSGIAcceptMutex", vec!["fcntl".to_string()])]);
    }

    #[test]
    fn daemon_groups_are_unique_and_located() {
        let mut g = GlobalConfig::default();
        g.apply(parse("WSGIDaemonProcess", "a threads=2"), "site.conf:3")
            .unwrap();
        g.apply(parse("WSGIDaemonProcess", "b"), "site.conf:4")
            .unwrap();
        let e = g
            .apply(parse("WSGIDaemonProcess", "a threads=9"), "other.conf:10")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "WSGIDaemonProcess: process group 'a': already defined at site.conf:3"
        );
        assert_eq!(g.daemon_groups.len(), 2);
        assert_eq!(g.group("a").unwrap().threads, 2);
        assert_eq!(g.group("a").unwrap().defined_at, "site.conf:3");
        assert_eq!(g.group("b").unwrap().defined_at, "site.conf:4");
        assert!(g.group("A").is_none());
        assert!(g.group("c").is_none());
    }

    #[test]
    fn import_script_is_recorded_with_reference() {
        let mut g = GlobalConfig::default();
        let d = parse(
            "WSGIImportScript",
            "/s.py process-group=g application-group=%{GLOBAL}",
        );
        g.apply(d, "x.conf:2").unwrap();
        assert_eq!(g.import_scripts.len(), 1);
        assert_eq!(g.import_scripts[0].defined_at, "x.conf:2");
        assert_eq!(
            g.group_refs,
            [GroupRef {
                name: "g".into(),
                directive: "WSGIImportScript".into(),
                location: "x.conf:2".into(),
                virtual_host: None,
            }]
        );
        g.note_group_ref("g", "WSGIImportScript", "x.conf:2", None);
        assert_eq!(g.group_refs.len(), 1, "identical references are kept once");
    }

    struct FakeHost;

    impl Host for FakeHost {
        fn uid_of(&self, user: &str) -> Option<u32> {
            match user {
                "root" => Some(0),
                "www-data" => Some(33),
                _ => None,
            }
        }
        fn gid_of(&self, group: &str) -> Option<u32> {
            match group {
                "root" => Some(0),
                "www-data" => Some(33),
                _ => None,
            }
        }
        fn primary_gid_of_uid(&self, uid: u32) -> Option<u32> {
            [0, 33].contains(&uid).then_some(uid)
        }
        fn home_of_uid(&self, _uid: u32) -> Option<String> {
            None
        }
        fn user_name_of_uid(&self, _uid: u32) -> Option<String> {
            None
        }
    }

    #[test]
    fn check_passes_for_a_consistent_config() {
        let mut g = GlobalConfig::default();
        g.apply(
            parse("WSGIDaemonProcess", "web user=www-data group=root"),
            "a:1",
        )
        .unwrap();
        g.note_group_ref("web", "WSGIProcessGroup", "a:2", None);
        assert_eq!(g.check(&FakeHost), Ok(()));
    }

    #[test]
    fn references_across_virtual_hosts_with_other_server_names_are_warned_about() {
        let mut g = GlobalConfig::default();
        g.apply_in(parse("WSGIDaemonProcess", "shop"), "v.conf:2", Some(1))
            .unwrap();
        g.apply_in(parse("WSGIDaemonProcess", "blog"), "v.conf:9", Some(2))
            .unwrap();
        g.apply(parse("WSGIDaemonProcess", "shared"), "v.conf:1")
            .unwrap();
        // 1 is shop.example, 2 blog.example, 3 another shop.example (another port).
        let name = |id: usize| {
            let name = match id {
                1 | 3 => "shop.example",
                _ => "blog.example",
            };
            Some(name.to_owned())
        };
        g.note_group_ref("shop", "WSGIProcessGroup", "v.conf:3", Some(1));
        g.note_group_ref("shop", "WSGIProcessGroup", "v.conf:20", Some(3));
        g.note_group_ref("shared", "WSGIProcessGroup", "v.conf:10", Some(2));
        g.note_group_ref("shop", "WSGIProcessGroup", "v.conf:30", None);
        assert!(g.virtual_host_warnings(&name).is_empty());
        g.note_group_ref("shop", "WSGIScriptAlias", "v.conf:11", Some(2));
        let warnings = g.virtual_host_warnings(&name);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "WSGIScriptAlias at v.conf:11 (virtual host blog.example) selects daemon \
                 process group 'shop', defined at v.conf:2 inside virtual host shop.example"
            ),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn requests_sent_to_a_service_script_group_are_warned_about_not_refused() {
        let mut g = GlobalConfig::default();
        g.apply(parse("WSGIDaemonProcess", "side threads=0"), "a:1")
            .unwrap();
        g.apply(parse("WSGIDaemonProcess", "web"), "a:2").unwrap();
        g.note_group_ref("side", "WSGIImportScript", "a:3", None);
        g.note_group_ref("web", "WSGIProcessGroup", "a:4", None);
        assert!(g.warnings().is_empty(), "{:?}", g.warnings());
        g.note_group_ref("side", "WSGIHandlerScript", "a:5", None);
        g.note_group_ref("side", "WSGIProcessGroup", "a:6", None);
        let w = g.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with(
                "WSGIHandlerScript at a:5 selects daemon process group 'side', which has \
                 threads=0"
            ),
            "{}",
            w[0]
        );
        assert!(w[1].starts_with("WSGIProcessGroup at a:6"), "{}", w[1]);
        // mod_wsgi accepts this configuration: configtest does not fail.
        assert_eq!(g.check(&FakeHost), Ok(()));
    }

    #[test]
    fn check_reports_every_problem() {
        let mut g = GlobalConfig::default();
        g.apply(parse("WSGIDaemonProcess", "web user=root"), "a.conf:1")
            .unwrap();
        g.apply(
            parse("WSGIDaemonProcess", "other user=nobody9 group=nogroup9"),
            "a.conf:2",
        )
        .unwrap();
        let alias = parse("WSGIScriptAlias", "/ /s.py process-group=missing");
        let group = alias.literal_process_group().unwrap().to_owned();
        g.note_group_ref(&group, alias.directive_name(), "a.conf:5", None);
        g.note_group_ref("web", "WSGIProcessGroup", "a.conf:6", None);

        let errors: Vec<String> = g
            .check(&FakeHost)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "WSGIScriptAlias: process group 'missing': is referenced at a.conf:5 but no \
                 WSGIDaemonProcess defines it",
                "WSGIDaemonProcess: option 'user=root': daemon processes must not run as root \
                 (uid 0) (process group 'web' defined at a.conf:1)",
                "WSGIDaemonProcess: option 'user=nobody9': no such user \
                 (process group 'other' defined at a.conf:2)",
                "WSGIDaemonProcess: option 'group=nogroup9': no such group \
                 (process group 'other' defined at a.conf:2)",
            ]
        );
    }

    #[test]
    fn server_merge_puts_vhost_aliases_first() {
        let mut base = ServerConfig::default();
        base.apply(parse("WSGIScriptAlias", "/ /srv/main.wsgi"))
            .unwrap();
        let mut vhost = ServerConfig::default();
        vhost
            .apply(parse("WSGIScriptAlias", "/app /srv/app.wsgi"))
            .unwrap();
        vhost
            .apply(parse("WSGIScriptAliasMatch", "^/x/(.*) /srv/x.wsgi"))
            .unwrap();
        let merged = ServerConfig::merge(&base, &vhost);
        let urls: Vec<&str> = merged
            .script_aliases
            .iter()
            .map(|a| a.url.as_str())
            .collect();
        assert_eq!(urls, ["/app", "^/x/(.*)", "/"]);
        assert_eq!(ServerConfig::merge(&base, &ServerConfig::default()), base);
    }

    #[test]
    fn dir_defaults() {
        let c = DirConfig::default();
        assert_eq!(c.process_group(), &GroupSelector::Global);
        assert_eq!(c.application_group(), &GroupSelector::Resource);
        assert_eq!(c.callable_object(), "application");
        assert!(!c.pass_authorization());
        assert!(c.script_reloading());
        assert!(!c.chunked_request());
        assert_eq!(c.map_head_to_get(), MapHeadToGet::Auto);
        assert!(c.trusted_proxies().is_empty());
        assert!(c.trusted_proxy_headers().is_empty());
        assert!(!c.error_override() && !c.ignore_activity() && !c.enable_sendfile());
        assert!(!c.pass_apache_request());
        assert!(c.group_authoritative());
    }

    fn dir(lines: &[(&str, &str)]) -> DirConfig {
        let mut c = DirConfig::default();
        for (name, raw) in lines {
            c.apply(parse(name, raw)).unwrap();
        }
        c
    }

    #[test]
    fn dir_merge_child_wins_and_base_fills_gaps() {
        let base = dir(&[
            ("WSGIProcessGroup", "web"),
            ("WSGIApplicationGroup", "%{GLOBAL}"),
            ("WSGIPassAuthorization", "On"),
            ("WSGIScriptReloading", "Off"),
            ("WSGITrustedProxies", "10.0.0.0/8"),
            ("WSGICallableObject", "app"),
        ]);
        let child = dir(&[
            ("WSGIProcessGroup", "api"),
            ("WSGIPassAuthorization", "Off"),
            ("WSGIChunkedRequest", "On"),
            ("WSGITrustedProxies", "192.168.0.1"),
            ("WSGIMapHEADToGET", "On"),
        ]);
        let m = DirConfig::merge(&base, &child);
        assert_eq!(m.process_group(), &GroupSelector::Literal("api".into()));
        assert_eq!(m.application_group(), &GroupSelector::Global);
        assert!(
            !m.pass_authorization(),
            "child's explicit Off wins over base On"
        );
        assert!(!m.script_reloading(), "base's Off is inherited");
        assert!(m.chunked_request());
        assert_eq!(m.callable_object(), "app");
        assert_eq!(m.map_head_to_get(), MapHeadToGet::On);
        let proxies: Vec<String> = m
            .trusted_proxies()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["192.168.0.1/32"], "child's list replaces base's");

        assert_eq!(DirConfig::merge(&base, &DirConfig::default()), base);
        assert_eq!(DirConfig::merge(&DirConfig::default(), &child), child);
    }

    #[test]
    fn dir_lists_accumulate_within_one_context() {
        let c = dir(&[
            ("WSGITrustedProxies", "10.0.0.1"),
            ("WSGITrustedProxies", "10.0.0.2 10.0.0.1"),
            ("WSGITrustedProxyHeaders", "X-Forwarded-For"),
            (
                "WSGITrustedProxyHeaders",
                "x-forwarded-for X-Forwarded-Host",
            ),
            ("WSGIHandlerScript", "h /one.py"),
            ("WSGIHandlerScript", "h /two.py"),
            ("WSGIHandlerScript", "k /k.py"),
        ]);
        assert_eq!(c.trusted_proxies().len(), 2);
        assert!(c.trusted_proxies()[1].contains("10.0.0.2".parse().unwrap()));
        assert_eq!(
            c.trusted_proxy_headers(),
            ["X-Forwarded-For", "X-Forwarded-Host"]
        );
        let handlers: Vec<(&str, &str)> = c
            .handler_scripts
            .iter()
            .flatten()
            .map(|h| (h.name.as_str(), h.script.as_str()))
            .collect();
        assert_eq!(handlers, [("h", "/two.py"), ("k", "/k.py")]);
    }

    #[test]
    fn dir_flags_all_recorded() {
        let c = dir(&[
            ("WSGIErrorOverride", "On"),
            ("WSGIIgnoreActivity", "On"),
            ("WSGIEnableSendfile", "On"),
            ("WSGIPassApacheRequest", "On"),
            ("WSGIGroupAuthoritative", "Off"),
            ("WSGIScriptReloading", "On"),
        ]);
        assert!(c.error_override() && c.ignore_activity() && c.enable_sendfile());
        assert!(c.pass_apache_request());
        assert!(!c.group_authoritative());
        assert_eq!(c.script_reloading, Some(true));
    }

    #[test]
    fn trusted_proxy_headers_without_trusted_proxies_are_warned_about() {
        let site = |proxies, server, main_server, section: Option<&str>, line| ProxySite {
            proxies,
            server,
            main_server,
            section: section.map(str::to_string),
            location: format!("httpd.conf:{line}"),
        };
        let mut g = GlobalConfig::default();
        assert!(g.warnings().is_empty());
        // WSGIAcceptMutex has nothing to choose here: configtest says so.
        g.apply(parse("WSGIAcceptMutex", "fcntl"), "t.conf:1")
            .unwrap();
        let notes = g.warnings();
        assert!(notes.len() == 1 && notes[0].contains("WSGIAcceptMutex fcntl has no effect"));
        g.other.clear();
        // Headers alone, at server level and in a section: both warned about.
        g.note_proxy_site(site(false, 1, true, None, 10));
        g.note_proxy_site(site(false, 2, false, Some("/srv"), 20));
        let w = g.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with(
                "WSGITrustedProxyHeaders at httpd.conf:10 has no \
                                  WSGITrustedProxies"
            ),
            "{}",
            w[0]
        );
        assert!(w[0].contains("every client is then trusted"), "{}", w[0]);
        assert!(w[1].contains("httpd.conf:20"), "{}", w[1]);
        // Proxies in another virtual host's section guard nothing here.
        g.note_proxy_site(site(true, 3, false, Some("/srv"), 30));
        assert_eq!(g.warnings().len(), 2);
        // Proxies in the same section guard that section only.
        g.note_proxy_site(site(true, 2, false, Some("/srv"), 40));
        assert_eq!(g.warnings().len(), 1);
        // Proxies at the main server's level apply everywhere.
        g.note_proxy_site(site(true, 1, true, None, 50));
        assert!(g.warnings().is_empty(), "{:?}", g.warnings());
    }
}
