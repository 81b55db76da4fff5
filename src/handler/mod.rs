//! L4: the request path inside Apache. `translate_name` routes WSGIScriptAlias URLs to the
//! `wsgi-script` handler; `handle` resolves where the request goes ([`route`]: script,
//! process group, application group, callable, restrictions, dispatch script answers), then
//! serves it: builds the environment and runs it embedded or hands it to the daemon.

pub mod auth;
pub mod cgi_env;
pub mod daemon_client;
mod dispatch;
pub mod embedded;
pub mod handler_script;
pub mod metrics_endpoint;
mod phase_script;
pub mod route;
pub mod script_owner;

use std::ffi::CStr;
use std::os::unix::ffi::OsStrExt;

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::config::{
    DirConfig, GroupSelector, HandlerScript, MapHeadToGet, ScriptAlias, ServerConfig,
};
use crate::ffi;
use crate::pair_list::PairList;
use crate::protocol::req_flags;

pub use daemon_client::DaemonTarget;
pub(crate) use route::resource_script_name;
use route::{Mode, Refusal, Route, Selection};

/// The handler name WSGIScriptAlias sets and `SetHandler wsgi-script` selects.
pub const HANDLER_NAME: &CStr = c"wsgi-script";
const NOTE_ALIAS: &CStr = c"rwsgi-alias";
const NOTE_SCRIPT_NAME: &CStr = c"rwsgi-script-name";

/// What the handler needs besides the request: the daemon groups of this generation.
pub struct HandlerContext<'a> {
    pub server: &'a ServerConfig,
    pub dir: Option<&'a DirConfig>,
    pub groups: &'a [DaemonTarget],
    pub embedded: &'a embedded::EmbeddedSettings,
    /// WSGIRestrictEmbedded On: no Python in Apache children.
    pub restrict_embedded: bool,
    /// WSGIHeapPolicy (default On): this Apache child trims glibc's heap now and then.
    pub heap_policy: bool,
}

/// (script file, SCRIPT_NAME, PATH_INFO) for `uri` under `alias`, all bytes from the URL.
fn alias_match(alias: &ScriptAlias, uri: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    if !alias.is_match {
        let (script_name, path_info) = cgi_env::split_mount(alias.url.as_bytes(), uri)?;
        return Some((alias.script.as_bytes().to_vec(), script_name, path_info));
    }
    // Compiled once when the directive was read (module/directives.rs), kept with the configuration:
    // every WSGIScriptAliasMatch in a ServerConfig has its pattern.
    let spans = alias.pattern.as_ref()?.captures(uri)?;
    let (start, end) = spans[0]?;
    if start != 0 {
        return None;
    }
    let script = crate::apache::regex::substitute(alias.script.as_bytes(), uri, &spans);
    Some((script, uri[..end].to_vec(), uri[end..].to_vec()))
}

/// translate_name: a URL under a WSGIScriptAlias is mapped to its script.
pub fn translate_name(r: &mut Request<'_>, server: &ServerConfig) -> i32 {
    let uri = r.uri().to_vec();
    if uri.first() != Some(&b'/') {
        return ffi::DECLINED;
    }
    for (index, alias) in server.script_aliases.iter().enumerate() {
        if let Some((script, script_name, path_info)) = alias_match(alias, &uri) {
            // A relative script is under ServerRoot; joined as bytes, since a
            // WSGIScriptAliasMatch substitution may have put URL bytes (not UTF-8) into it.
            let script = r.pool().absolute_or_server_root_bytes(script);
            r.route_to_script(&script, HANDLER_NAME, &path_info);
            r.set_note(NOTE_ALIAS, index.to_string().as_bytes());
            r.set_note(NOTE_SCRIPT_NAME, &script_name);
            return ffi::OK;
        }
    }
    ffi::DECLINED
}

/// The request for `environ['apache.request_rec']` when WSGIPassApacheRequest is On; only
/// ever in this Apache child (embedded mode and the phase scripts), as in mod_wsgi.
fn apache_request_rec(r: &Request<'_>, dir: &DirConfig) -> Option<crate::python::ApacheRequestRec> {
    if dir.pass_apache_request() {
        // Python code given the capsule may change the request, as with mod_wsgi's.
        crate::python::ApacheRequestRec::new(r.as_ptr().cast_mut().cast())
    } else {
        None
    }
}

