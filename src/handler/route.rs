//! Where a request goes, resolved from plain data: the script (or WSGIHandlerScript), its
//! SCRIPT_NAME and PATH_INFO, the process group, application group and callable, whether
//! Authorization is passed on, and embedded or daemon mode. The caller reads the request
//! facts from Apache (`RequestFacts`), obtains the dispatch script's answer if there is one,
//! then logs a [`Refusal`] or serves the [`Route`]. Nothing here touches Apache or Python.
//!
//! Two steps, because the dispatch script runs between them: [`select`] gives what the
//! configuration chooses (WSGIScriptAlias options over WSGIHandlerScript options over the
//! directory's directives), [`resolve`] applies the dispatch script's answers and the
//! restrictions (WSGIRestrictProcess, WSGIRestrictEmbedded, undefined groups, `threads=0`
//! groups, a daemon group's virtual host) and picks the mode.

use crate::config::{
    ConfigError, DirConfig, GroupSelector, HandlerScript, Interface, SelectorContext,
};
use crate::ffi;
use crate::python::Dispatch;

use super::HandlerContext;
use super::cgi_env;
use super::daemon_client::DaemonTarget;
use super::embedded::EmbeddedSettings;

/// The request facts resolution needs, read from Apache (`r`) by the handler.
pub struct RequestFacts<'a> {
    /// The WSGIHandlerScript the request's Apache handler names, with its file
    /// (ServerRoot-relative made absolute).
    pub handler_script: Option<(&'a HandlerScript, Vec<u8>)>,
    /// `r->filename` (`""` when unset).
    pub filename: &'a [u8],
    /// Apache found `filename` to be a regular file.
    pub file_is_regular: bool,
    /// The WSGIScriptAlias(Match) translate_name matched, by index in the server's list.
    pub alias: Option<usize>,
    /// SCRIPT_NAME as translate_name noted it for an alias.
    pub alias_script_name: Option<&'a [u8]>,
    /// `r->uri`.
    pub uri: &'a [u8],
    /// `r->path_info` (`""` when unset).
    pub path_info: &'a [u8],
    /// What `%{...}` selectors expand from.
    pub vars: RequestVars<'a>,
}

/// What a `%{...}` selector of this request expands from.
pub struct RequestVars<'a> {
    /// The virtual host's ServerName.
    pub server_hostname: std::borrow::Cow<'a, str>,
    /// The request's port (80 when Apache reports none).
    pub port: u16,
    /// The Host header without its port, if any.
    pub host: Option<std::borrow::Cow<'a, str>>,
    /// `%{ENV:name}`: the request's notes, subprocess_env, then the process environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl RequestVars<'_> {
    /// `selector` expanded for this request; `script_name` is SCRIPT_NAME as
    /// `%{RESOURCE}` names it ([`resource_script_name`]).
    pub fn expand(&self, selector: &GroupSelector, script_name: &str) -> String {
        selector.expand(&SelectorContext {
            server_hostname: &self.server_hostname,
            port: self.port,
            host_header: self.host.as_deref(),
            script_name,
            env: self.env,
        })
    }
}

/// What the configuration chose for the request, before the dispatch script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The file to run: the WSGI script, or the WSGIHandlerScript.
    pub script: Vec<u8>,
    /// True when `script` is a WSGIHandlerScript.
    pub handler_script: bool,
    pub script_name: Vec<u8>,
    /// SCRIPT_NAME as `%{RESOURCE}` names it.
    pub resource_name: String,
    /// PATH_INFO as Apache has it (slashes not yet collapsed).
    pub path_info: Vec<u8>,
    /// `""` is embedded mode.
    pub process_group: String,
    /// `""` is the main interpreter.
    pub application_group: String,
    pub callable: String,
    pub pass_authorization: bool,
    /// `interface=asgi`: the callable is an ASGI 3 application (daemon mode only).
    pub asgi: bool,
}

/// Where the request is served.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'g> {
    /// In this Apache child.
    Embedded,
    /// In the daemon process group.
    Daemon(&'g DaemonTarget),
}

/// Where a request goes, resolved.
#[derive(Debug)]
pub struct Route<'g> {
    pub selection: Selection,
    pub mode: Mode<'g>,
}

