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

use crate::config::{ConfigError, DirConfig, GroupSelector, HandlerScript, SelectorContext};
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
    pub server_hostname: String,
    /// The request's port (80 when Apache reports none).
    pub port: u16,
    /// The Host header without its port, if any.
    pub host: Option<String>,
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
                here: vars.server_hostname.clone(),
                script: shown(&sel.script),
            });
        }
    }
    Ok(Route {
        selection: sel,
        mode: Mode::Daemon(target),
    })
}