/// What `%{...}` selectors of this request expand from; `env` looks variables up in it.
fn request_vars<'a>(
    r: &'a Request<'_>,
    env: &'a dyn Fn(&str) -> Option<String>,
) -> route::RequestVars<'a> {
    // As mod_wsgi: the request's port, not only the one ServerName may carry.
    let port = r.server_port();
    route::RequestVars {
        server_hostname: r.server().map(|s| s.hostname()).unwrap_or_default().into(),
        port: if port == 0 { 80 } else { port },
        // The Host header without its port: borrowed from Apache when it is UTF-8.
        host: r.header_in(c"Host").map(|h| {
            let name = h.split(|&b| b == b':').next().unwrap_or_default();
            String::from_utf8_lossy(name)
        }),
        env,
    }
}

fn expand(selector: &GroupSelector, r: &Request<'_>, script_name: &str) -> String {
    let env = |name: &str| request_variable(r, name);
    request_vars(r, &env).expand(selector, script_name)
}

/// `%{ENV:name}` for this request (notes, subprocess_env, then the process environment).
fn request_variable(r: &Request<'_>, name: &str) -> Option<String> {
    r.variable(name)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The content handler for `wsgi-script`: resolves where the request goes, then serves it.
pub fn handle(r: &mut Request<'_>, ctx: &HandlerContext<'_>) -> i32 {
    let default_dir;
    let dir = match ctx.dir {
        Some(dir) => dir,
        None => {
            default_dir = DirConfig::default();
            &default_dir
        }
    };
    // A WSGIHandlerScript name selected by SetHandler/AddHandler/[H=]: its script serves
    // the request, whatever file the URL maps to (which need not exist).
    let handler_script = handler_script::selected(r, dir);
    match r.handler() {
        Some(h) if h == metrics_endpoint::HANDLER_NAME.to_bytes() => {
            return metrics_endpoint::handle(r);
        }
        Some(h) if h == HANDLER_NAME.to_bytes() || h == b"application/x-httpd-wsgi" => {}
        _ if handler_script.is_some() => {}
        _ => return ffi::DECLINED,
    }
    match resolve_route(r, ctx, dir, handler_script) {
        Ok(route) => serve(r, ctx, dir, &route),
        Err(status) => status,
    }
}

/// Reads what resolution needs from `r`, runs the dispatch script if there is one, and
/// resolves the route; `Err` is the status to answer with (logged).
fn resolve_route<'g>(
    r: &mut Request<'_>,
    ctx: &HandlerContext<'g>,
    dir: &DirConfig,
    handler_script: Option<&HandlerScript>,
) -> Result<Route<'g>, i32> {
    let selection = {
        let env = |name: &str| request_variable(r, name);
        let facts = route::RequestFacts {
            handler_script: handler_script
                .map(|h| (h, handler_script::script_path(r, h).into_bytes())),
            filename: r.filename().unwrap_or(b""),
            file_is_regular: r.file_is_regular(),
            alias: r
                .note(NOTE_ALIAS)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok()),
            alias_script_name: r.note(NOTE_SCRIPT_NAME),
            uri: r.uri(),
            path_info: r.path_info().unwrap_or(b""),
            vars: request_vars(r, &env),
        };
        route::select(&facts, ctx, dir)
    };
    let selection = selection.map_err(|refusal| refuse(r, &refusal, ""))?;
    let (answer, dispatch_path) = match &dir.dispatch_script {
        Some(script) => {
            let called = dispatch::call(r, ctx, dir, script, &selection)?;
            (Some(called.answer), called.path)
        }
        None => (None, String::new()),
    };
    // Read again: the dispatch script ran in between (and may have set variables).
    let env = |name: &str| request_variable(r, name);
    let vars = request_vars(r, &env);
    route::resolve(selection, answer, &vars, ctx, dir)
        .map_err(|refusal| refuse(r, &refusal, &dispatch_path))
}