/// Why a request is refused before anything runs; the handler logs it and answers with
/// [`Refusal::status`]. `script` is the file as log lines show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such WSGI script file.
    ScriptNotFound { script: String },
    /// The dispatch script's `process_group()` / `application_group()` (`what`) returned
    /// a value that is no group.
    BadDispatchGroup {
        what: &'static str,
        error: ConfigError,
    },
    /// The dispatch script's `callable_object()` returned `""`.
    EmptyDispatchCallable,
    /// WSGIRestrictProcess does not list the group.
    RestrictedProcess {
        group: String,
        allowed: Vec<String>,
        script: String,
    },
    /// Embedded mode under WSGIRestrictEmbedded On.
    EmbeddedRestricted { script: String },
    /// An `interface=asgi` script whose process group resolved to embedded mode (a
    /// substitution or the dispatch script chose `%{GLOBAL}`).
    AsgiEmbedded { script: String },
    /// No WSGIDaemonProcess of that name.
    UnknownGroup { group: String, script: String },
    /// A `threads=0` group.
    GroupServesNoRequests { group: String, script: String },
    /// The group belongs to another virtual host.
    OtherVirtualHost {
        group: String,
        only: String,
        here: String,
        script: String,
    },
}

impl Refusal {
    /// The HTTP status the request is answered with.
    pub fn status(&self) -> i32 {
        match self {
            Refusal::ScriptNotFound { .. } => ffi::HTTP_NOT_FOUND,
            Refusal::RestrictedProcess { .. } => ffi::HTTP_FORBIDDEN,
            _ => ffi::HTTP_INTERNAL_SERVER_ERROR,
        }
    }
}

/// SCRIPT_NAME as `%{RESOURCE}` names it: lower-cased (ASCII) with WSGICaseSensitivity Off,
/// as mod_wsgi does for case-insensitive file systems.
pub fn resource_script_name(settings: &EmbeddedSettings, script_name: &[u8]) -> String {
    let mut name = String::from_utf8_lossy(script_name).into_owned();
    if !settings.case_sensitivity {
        name.make_ascii_lowercase();
    }
    name
}

fn shown(script: &[u8]) -> String {
    String::from_utf8_lossy(script).into_owned()
}

/// What the configuration chooses: each of process group, application group, callable
/// and pass-authorization from the WSGIScriptAlias options, else the WSGIHandlerScript
/// options, else the directory's directives (a handler script always calls
/// `handle_request`).
pub fn select(
    facts: &RequestFacts<'_>,
    ctx: &HandlerContext<'_>,
    dir: &DirConfig,
) -> Result<Selection, Refusal> {
    let handler = facts.handler_script.as_ref().map(|(h, _)| *h);
    let script = match &facts.handler_script {
        Some((_, file)) => file.clone(),
        None => facts.filename.to_vec(),
    };
    if handler.is_none() && !facts.file_is_regular {
        return Err(Refusal::ScriptNotFound {
            script: shown(&script),
        });
    }
    let alias = facts.alias.and_then(|i| ctx.server.script_aliases.get(i));
    let path_info = facts.path_info.to_vec();
    let script_name = match facts.alias_script_name {
        Some(s) => s.to_vec(),
        None => cgi_env::script_name_from(facts.uri, &path_info),
    };
    let resource_name = resource_script_name(ctx.embedded, &script_name);

    let group_sel = alias
        .and_then(|a| a.process_group.as_ref())
        .or(handler.and_then(|h| h.process_group.as_ref()))
        .unwrap_or(dir.process_group());
    let process_group = facts.vars.expand(group_sel, &resource_name);
    let app_sel = alias
        .and_then(|a| a.application_group.as_ref())
        .or(handler.and_then(|h| h.application_group.as_ref()))
        .unwrap_or(dir.application_group());
    let application_group = facts.vars.expand(app_sel, &resource_name);
    let callable = match handler {
        Some(_) => crate::config::HANDLER_CALLABLE.to_string(),
        None => crate::config::expand_callable_object(
            alias
                .and_then(|a| a.callable_object.as_deref())
                .unwrap_or(dir.callable_object()),
            facts.vars.env,
        ),
    };
    let pass_authorization = alias
        .and_then(|a| a.pass_authorization)
        .or(handler.and_then(|h| h.pass_authorization))
        .unwrap_or(dir.pass_authorization());
    let interface = match (alias, handler) {
        (Some(a), _) => a.interface,
        (None, Some(h)) => h.interface,
        (None, None) => Interface::Wsgi,
    };
    Ok(Selection {
        script,
        handler_script: handler.is_some(),
        script_name,
        resource_name,
        path_info,
        process_group,
        application_group,
        callable,
        pass_authorization,
        asgi: interface == Interface::Asgi,
    })
}

