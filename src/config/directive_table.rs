//! The directive table: every mod_wsgi 6.0 directive, where Apache allows it, which
//! configuration structure it writes, its usage line, and whether mod_rwsgi implements it.
//! A new directive is one row here (and its name in the command table, `module/mod.rs`).

/// Where Apache allows a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Main server configuration only (`RSRC_CONF` + `GLOBAL_ONLY` check).
    ServerOnly,
    /// Server and `<VirtualHost>` (`RSRC_CONF`).
    ServerVhost,
    /// Server, `<VirtualHost>`, `<Directory>`/`<Location>` (`RSRC_CONF|ACCESS_CONF`).
    ServerVhostDir,
    /// Everywhere, including `.htaccess` with `AllowOverride FileInfo`
    /// (`RSRC_CONF|ACCESS_CONF|OR_FILEINFO`).
    AnyDir,
    /// `<Directory>`/`<Location>` and `.htaccess` with `AllowOverride AuthConfig`
    /// only (`OR_AUTHCFG`): the WSGI auth script directives.
    DirAuth,
}

/// Which configuration structure a directive writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// [`crate::config::GlobalConfig`], server-wide.
    Global,
    /// [`crate::config::ServerConfig`], per virtual host.
    Server,
    /// [`crate::config::DirConfig`], per directory (and per server for S/V use).
    Dir,
}

/// One row of the directive table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectiveInfo {
    /// The directive name, canonical spelling.
    pub name: &'static str,
    /// Where Apache accepts it.
    pub scope: Scope,
    /// Which config structure it writes.
    pub target: Target,
    /// One-line usage for Apache's help text.
    pub syntax: &'static str,
    /// False for directives that are parsed but not supported yet; the caller
    /// reports them with [`not_implemented_error`].
    pub implemented: bool,
}

const fn info(
    name: &'static str,
    scope: Scope,
    target: Target,
    syntax: &'static str,
    implemented: bool,
) -> DirectiveInfo {
    DirectiveInfo {
        name,
        scope,
        target,
        syntax,
        implemented,
    }
}

use Scope::{AnyDir, DirAuth, ServerOnly, ServerVhost, ServerVhostDir};
use Target::{Dir, Global, Server};