/// Logs why the request is refused and gives the status to answer with; `dispatch_path`
/// names the dispatch script for a refusal of its answer.
fn refuse(r: &Request<'_>, refusal: &Refusal, dispatch_path: &str) -> i32 {
    match refusal {
        Refusal::ScriptNotFound { script } => log::request(
            r,
            Level::Error,
            &format!("RW0065: mod_rwsgi: target WSGI script not found or unable to stat: {script}"),
        ),
        Refusal::BadDispatchGroup { .. } | Refusal::EmptyDispatchCallable => {
            dispatch::log_refusal(r, refusal, dispatch_path);
        }
        Refusal::RestrictedProcess {
            group,
            allowed,
            script,
        } => handler_script::log_restricted(r, group, allowed, script),
        Refusal::EmbeddedRestricted { script } => log::request(
            r,
            Level::Error,
            &format!(
                "RW0066: mod_rwsgi: '{script}' would run in embedded mode, which WSGIRestrictEmbedded On \
                 forbids; set WSGIProcessGroup to a WSGIDaemonProcess group"
            ),
        ),
        Refusal::AsgiEmbedded { script } => log::request(
            r,
            Level::Error,
            &format!(
                "RW0300: mod_rwsgi: '{script}' is an ASGI application (interface=asgi) but its \
                 process group resolved to embedded mode; ASGI runs in daemon mode only"
            ),
        ),
        Refusal::UnknownGroup { group, script } => log::request(
            r,
            Level::Error,
            &format!(
                "RW0067: mod_rwsgi: no WSGI daemon process called '{group}' has been configured \
                 (needed by '{script}')"
            ),
        ),
        Refusal::GroupServesNoRequests { group, script } => log::request(
            r,
            Level::Error,
            &format!(
                "RW0122: mod_rwsgi: daemon process group '{group}' has threads=0 (a service-script \
                 group that serves no requests): refusing the request for '{script}'"
            ),
        ),
        Refusal::OtherVirtualHost {
            group,
            only,
            here,
            script,
        } => log::request(
            r,
            Level::Error,
            &format!(
                "RW0123: mod_rwsgi: daemon process group '{group}' is defined in virtual \
                 host {only} and cannot be used by virtual host {here} (needed by \
                 '{script}'): as in mod_wsgi, only virtual hosts with the same ServerName \
                 may use it; define it outside every <VirtualHost> to share it"
            ),
        ),
    }
    refusal.status()
}

/// `mod_wsgi.handler_script`: the handler script, or "" for a WSGI script itself.
fn handler_script_env(sel: &Selection) -> &[u8] {
    if sel.handler_script { &sel.script } else { b"" }
}

/// Serves a resolved request: the script owner check of its daemon group, the request
/// body's checks, then embedded mode or the daemon.
fn serve(r: &mut Request<'_>, ctx: &HandlerContext<'_>, dir: &DirConfig, route: &Route<'_>) -> i32 {
    let sel = &route.selection;
    if let Mode::Daemon(target) = route.mode {
        if target.script_owner.is_set() {
            if let Err(why) = target.script_owner.check(script_path(&sel.script)) {
                let script = String::from_utf8_lossy(&sel.script);
                let group = &sel.process_group;
                log::request(
                    r,
                    Level::Error,
                    &format!(
                        "RW0068: mod_rwsgi: refusing to run '{script}' in daemon process '{group}': {why}"
                    ),
                );
                return ffi::HTTP_FORBIDDEN;
            }
        }
    }

    let chunked = r
        .header_in(c"Transfer-Encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case(b"identity"));
    // An ASGI application reads its body as messages whatever its framing (as ASGI servers
    // do): WSGIChunkedRequest is WSGI's opt-in.
    if chunked && !dir.chunked_request() && !sel.asgi {
        log::request(
            r,
            Level::Info,
            "RW0069: mod_rwsgi: chunked request body refused (enable it with WSGIChunkedRequest On)",
        );
        return ffi::HTTP_LENGTH_REQUIRED;
    }
    let has_body = match r.setup_body() {
        Ok(b) => b,
        Err(code) => {
            log_refused_body(r, code);
            return code;
        }
    };

    let mut flags = 0;
    if has_body {
        flags |= req_flags::BODY_FOLLOWS;
    }
    if dir.script_reloading() {
        flags |= req_flags::SCRIPT_RELOADING;
    }
    if chunked {
        flags |= req_flags::CHUNKED_INPUT;
    }
    if dir.ignore_activity() {
        flags |= req_flags::IGNORE_ACTIVITY;
    }
    if sel.asgi {
        flags |= req_flags::ASGI;
        if daemon_client::is_websocket_upgrade(r) {
            flags |= req_flags::WEBSOCKET;
        }
    }
    r.add_cgi_variables();
    r.ensure_log_ids();
    let path_info = cgi_env::collapse_slashes(&sel.path_info);
    match route.mode {
        Mode::Embedded => serve_embedded(r, ctx, dir, sel, &path_info),
        Mode::Daemon(target) => {
            let plan = daemon_client::RequestPlan {
                script: &sel.script,
                app_group: &sel.application_group,
                callable: &sel.callable,
                flags,
                sendfile: dir.enable_sendfile(),
                error_override: dir.error_override(),
                trim_heap: ctx.heap_policy,
            };
            serve_daemon(r, dir, target, plan, has_body, sel, &path_info)
        }
    }
}

/// Runs the request in this Apache child.
fn serve_embedded(
    r: &mut Request<'_>,
    ctx: &HandlerContext<'_>,
    dir: &DirConfig,
    sel: &Selection,
    path_info: &[u8],
) -> i32 {
    if dir.trusted_proxy_headers.is_some() {
        let env = selection_environ(r, dir, sel, path_info);
        let env: PairList = env.iter().map(|(k, v)| (k, v)).collect();
        return serve_embedded_with(r, ctx, dir, sel, &env);
    }
    // The environ's byte pairs go into this thread's buffer, which keeps its capacity from
    // request to request: no allocation once warm. A request served while another runs on
    // this thread (a subrequest from the application) gets a buffer of its own.
    thread_local! {
        static ENV: std::cell::RefCell<PairList> = const {
            std::cell::RefCell::new(PairList::new())
        };
    }
    ENV.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            refill(&mut buf, environ_of(r, dir, sel, path_info));
            serve_embedded_with(r, ctx, dir, sel, &buf)
        }
        Err(_) => {
            let env: PairList = environ_of(r, dir, sel, path_info).collect();
            serve_embedded_with(r, ctx, dir, sel, &env)
        }
    })
}