/// The dispatch script's answers over `sel`: a returned group is expanded as the
/// directive's value would be (`vars` as they are after the script ran).
pub fn apply_dispatch(
    mut sel: Selection,
    answer: Dispatch,
    vars: &RequestVars<'_>,
) -> Result<Selection, Refusal> {
    let expand = |what: &'static str, value: Option<String>, current: &mut String| {
        let Some(value) = value else {
            return Ok(());
        };
        match GroupSelector::parse("WSGIDispatchScript", &value) {
            Ok(selector) => {
                *current = vars.expand(&selector, &sel.resource_name);
                Ok(())
            }
            Err(error) => Err(Refusal::BadDispatchGroup { what, error }),
        }
    };
    let mut group = std::mem::take(&mut sel.process_group);
    expand("process_group", answer.process_group, &mut group)?;
    let mut app_group = std::mem::take(&mut sel.application_group);
    expand(
        "application_group",
        answer.application_group,
        &mut app_group,
    )?;
    sel.process_group = group;
    sel.application_group = app_group;
    match answer.callable_object {
        Some(c) if c.is_empty() => return Err(Refusal::EmptyDispatchCallable),
        Some(c) => sel.callable = c,
        None => {}
    }
    Ok(sel)
}

/// The route for `sel` (with the dispatch script's `answer` applied, if any), or why the
/// request is refused, checked in this order: the answer itself, WSGIRestrictProcess,
/// WSGIRestrictEmbedded, an undefined group, a `threads=0` group, a group of another
/// virtual host (by ServerName).
pub fn resolve<'g>(
    sel: Selection,
    answer: Option<Dispatch>,
    vars: &RequestVars<'_>,
    ctx: &HandlerContext<'g>,
    dir: &DirConfig,
) -> Result<Route<'g>, Refusal> {
    let sel = match answer {
        Some(answer) => apply_dispatch(sel, answer, vars)?,
        None => sel,
    };
    let group = &sel.process_group;
    let refused = |f: fn(String, String) -> Refusal| Err(f(group.clone(), shown(&sel.script)));
    if let Some(allowed) = dir.restrict_process.as_deref() {
        if !allowed.iter().any(|g| g == group) {
            return Err(Refusal::RestrictedProcess {
                group: group.clone(),
                allowed: allowed.to_vec(),
                script: shown(&sel.script),
            });
        }
    }
    let embedded = group.is_empty();
    if embedded && sel.asgi {
        return Err(Refusal::AsgiEmbedded {
            script: shown(&sel.script),
        });
    }
    if embedded && ctx.restrict_embedded {
        return Err(Refusal::EmbeddedRestricted {
            script: shown(&sel.script),
        });
    }
    let target = match ctx.groups.iter().find(|g| g.group == *group) {
        Some(target) => target,
        None if embedded => {
            return Ok(Route {
                selection: sel,
                mode: Mode::Embedded,
            });
        }
        None => return refused(|group, script| Refusal::UnknownGroup { group, script }),
    };
    if !target.serves_requests {
        // No thread of the group would ever take the request (mod_wsgi leaves it to time
        // out); the configuration is at fault, as with an undefined group.
        return refused(|group, script| Refusal::GroupServesNoRequests { group, script });
    }
    if let Some(only) = target.server_name.as_deref() {
        if vars.server_hostname != only {
            return Err(Refusal::OtherVirtualHost {
                group: group.clone(),
                only: only.to_owned(),
                here: vars.server_hostname.to_string(),
                script: shown(&sel.script),
            });
        }
    }
    Ok(Route {
        selection: sel,
        mode: Mode::Daemon(target),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ScriptAlias, ServerConfig};
    use std::time::Duration;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn selector(v: &str) -> Option<GroupSelector> {
        Some(GroupSelector::parse("test", v).unwrap())
    }

    fn target(name: &str) -> DaemonTarget {
        DaemonTarget {
            group: name.to_owned(),
            socket_path: format!("/tmp/{name}.sock").into(),
            connect_timeout: Duration::from_secs(1),
            socket_timeout: Duration::from_secs(1),
            queue_timeout: None,
            request_timeout: None,
            response_socket_timeout: None,
            response_flush_delay: Duration::ZERO,
            response_buffer_size: 65536,
            websocket_max_message_size: 1 << 20,
            websocket_idle_timeout: Duration::from_secs(1),
            script_owner: Default::default(),
            serves_requests: true,
            server_name: None,
        }
    }

    /// The configuration a test changes, and the contexts made from it.
    struct Setup {
        server: ServerConfig,
        dir: DirConfig,
        groups: Vec<DaemonTarget>,
        embedded: EmbeddedSettings,
        restrict_embedded: bool,
        handler: Option<HandlerScript>,
    }

    impl Setup {
        fn new() -> Self {
            let mut groups = vec![target("blue"), target("red")];
            groups[1].server_name = Some("red.example.com".into());
            let mut idle = target("idle");
            idle.serves_requests = false;
            groups.push(idle);
            Setup {
                server: ServerConfig::default(),
                dir: DirConfig::default(),
                groups,
                embedded: EmbeddedSettings::default(),
                restrict_embedded: false,
                handler: None,
            }
        }

        fn alias(mut self, line: &str) -> Self {
            let alias = ScriptAlias::parse("WSGIScriptAlias", &words(line), false).unwrap();
            self.server.script_aliases.push(alias);
            self
        }

        fn handler(mut self, line: &str) -> Self {
            self.handler = Some(HandlerScript::parse("WSGIHandlerScript", &words(line)).unwrap());
            self
        }

        fn ctx(&self) -> HandlerContext<'_> {
            HandlerContext {
                server: &self.server,
                dir: Some(&self.dir),
                groups: &self.groups,
                embedded: &self.embedded,
                restrict_embedded: self.restrict_embedded,
                heap_policy: true,
            }
        }

        /// The request `/app/x/y` for `/srv/app.wsgi` (under the first alias, if any).
        fn facts<'a>(&'a self, env: &'a dyn Fn(&str) -> Option<String>) -> RequestFacts<'a> {
            let alias = (!self.server.script_aliases.is_empty()).then_some(0);
            RequestFacts {
                handler_script: self
                    .handler
                    .as_ref()
                    .map(|h| (h, b"/srv/handler.py".to_vec())),
                filename: b"/srv/app.wsgi",
                file_is_regular: true,
                alias,
                alias_script_name: alias.map(|_| &b"/app"[..]),
                uri: b"/app/x/y",
                path_info: b"/x/y",
                vars: vars(env),
            }
        }

        fn select(&self) -> Result<Selection, Refusal> {
            select(&self.facts(&no_env), &self.ctx(), &self.dir)
        }

        fn resolve(&self, answer: Option<Dispatch>) -> Result<Route<'_>, Refusal> {
            let sel = self.select().unwrap();
            resolve(sel, answer, &vars(&no_env), &self.ctx(), &self.dir)
        }

        /// The process group the request is resolved to, or the refusal.
        fn resolved_group(&self) -> Result<String, Refusal> {
            self.resolve(None).map(|route| match route.mode {
                Mode::Embedded => String::new(),
                Mode::Daemon(t) => {
                    assert_eq!(t.group, route.selection.process_group);
                    t.group.clone()
                }
            })
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn vars(env: &dyn Fn(&str) -> Option<String>) -> RequestVars<'_> {
        RequestVars {
            server_hostname: "www.example.com".into(),
            port: 80,
            host: Some("alias.example.com".into()),
            env,
        }
    }

    fn answer(group: Option<&str>, app: Option<&str>, callable: Option<&str>) -> Dispatch {
        Dispatch {
            process_group: group.map(str::to_owned),
            application_group: app.map(str::to_owned),
            callable_object: callable.map(str::to_owned),
        }
    }

    #[test]
    fn directory_directives_apply_without_alias_or_handler_options() {
        let mut setup = Setup::new();
        setup.dir.process_group = selector("blue");
        setup.dir.application_group = selector("%{SERVER}");
        setup.dir.callable_object = Some("app".into());
        setup.dir.pass_authorization = Some(true);
        let sel = setup.select().unwrap();
        assert_eq!(sel.script, b"/srv/app.wsgi");
        assert!(!sel.handler_script);
        assert_eq!(sel.process_group, "blue");
        assert_eq!(sel.application_group, "www.example.com");
        assert_eq!(sel.callable, "app");
        assert!(sel.pass_authorization);
        // No alias: SCRIPT_NAME is the URI less PATH_INFO.
        assert_eq!(sel.script_name, b"/app");
        assert_eq!(sel.path_info, b"/x/y");
    }

    #[test]
    fn defaults_are_embedded_mode_and_resource_application_group() {
        let setup = Setup::new();
        let sel = setup.select().unwrap();
        assert_eq!(sel.process_group, "");
        assert_eq!(sel.application_group, "www.example.com|/app");
        assert_eq!(sel.callable, "application");
        assert!(!sel.pass_authorization);
        assert!(matches!(setup.resolve(None).unwrap().mode, Mode::Embedded));
    }

    #[test]
    fn handler_script_options_override_directory_directives() {
        let mut setup = Setup::new().handler(
            "h /srv/handler.py process-group=red application-group=hs pass-authorization=On",
        );
        setup.dir.process_group = selector("blue");
        setup.dir.application_group = selector("dir");
        setup.dir.callable_object = Some("app".into());
        let sel = setup.select().unwrap();
        assert_eq!(sel.script, b"/srv/handler.py");
        assert!(sel.handler_script);
        assert_eq!(sel.process_group, "red");
        assert_eq!(sel.application_group, "hs");
        // A handler script is always called through handle_request.
        assert_eq!(sel.callable, crate::config::HANDLER_CALLABLE);
        assert!(sel.pass_authorization);
    }

    #[test]
    fn handler_script_without_options_takes_directory_directives() {
        let mut setup = Setup::new().handler("h /srv/handler.py");
        setup.dir.process_group = selector("blue");
        setup.dir.application_group = selector("dir");
        let sel = setup.select().unwrap();
        assert_eq!(
            (&sel.process_group[..], &sel.application_group[..]),
            ("blue", "dir")
        );
    }

    #[test]
    fn alias_options_override_handler_script_options_and_directives() {
        let mut setup = Setup::new()
            .alias(
                "/app /srv/app.wsgi process-group=blue application-group=al \
                 callable-object=aliased pass-authorization=Off",
            )
            .handler(
                "h /srv/handler.py process-group=red application-group=hs pass-authorization=On",
            );
        setup.dir.process_group = selector("dir");
        setup.dir.application_group = selector("dir");
        setup.dir.pass_authorization = Some(true);
        let sel = setup.select().unwrap();
        assert_eq!(sel.process_group, "blue");
        assert_eq!(sel.application_group, "al");
        assert!(!sel.pass_authorization);
        assert_eq!(sel.script_name, b"/app");

        let mut setup = Setup::new().alias("/app /srv/app.wsgi callable-object=aliased");
        setup.dir.callable_object = Some("dir".into());
        assert_eq!(setup.select().unwrap().callable, "aliased");
    }

    #[test]
    fn alias_without_options_falls_back_to_the_directory() {
        let mut setup = Setup::new().alias("/app /srv/app.wsgi");
        setup.dir.process_group = selector("blue");
        setup.dir.callable_object = Some("dir".into());
        let sel = setup.select().unwrap();
        assert_eq!((&sel.process_group[..], &sel.callable[..]), ("blue", "dir"));
    }

    #[test]
    fn selectors_expand_from_request_variables() {
        let mut setup = Setup::new();
        setup.dir.process_group = selector("%{ENV:GROUP}");
        setup.dir.application_group = selector("%{HOST}");
        setup.dir.callable_object = Some("%{ENV:CALLABLE}".into());
        let env = |name: &str| match name {
            "GROUP" => Some("blue".to_owned()),
            "CALLABLE" => Some("run".to_owned()),
            _ => None,
        };
        let sel = select(&setup.facts(&env), &setup.ctx(), &setup.dir).unwrap();
        assert_eq!(sel.process_group, "blue");
        assert_eq!(sel.application_group, "alias.example.com");
        assert_eq!(sel.callable, "run");
    }

    #[test]
    fn resource_name_is_lowercased_without_case_sensitivity() {
        let mut setup = Setup::new();
        setup.embedded.case_sensitivity = false;
        let env = no_env;
        let mut facts = setup.facts(&env);
        facts.uri = b"/App/x/y";
        let sel = select(&facts, &setup.ctx(), &setup.dir).unwrap();
        assert_eq!(sel.script_name, b"/App");
        assert_eq!(sel.application_group, "www.example.com|/app");
    }

    #[test]
    fn missing_script_is_not_found_unless_a_handler_script_serves() {
        let setup = Setup::new();
        let env = no_env;
        let mut facts = setup.facts(&env);
        facts.file_is_regular = false;
        let refusal = select(&facts, &setup.ctx(), &setup.dir).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::ScriptNotFound {
                script: "/srv/app.wsgi".into()
            }
        );
        assert_eq!(refusal.status(), ffi::HTTP_NOT_FOUND);

        let setup = Setup::new().handler("h /srv/handler.py");
        let mut facts = setup.facts(&env);
        facts.file_is_regular = false;
        assert!(select(&facts, &setup.ctx(), &setup.dir).is_ok());
    }

    #[test]
    fn asgi_scripts_never_run_embedded() {
        // The dispatch script chooses embedded mode for it.
        let setup = Setup::new().alias("/app /srv/app.wsgi process-group=blue interface=asgi");
        let refusal = setup
            .resolve(Some(answer(Some("%{GLOBAL}"), None, None)))
            .unwrap_err();
        assert!(
            matches!(refusal, Refusal::AsgiEmbedded { .. }),
            "{refusal:?}"
        );
        assert_eq!(refusal.status(), ffi::HTTP_INTERNAL_SERVER_ERROR);
        let setup = Setup::new().alias("/app /srv/app.wsgi process-group=blue interface=asgi");
        let env = no_env;
        let sel = select(&setup.facts(&env), &setup.ctx(), &setup.dir).unwrap();
        assert!(sel.asgi);
        assert_eq!(setup.resolved_group(), Ok("blue".into()));
    }

    #[test]
    fn restrict_embedded_refuses_embedded_mode_only() {
        let mut setup = Setup::new();
        setup.restrict_embedded = true;
        let refusal = setup.resolve(None).unwrap_err();
        assert!(
            matches!(refusal, Refusal::EmbeddedRestricted { .. }),
            "{refusal:?}"
        );
        assert_eq!(refusal.status(), ffi::HTTP_INTERNAL_SERVER_ERROR);
        setup.dir.process_group = selector("blue");
        assert_eq!(setup.resolved_group(), Ok("blue".into()));
    }

    #[test]
    fn undefined_group_is_refused_naming_it() {
        let mut setup = Setup::new();
        setup.dir.process_group = selector("green");
        let refusal = setup.resolve(None).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::UnknownGroup {
                group: "green".into(),
                script: "/srv/app.wsgi".into()
            }
        );
        assert_eq!(refusal.status(), ffi::HTTP_INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn group_with_no_threads_is_refused() {
        let mut setup = Setup::new();
        setup.dir.process_group = selector("idle");
        let refusal = setup.resolve(None).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::GroupServesNoRequests { group, .. } if group == "idle"),
            "{refusal:?}"
        );
        assert_eq!(refusal.status(), ffi::HTTP_INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn group_of_another_virtual_host_is_refused_by_server_name() {
        let mut setup = Setup::new();
        setup.dir.process_group = selector("red");
        let refusal = setup.resolve(None).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::OtherVirtualHost {
                group: "red".into(),
                only: "red.example.com".into(),
                here: "www.example.com".into(),
                script: "/srv/app.wsgi".into(),
            }
        );
        // The same ServerName may use it, whichever Host the client sent.
        let sel = setup.select().unwrap();
        let mut here = vars(&no_env);
        here.server_hostname = "red.example.com".into();
        let route = resolve(sel, None, &here, &setup.ctx(), &setup.dir).unwrap();
        assert!(matches!(route.mode, Mode::Daemon(t) if t.group == "red"));
    }

    #[test]
    fn restrict_process_allows_only_listed_groups() {
        let mut setup = Setup::new();
        setup.dir.restrict_process = Some(vec!["blue".into(), String::new()]);
        setup.dir.process_group = selector("blue");
        assert_eq!(setup.resolved_group(), Ok("blue".into()));
        setup.dir.process_group = selector("%{GLOBAL}");
        assert_eq!(setup.resolved_group(), Ok(String::new()));
        setup.dir.process_group = selector("red");
        let refusal = setup.resolve(None).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::RestrictedProcess {
                group: "red".into(),
                allowed: vec!["blue".into(), String::new()],
                script: "/srv/app.wsgi".into(),
            }
        );
        assert_eq!(refusal.status(), ffi::HTTP_FORBIDDEN);
        // Checked before the group's existence: an undefined group is refused as restricted.
        setup.dir.process_group = selector("green");
        assert!(matches!(
            setup.resolve(None),
            Err(Refusal::RestrictedProcess { .. })
        ));
    }

    #[test]
    fn dispatch_answers_override_every_configured_value() {
        let mut setup = Setup::new().alias(
            "/app /srv/app.wsgi process-group=blue application-group=al callable-object=aliased",
        );
        setup.dir.restrict_process = Some(vec!["red".into(), "blue".into()]);
        let mut here = vars(&no_env);
        here.server_hostname = "red.example.com".into();
        let route = resolve(
            setup.select().unwrap(),
            Some(answer(Some("red"), Some("%{SERVER}"), Some("dispatched"))),
            &here,
            &setup.ctx(),
            &setup.dir,
        )
        .unwrap();
        assert!(matches!(route.mode, Mode::Daemon(t) if t.group == "red"));
        assert_eq!(route.selection.process_group, "red");
        assert_eq!(route.selection.application_group, "red.example.com");
        assert_eq!(route.selection.callable, "dispatched");

        // None leaves a value as configured; %{GLOBAL} is embedded mode.
        let route = setup
            .resolve(Some(answer(Some("%{GLOBAL}"), None, None)))
            .unwrap_err();
        assert!(
            matches!(&route, Refusal::RestrictedProcess { group, .. } if group.is_empty()),
            "{route:?}"
        );
        setup.dir.restrict_process = None;
        let route = setup
            .resolve(Some(answer(Some("%{GLOBAL}"), None, None)))
            .unwrap();
        assert!(matches!(route.mode, Mode::Embedded));
        assert_eq!(route.selection.application_group, "al");
        assert_eq!(route.selection.callable, "aliased");
    }

    #[test]
    fn dispatch_answers_are_checked_like_configured_ones() {
        let setup = Setup::new();
        // A dispatched group must exist, like a configured one.
        assert_eq!(
            setup
                .resolve(Some(answer(Some("green"), None, None)))
                .unwrap_err(),
            Refusal::UnknownGroup {
                group: "green".into(),
                script: "/srv/app.wsgi".into()
            }
        );
        for (group, app, what) in [
            (Some("%{NOPE}"), None, "process_group"),
            (None, Some("%{ENV:}"), "application_group"),
        ] {
            let refusal = setup.resolve(Some(answer(group, app, None))).unwrap_err();
            match &refusal {
                Refusal::BadDispatchGroup { what: w, error } => {
                    assert_eq!(*w, what);
                    assert_eq!(error.directive, "WSGIDispatchScript");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(refusal.status(), ffi::HTTP_INTERNAL_SERVER_ERROR);
        }
        let refusal = setup
            .resolve(Some(answer(None, None, Some(""))))
            .unwrap_err();
        assert_eq!(refusal, Refusal::EmptyDispatchCallable);
    }

    #[test]
    fn dispatch_groups_expand_with_the_request_variables_after_the_script() {
        let setup = Setup::new();
        let sel = setup.select().unwrap();
        let env = |name: &str| (name == "APP").then(|| "from-env".to_owned());
        let route = resolve(
            sel,
            Some(answer(None, Some("%{ENV:APP}"), None)),
            &vars(&env),
            &setup.ctx(),
            &setup.dir,
        )
        .unwrap();
        assert_eq!(route.selection.application_group, "from-env");
    }
}