/// Every mod_wsgi directive except the `<WSGIInterpreterOptions>` container.
pub static DIRECTIVES: &[DirectiveInfo] = &[
    // Mapping URLs to scripts.
    info(
        "WSGIScriptAlias",
        ServerVhost,
        Server,
        "WSGIScriptAlias URL-path file-path [process-group=NAME] [application-group=NAME] \
         [callable-object=NAME] [pass-authorization=On|Off] [interface=wsgi|asgi]",
        true,
    ),
    info(
        "WSGIScriptAliasMatch",
        ServerVhost,
        Server,
        "WSGIScriptAliasMatch regex file-path [process-group=NAME] [application-group=NAME] \
         [callable-object=NAME] [pass-authorization=On|Off] [interface=wsgi|asgi]",
        true,
    ),
    // Daemon processes.
    info(
        "WSGIDaemonProcess",
        ServerVhost,
        Global,
        "WSGIDaemonProcess name [option=value ...]",
        true,
    ),
    info(
        "WSGIProcessGroup",
        ServerVhostDir,
        Dir,
        "WSGIProcessGroup name|%{GLOBAL}|%{ENV:var}|%{SERVER}|%{HOST}|%{RESOURCE}",
        true,
    ),
    info(
        "WSGIApplicationGroup",
        ServerVhostDir,
        Dir,
        "WSGIApplicationGroup name|%{GLOBAL}|%{ENV:var}|%{SERVER}|%{HOST}|%{RESOURCE}",
        true,
    ),
    info(
        "WSGISocketPrefix",
        ServerOnly,
        Global,
        "WSGISocketPrefix path-prefix",
        true,
    ),
    info(
        "WSGISocketRotation",
        ServerOnly,
        Global,
        "WSGISocketRotation On|Off",
        true,
    ),
    info(
        "WSGIAcceptMutex",
        ServerOnly,
        Global,
        "WSGIAcceptMutex default|flock|fcntl|sysvsem|posixsem|pthread",
        true,
    ),
    info(
        "WSGIRestrictProcess",
        ServerVhostDir,
        Dir,
        "WSGIRestrictProcess group ...",
        true,
    ),
    // Python set-up.
    info(
        "WSGIPythonHome",
        ServerOnly,
        Global,
        "WSGIPythonHome prefix[:exec_prefix]",
        true,
    ),
    info(
        "WSGIPythonPath",
        ServerOnly,
        Global,
        "WSGIPythonPath directory[:directory...]",
        true,
    ),
    info(
        "WSGIPythonOptimize",
        ServerOnly,
        Global,
        "WSGIPythonOptimize 0|1|2",
        true,
    ),
    info(
        "WSGIDontWriteBytecode",
        ServerOnly,
        Global,
        "WSGIDontWriteBytecode On|Off",
        true,
    ),
    info(
        "WSGIPythonWarnings",
        ServerOnly,
        Global,
        "WSGIPythonWarnings filter",
        true,
    ),
    info(
        "WSGIPythonHashSeed",
        ServerOnly,
        Global,
        "WSGIPythonHashSeed random|0-4294967295",
        true,
    ),
    info(
        "WSGIPythonEggs",
        ServerOnly,
        Global,
        "WSGIPythonEggs directory",
        true,
    ),
    info(
        "WSGIDestroyInterpreter",
        ServerOnly,
        Global,
        "WSGIDestroyInterpreter On|Off",
        true,
    ),
    info(
        "WSGISwitchInterval",
        ServerOnly,
        Global,
        "WSGISwitchInterval seconds",
        true,
    ),
    info(
        "WSGIPerInterpreterGIL",
        ServerOnly,
        Global,
        "WSGIPerInterpreterGIL On|Off",
        true,
    ),
    info(
        "WSGIFreeThreading",
        ServerOnly,
        Global,
        "WSGIFreeThreading On|Off",
        true,
    ),
    // Restrictions and behaviour switches.
    info(
        "WSGIVerboseDebugging",
        ServerOnly,
        Global,
        "WSGIVerboseDebugging On|Off",
        true,
    ),
    info(
        "WSGIRestrictEmbedded",
        ServerOnly,
        Global,
        "WSGIRestrictEmbedded On|Off",
        true,
    ),
    info(
        "WSGIRestrictStdout",
        ServerOnly,
        Global,
        "WSGIRestrictStdout On|Off",
        true,
    ),
    info(
        "WSGIRestrictStdin",
        ServerOnly,
        Global,
        "WSGIRestrictStdin On|Off",
        true,
    ),
    info(
        "WSGIRestrictSignal",
        ServerOnly,
        Global,
        "WSGIRestrictSignal On|Off",
        true,
    ),
    info(
        "WSGICaseSensitivity",
        ServerOnly,
        Global,
        "WSGICaseSensitivity On|Off",
        true,
    ),
    info(
        "WSGIServerMetrics",
        ServerOnly,
        Global,
        "WSGIServerMetrics On|Off",
        true,
    ),
    // mod_rwsgi's own (mod_wsgi has no equivalent): glibc heap policy in Apache children.
    info(
        "WSGIHeapPolicy",
        ServerOnly,
        Global,
        "WSGIHeapPolicy On|Off",
        true,
    ),
    // Scripts.
    info(
        "WSGIImportScript",
        ServerVhost,
        Global,
        "WSGIImportScript file-path process-group=NAME application-group=NAME",
        true,
    ),
    info(
        "WSGICallableObject",
        AnyDir,
        Dir,
        "WSGICallableObject name",
        true,
    ),
    info(
        "WSGIDispatchScript",
        ServerVhostDir,
        Dir,
        "WSGIDispatchScript file-path [application-group=NAME]",
        true,
    ),
    info(
        "WSGIHandlerScript",
        ServerVhostDir,
        Dir,
        "WSGIHandlerScript name file-path [process-group=NAME] [application-group=NAME] \
         [pass-authorization=On|Off] [interface=wsgi|asgi]",
        true,
    ),
    info(
        "WSGIAccessScript",
        DirAuth,
        Dir,
        "WSGIAccessScript file-path [application-group=NAME]",
        true,
    ),
    info(
        "WSGIAuthUserScript",
        DirAuth,
        Dir,
        "WSGIAuthUserScript file-path [application-group=NAME]",
        true,
    ),
    info(
        "WSGIAuthGroupScript",
        DirAuth,
        Dir,
        "WSGIAuthGroupScript file-path [application-group=NAME]",
        true,
    ),
    info(
        "WSGIGroupAuthoritative",
        DirAuth,
        Dir,
        "WSGIGroupAuthoritative On|Off",
        true,
    ),
    // Per-request switches.
    info(
        "WSGIPassAuthorization",
        AnyDir,
        Dir,
        "WSGIPassAuthorization On|Off",
        true,
    ),
    info(
        "WSGIScriptReloading",
        AnyDir,
        Dir,
        "WSGIScriptReloading On|Off",
        true,
    ),
    info(
        "WSGIChunkedRequest",
        AnyDir,
        Dir,
        "WSGIChunkedRequest On|Off",
        true,
    ),
    info(
        "WSGIMapHEADToGET",
        AnyDir,
        Dir,
        "WSGIMapHEADToGET On|Off|Auto",
        true,
    ),
    info(
        "WSGITrustedProxies",
        AnyDir,
        Dir,
        "WSGITrustedProxies address[/prefix] ...",
        true,
    ),
    info(
        "WSGITrustedProxyHeaders",
        AnyDir,
        Dir,
        "WSGITrustedProxyHeaders header ...",
        true,
    ),
    info(
        "WSGIErrorOverride",
        AnyDir,
        Dir,
        "WSGIErrorOverride On|Off",
        true,
    ),
    info(
        "WSGIIgnoreActivity",
        AnyDir,
        Dir,
        "WSGIIgnoreActivity On|Off",
        true,
    ),
    info(
        "WSGIEnableSendfile",
        AnyDir,
        Dir,
        "WSGIEnableSendfile On|Off",
        true,
    ),
    info(
        "WSGIPassApacheRequest",
        ServerVhostDir,
        Dir,
        "WSGIPassApacheRequest On|Off",
        true,
    ),
    // Telemetry (6.0).
    info(
        "WSGITelemetryService",
        ServerOnly,
        Global,
        "WSGITelemetryService unix:/path [interval=seconds]",
        true,
    ),
    info(
        "WSGISlowRequests",
        ServerOnly,
        Global,
        "WSGISlowRequests seconds",
        true,
    ),
    info(
        "WSGITelemetryOptions",
        ServerOnly,
        Global,
        "WSGITelemetryOptions [+|-]CaptureUserAgent ... | None | All",
        true,
    ),
];