/// A thread's environ buffer larger than this is not kept for the next request (a rare
/// huge cookie does not stay with the thread).
const ENV_KEEP_LIMIT: usize = 16 * 1024;

/// Makes `buf` hold exactly `env`, reusing its buffer unless it grew past the limit.
fn refill<'a>(buf: &mut PairList, env: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    if buf.capacity() > ENV_KEEP_LIMIT {
        *buf = PairList::new();
    }
    buf.clear();
    for (k, v) in env {
        buf.push(k, v);
    }
}

/// Runs the request in this Apache child with the environ `env`.
fn serve_embedded_with(
    r: &mut Request<'_>,
    ctx: &HandlerContext<'_>,
    dir: &DirConfig,
    sel: &Selection,
    env: &PairList,
) -> i32 {
    let spec = crate::python::RequestSpec {
        script_path: script_path(&sel.script),
        app_group: &sel.application_group,
        callable: &sel.callable,
        env,
        // Embedded mode re-imports a touched script in place, as mod_wsgi does.
        script_reloading: if dir.script_reloading() {
            crate::python::ScriptReloading::InPlace
        } else {
            crate::python::ScriptReloading::Off
        },
        // No queue and no daemon here: those instants stay 0.0, as in mod_wsgi.
        times: crate::python::RequestTimes {
            request_start_us: u64::try_from(r.request_time_us()).unwrap_or(0),
            ..Default::default()
        },
        daemon_attempts: crate::python::DaemonAttempts::default(),
        apache_request: apache_request_rec(r, dir),
        // `route::resolve` never sends an ASGI script to embedded mode.
        asgi: false,
        websocket: false,
    };
    embedded::serve(r, ctx.embedded, &spec, dir.enable_sendfile())
}

/// Sends the request to its daemon process group and relays the response.
fn serve_daemon(
    r: &mut Request<'_>,
    dir: &DirConfig,
    target: &DaemonTarget,
    mut plan: daemon_client::RequestPlan<'_>,
    has_body: bool,
    sel: &Selection,
    path_info: &[u8],
) -> i32 {
    let body = match daemon_client::Body::preread(r, has_body) {
        Ok(body) => body,
        Err(status) => return status,
    };
    if body.pushed() {
        plan.flags |= req_flags::BODY_PUSHED;
    }
    // An ASGI request also carries the request's header list (the scope's `headers`); a
    // WSGI request does not.
    let asgi_headers = if sel.asgi {
        asgi_header_list(r)
    } else {
        Vec::new()
    };
    let extra = sel
        .asgi
        .then_some((ASGI_HEADERS_KEY, &asgi_headers[..]))
        .into_iter();
    let head = if dir.trusted_proxy_headers.is_some() {
        let env = selection_environ(r, dir, sel, path_info);
        let env = env.iter().map(|(k, v)| (&k[..], &v[..]));
        daemon_client::encode_head(r, &plan, env.chain(extra))
    } else {
        // Apache's own strings go straight into the request head, with no copy of each.
        daemon_client::encode_head(r, &plan, environ_of(r, dir, sel, path_info).chain(extra))
    };
    match head {
        Ok(head) => daemon_client::serve(r, target, &plan, &head, body),
        Err(status) => status,
    }
}

/// The environ key that carries an ASGI request's header list to the daemon (the runtime
/// in `python/asgi.py` takes it out of environ and builds the scope's `headers` from it).
const ASGI_HEADERS_KEY: &[u8] = b"mod_rwsgi.asgi_headers";

/// The request's headers as Apache read them, in order, names as the client spelled them
/// (`_` and case kept), one `name:value` line each. Apache's core has already joined a
/// repeated header into one `, `-separated value; Apache strips NUL, CR and LF from both.
fn asgi_header_list(r: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    for (name, value) in r.headers_in() {
        out.extend_from_slice(name);
        out.push(b':');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// The script file's path: Apache's `r->filename` bytes, UTF-8 or not.
fn script_path(file: &[u8]) -> &std::path::Path {
    std::path::Path::new(std::ffi::OsStr::from_bytes(file))
}

/// The environ, owned, of the request `sel` resolved: its SCRIPT_NAME, pass-authorization
/// and handler script.
fn selection_environ(
    r: &Request<'_>,
    dir: &DirConfig,
    sel: &Selection,
    path_info: &[u8],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    owned_environ(
        r,
        dir,
        &sel.script_name,
        path_info,
        sel.pass_authorization,
        handler_script_env(sel),
    )
}

/// The environ of the request `sel` resolved, borrowed from Apache (no trusted proxy
/// headers applied): for the daemon's request head and embedded mode's environ buffer.
fn environ_of<'a>(
    r: &'a Request<'_>,
    dir: &DirConfig,
    sel: &'a Selection,
    path_info: &'a [u8],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    environ(
        r,
        request_method(r, dir.map_head_to_get()),
        &sel.script_name,
        path_info,
        sel.pass_authorization,
        handler_script_env(sel),
    )
}

/// The environ as owned pairs, with WSGITrustedProxyHeaders applied (logged): for embedded
/// mode, and for the trusted proxy rewrite.
fn owned_environ(
    r: &Request<'_>,
    dir: &DirConfig,
    script_name: &[u8],
    path_info: &[u8],
    pass_auth: bool,
    handler_script: &[u8],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let method = request_method(r, dir.map_head_to_get());
    let mut env: Vec<(Vec<u8>, Vec<u8>)> =
        environ(r, method, script_name, path_info, pass_auth, handler_script)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
    apply_trusted_proxy_headers(r, dir, &mut env);
    env
}

/// WSGITrustedProxyHeaders, if set, rewrites `env` (each change logged).
fn apply_trusted_proxy_headers(
    r: &Request<'_>,
    dir: &DirConfig,
    env: &mut Vec<(Vec<u8>, Vec<u8>)>,
) {
    if let Some(trusted_headers) = dir.trusted_proxy_headers.as_deref() {
        // No WSGITrustedProxies: every peer is trusted, as mod_wsgi documents.
        let proxies = dir.trusted_proxies.as_deref();
        for note in crate::config::apply_trusted_proxy_headers(env, proxies, trusted_headers) {
            log::request_at!(r, Level::Info, "RW0070: mod_rwsgi: {note}");
        }
    }
}

/// REQUEST_METHOD as the app sees it. WSGIMapHEADToGET: a HEAD request is shown as GET
/// always (On), never (Off), or (Auto, the default) when a content filter after the handler
/// needs the body it would produce for a GET; Apache drops the body for the client anyway.
fn request_method<'a>(r: &'a Request<'_>, map: MapHeadToGet) -> &'a [u8] {
    let head = r.method_number() == ffi::M_GET && r.header_only();
    let mapped = match map {
        MapHeadToGet::On => head,
        MapHeadToGet::Off => false,
        MapHeadToGet::Auto => head && r.has_content_output_filter(),
    };
    if mapped { b"GET" } else { r.method() }
}

/// Apache refused the request body before anything was read: say what was wrong with it.
fn log_refused_body(r: &Request<'_>, code: i32) {
    let header = |name: &CStr| {
        r.header_in(name)
            .map(|v| format!("{:?}", String::from_utf8_lossy(v)))
            .unwrap_or_else(|| "none".into())
    };
    let why = match code {
        ffi::HTTP_REQUEST_ENTITY_TOO_LARGE => "larger than LimitRequestBody",
        ffi::HTTP_NOT_IMPLEMENTED => "unsupported Transfer-Encoding",
        _ => "invalid Content-Length or Transfer-Encoding",
    };
    log::request(
        r,
        Level::Info,
        &format!(
            "RW0071: mod_rwsgi: request body refused with status {code}: {why} (Content-Length: {}, \
             Transfer-Encoding: {})",
            header(c"Content-Length"),
            header(c"Transfer-Encoding")
        ),
    );
}