/// Section directives that mod_rwsgi does not accept at all.
pub static UNSUPPORTED_SECTIONS: &[&str] = &[];

/// Looks a directive up by name, case-insensitively (as Apache does).
pub fn directive_info(name: &str) -> Option<&'static DirectiveInfo> {
    DIRECTIVES
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_unique() {
        assert_eq!(DIRECTIVES.len(), 49);
        for (i, d) in DIRECTIVES.iter().enumerate() {
            assert!(d.name.starts_with("WSGI"), "{}", d.name);
            assert!(d.syntax.starts_with(d.name), "{}", d.syntax);
            assert!(
                DIRECTIVES[..i]
                    .iter()
                    .all(|o| !o.name.eq_ignore_ascii_case(d.name)),
                "duplicate {}",
                d.name
            );
        }
        assert!(directive_info("WSGIInterpreterOptions").is_none());
        assert!(directive_info("<WSGIInterpreterOptions").is_none());
        assert!(UNSUPPORTED_SECTIONS.is_empty());
        for removed in ["WSGILazyInitialization", "WSGINewRelicConfigFile"] {
            assert!(directive_info(removed).is_none(), "{removed}");
        }
    }

    #[test]
    fn implemented_flags() {
        let implemented = [
            "WSGIDaemonProcess",
            "WSGIProcessGroup",
            "WSGIApplicationGroup",
            "WSGIScriptAlias",
            "WSGIScriptAliasMatch",
            "WSGIPythonHome",
            "WSGIPythonPath",
            "WSGISocketPrefix",
            "WSGIRestrictStdout",
            "WSGIVerboseDebugging",
            "WSGIPassAuthorization",
            "WSGIScriptReloading",
            "WSGICallableObject",
            "WSGIImportScript",
            "WSGIChunkedRequest",
            "WSGIRestrictEmbedded",
            "WSGITrustedProxies",
            "WSGITrustedProxyHeaders",
            "WSGIMapHEADToGET",
            "WSGISocketRotation",
            "WSGIEnableSendfile",
            "WSGIRestrictStdin",
            "WSGIRestrictSignal",
            "WSGIPythonOptimize",
            "WSGIDontWriteBytecode",
            "WSGIPythonWarnings",
            "WSGIPythonHashSeed",
            "WSGIPythonEggs",
            "WSGIDestroyInterpreter",
            "WSGISwitchInterval",
            "WSGIFreeThreading",
            "WSGIPerInterpreterGIL",
            "WSGIDispatchScript",
            "WSGIAccessScript",
            "WSGIAuthUserScript",
            "WSGIAuthGroupScript",
            "WSGIGroupAuthoritative",
            "WSGIHandlerScript",
            "WSGIRestrictProcess",
            "WSGIErrorOverride",
            "WSGIIgnoreActivity",
            "WSGIPassApacheRequest",
            "WSGICaseSensitivity",
            "WSGIAcceptMutex",
            "WSGIServerMetrics",
            "WSGIHeapPolicy",
            "WSGITelemetryService",
            "WSGISlowRequests",
            "WSGITelemetryOptions",
        ];
        for d in DIRECTIVES {
            assert_eq!(d.implemented, implemented.contains(&d.name), "{}", d.name);
        }
        assert_eq!(DIRECTIVES.iter().filter(|d| d.implemented).count(), 49);
    }

    #[test]
    fn scopes_and_targets_follow_mod_wsgi() {
        let cases: &[(&str, Scope, Target)] = &[
            ("WSGIScriptAlias", ServerVhost, Server),
            ("WSGIScriptAliasMatch", ServerVhost, Server),
            ("WSGIDaemonProcess", ServerVhost, Global),
            ("WSGIImportScript", ServerVhost, Global),
            ("WSGIProcessGroup", ServerVhostDir, Dir),
            ("WSGIApplicationGroup", ServerVhostDir, Dir),
            ("WSGIPythonHome", ServerOnly, Global),
            ("WSGIVerboseDebugging", ServerOnly, Global),
            ("WSGICallableObject", AnyDir, Dir),
            ("WSGIPassAuthorization", AnyDir, Dir),
            ("WSGITrustedProxies", AnyDir, Dir),
            ("WSGIPassApacheRequest", ServerVhostDir, Dir),
            ("WSGIAuthUserScript", DirAuth, Dir),
            ("WSGIGroupAuthoritative", DirAuth, Dir),
        ];
        for (name, scope, target) in cases {
            let d = directive_info(name).unwrap();
            assert_eq!((d.scope, d.target), (*scope, *target), "{name}");
        }
        for d in DIRECTIVES {
            // Server-only directives write the global config; Dir-target ones are
            // exactly those allowed in a directory context.
            if d.scope == ServerOnly {
                assert_eq!(d.target, Global, "{}", d.name);
            }
            let dir_scope = matches!(d.scope, ServerVhostDir | AnyDir | DirAuth);
            assert_eq!(d.target == Dir, dir_scope, "{}", d.name);
        }
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(
            directive_info("wsgiscriptalias").unwrap().name,
            "WSGIScriptAlias"
        );
        assert_eq!(
            directive_info("WSGIMAPHEADTOGET").unwrap().name,
            "WSGIMapHEADToGET"
        );
        assert!(directive_info("WSGINope").is_none());
    }
}