/// `mod_wsgi.server_pid`: this Apache child's PID as text, made on its first request
/// (only Apache children serve requests, never the parent that forks them).
fn server_pid_text() -> &'static [u8] {
    static PID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PID.get_or_init(|| std::process::id().to_string())
        .as_bytes()
}

/// The request's WSGI environ, borrowed from Apache: subprocess_env (filled by
/// [`Request::add_cgi_variables`]) without the variables an app must not see, then the
/// request line, SCRIPT_NAME and PATH_INFO (`path_info` already collapsed), mod_wsgi's
/// string keys (SCRIPT_NAME and PATH_INFO as saved before trusted proxy headers apply, the
/// listener, the Apache child's PID, the log ids made by [`Request::ensure_log_ids`]), and
/// Authorization when passed on.
fn environ<'a>(
    r: &'a Request<'_>,
    method: &'a [u8],
    script_name: &'a [u8],
    path_info: &'a [u8],
    pass_auth: bool,
    handler_script: &'a [u8],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    let authorization = if pass_auth {
        r.header_in(c"Authorization")
    } else {
        None
    };
    let (listener_host, listener_port) = r.listener();
    let (request_id, connection_id) = r.log_ids();
    let mod_wsgi: [(&[u8], Option<&[u8]>); 9] = [
        // Before any trusted X-Script-Name rewrites SCRIPT_NAME (mod_wsgi saves them so).
        (b"mod_wsgi.script_name", Some(script_name)),
        (b"mod_wsgi.path_info", Some(path_info)),
        (b"mod_wsgi.listener_host", Some(listener_host)),
        (
            b"mod_wsgi.listener_port",
            Some(r.pool_bytes(cgi_env::decimal(listener_port, &mut [0; 5]))),
        ),
        (b"mod_wsgi.server_pid", Some(server_pid_text())),
        (b"mod_wsgi.request_id", request_id),
        (b"mod_wsgi.connection_id", connection_id),
        // The Apache handler that chose mod_rwsgi, and the WSGIHandlerScript it named.
        (
            b"mod_wsgi.request_handler",
            Some(r.handler().unwrap_or(b"")),
        ),
        (b"mod_wsgi.handler_script", Some(handler_script)),
    ];
    let request: [(&[u8], &[u8]); 7] = [
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_PROTOCOL", r.protocol()),
        (b"REQUEST_METHOD", method),
        (b"QUERY_STRING", r.args().unwrap_or(b"")),
        (b"REQUEST_URI", r.unparsed_uri()),
        (b"SCRIPT_NAME", script_name),
        (b"PATH_INFO", path_info),
    ];
    r.subprocess_env()
        .into_iter()
        .filter(|(k, _)| !cgi_env::is_hidden(k))
        .chain(request)
        .chain(mod_wsgi.into_iter().filter_map(|(k, v)| Some((k, v?))))
        .chain(authorization.map(|auth| (&b"HTTP_AUTHORIZATION"[..], auth)))
}

#[cfg(test)]
mod tests {
    use super::{ENV_KEEP_LIMIT, PairList, refill};

    fn pairs<'a>(list: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        list.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }

    #[test]
    fn env_buffer_holds_exactly_the_last_fill_and_drops_huge_buffers() {
        let mut buf = PairList::new();
        let big = "x".repeat(ENV_KEEP_LIMIT * 4);
        refill(&mut buf, pairs(&[("A", "1"), ("B", &big), ("C", "3")]));
        assert_eq!(buf.len(), 3);
        assert_eq!(buf.get(b"B"), Some(big.as_bytes()));
        refill(&mut buf, pairs(&[("HTTP_HOST", "h"), ("D", "4")]));
        assert_eq!(
            buf.iter().collect::<Vec<_>>(),
            [(&b"HTTP_HOST"[..], &b"h"[..]), (b"D", b"4")]
        );
        assert!(buf.capacity() <= ENV_KEEP_LIMIT);
        let room = buf.capacity();
        refill(&mut buf, pairs(&[("A", "1")]));
        assert_eq!(buf.capacity(), room, "a small buffer is kept");
        refill(&mut buf, pairs(&[]));
        assert!(buf.is_empty());
    }
}
