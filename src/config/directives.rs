//! `parse_directive`, which turns one directive's raw arguments into a typed
//! [`Directive`]. Which directives exist, where they may appear and whether they are
//! implemented is the table in `directive_table.rs`; the argument checks of those not
//! implemented yet are in `not_implemented.rs`.

use std::fmt;

use super::args::Args;
use super::daemon_group::{DaemonGroupSpec, parse_on_off, split_path_list};
use super::directive_table::directive_info;
use super::error::ConfigError;
use super::not_implemented::validate_other;
use super::script_alias::{ImportScript, ScriptAlias};
use super::selector::GroupSelector;
use super::tokenizer::tokenize;
use super::trusted_proxy::{IpNet, KNOWN_PROXY_HEADERS, canonical_proxy_header};

/// `WSGIMapHEADToGET` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapHeadToGet {
    /// Always map HEAD to GET.
    On,
    /// Never map.
    Off,
    /// Map only when a content-level output filter is present (the default).
    Auto,
}

impl fmt::Display for MapHeadToGet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapHeadToGet::On => "On",
            MapHeadToGet::Off => "Off",
            MapHeadToGet::Auto => "Auto",
        })
    }
}

/// One parsed directive.
#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    /// WSGIDaemonProcess.
    DaemonProcess(Box<DaemonGroupSpec>),
    /// WSGIProcessGroup.
    ProcessGroup(GroupSelector),
    /// WSGIApplicationGroup.
    ApplicationGroup(GroupSelector),
    /// WSGIScriptAlias and WSGIScriptAliasMatch (`ScriptAlias::is_match`).
    ScriptAlias(ScriptAlias),
    /// WSGIImportScript.
    ImportScript(ImportScript),
    /// WSGIPythonHome, `prefix[:exec_prefix]` as written.
    PythonHome(String),
    /// WSGIPythonPath, split on `:`.
    PythonPath(Vec<String>),
    /// WSGISocketPrefix as written (the caller makes it ServerRoot-relative).
    SocketPrefix(String),
    /// WSGICallableObject.
    CallableObject(String),
    /// WSGITrustedProxies.
    TrustedProxies(Vec<IpNet>),
    /// WSGITrustedProxyHeaders, canonical spelling (`X-Forwarded-For`).
    TrustedProxyHeaders(Vec<String>),
    /// WSGIMapHEADToGET.
    MapHeadToGet(MapHeadToGet),
    /// WSGIPythonOptimize: 0, 1 (`-O`) or 2 (`-OO`).
    PythonOptimize(u8),
    /// WSGIPythonWarnings: one `-W` filter (the directive may repeat).
    PythonWarnings(String),
    /// WSGIPythonHashSeed: `None` = random.
    PythonHashSeed(Option<u32>),
    /// WSGIPythonEggs: PYTHON_EGG_CACHE in embedded mode.
    PythonEggs(String),
    /// WSGISwitchInterval seconds (embedded mode).
    SwitchInterval(f64),
    /// Every `On|Off` directive.
    Flag {
        /// Canonical directive name.
        name: &'static str,
        /// On = true.
        value: bool,
    },
    /// A directive whose arguments were validated but which has no typed form
    /// yet (all of them are `implemented: false`).
    Other {
        /// Canonical directive name.
        name: &'static str,
        /// The words of the line, quotes removed.
        args: Vec<String>,
    },
}

impl Directive {
    /// The canonical name of the directive this came from.
    pub fn directive_name(&self) -> &'static str {
        match self {
            Directive::DaemonProcess(_) => "WSGIDaemonProcess",
            Directive::ProcessGroup(_) => "WSGIProcessGroup",
            Directive::ApplicationGroup(_) => "WSGIApplicationGroup",
            Directive::ScriptAlias(a) if a.is_match => "WSGIScriptAliasMatch",
            Directive::ScriptAlias(_) => "WSGIScriptAlias",
            Directive::ImportScript(_) => "WSGIImportScript",
            Directive::PythonHome(_) => "WSGIPythonHome",
            Directive::PythonPath(_) => "WSGIPythonPath",
            Directive::SocketPrefix(_) => "WSGISocketPrefix",
            Directive::CallableObject(_) => "WSGICallableObject",
            Directive::TrustedProxies(_) => "WSGITrustedProxies",
            Directive::TrustedProxyHeaders(_) => "WSGITrustedProxyHeaders",
            Directive::MapHeadToGet(_) => "WSGIMapHEADToGET",
            Directive::PythonOptimize(_) => "WSGIPythonOptimize",
            Directive::PythonWarnings(_) => "WSGIPythonWarnings",
            Directive::PythonHashSeed(_) => "WSGIPythonHashSeed",
            Directive::PythonEggs(_) => "WSGIPythonEggs",
            Directive::SwitchInterval(_) => "WSGISwitchInterval",
            Directive::Flag { name, .. } | Directive::Other { name, .. } => name,
        }
    }

    /// The daemon process group this directive names literally, if any
    /// (WSGIProcessGroup, `process-group=` of WSGIScriptAlias(Match) and
    /// WSGIImportScript). The caller reports it with `GlobalConfig::note_group_ref`.
    pub fn literal_process_group(&self) -> Option<&str> {
        match self {
            Directive::ProcessGroup(g) => g.literal_name(),
            Directive::ScriptAlias(a) => a.literal_process_group(),
            Directive::ImportScript(i) => i.literal_process_group(),
            _ => None,
        }
    }

    /// The daemon process group a WSGIHandlerScript line names literally in `process-group=`
    /// (None for other directives, or a line that does not parse: applying it reports that).
    /// The caller reports it with `GlobalConfig::note_group_ref`.
    pub fn handler_script_group(&self) -> Option<String> {
        let Directive::Other {
            name: "WSGIHandlerScript",
            args,
        } = self
        else {
            return None;
        };
        let handler = super::HandlerScript::parse("WSGIHandlerScript", args).ok()?;
        Some(handler.process_group?.literal_name()?.to_owned())
    }
}

/// Parses one directive line: `name` is the directive (any case), `raw_args`
/// everything after it, as Apache passes it to a `RAW_ARGS` handler. Errors
/// name the directive and the bad token.
pub fn parse_directive(name: &str, raw_args: &str) -> Result<Directive, ConfigError> {
    let canonical = directive_info(name).map_or(name, |d| d.name);
    parse_directive_words(name, tokenize(canonical, raw_args)?)
}

/// Like [`parse_directive`], for arguments already split into words (quotes
/// removed), e.g. by Apache for a `TAKE1` handler.
pub fn parse_directive_words(name: &str, words: Vec<String>) -> Result<Directive, ConfigError> {
    let Some(info) = directive_info(name) else {
        return Err(ConfigError::new(name, "unknown mod_wsgi directive"));
    };
    let args = Args {
        info,
        words: &words,
    };
    let d = info.name;
    Ok(match d {
        "WSGIDaemonProcess" => Directive::DaemonProcess(Box::new(DaemonGroupSpec::parse(&words)?)),
        "WSGIProcessGroup" => Directive::ProcessGroup(GroupSelector::parse(d, args.one()?)?),
        "WSGIApplicationGroup" => {
            Directive::ApplicationGroup(GroupSelector::parse(d, args.one()?)?)
        }
        "WSGIScriptAlias" => Directive::ScriptAlias(ScriptAlias::parse(d, &words, false)?),
        "WSGIScriptAliasMatch" => Directive::ScriptAlias(ScriptAlias::parse(d, &words, true)?),
        "WSGIImportScript" => Directive::ImportScript(ImportScript::parse(d, &words)?),
        // As mod_wsgi, an empty value ('') is accepted: Python's default home, no path added.
        "WSGIPythonHome" => Directive::PythonHome(args.one()?.to_owned()),
        "WSGIPythonPath" => Directive::PythonPath(split_path_list(args.one()?)),
        "WSGISocketPrefix" => Directive::SocketPrefix(args.one_nonempty()?.to_owned()),
        "WSGICallableObject" => Directive::CallableObject(args.one_nonempty()?.to_owned()),
        "WSGITrustedProxies" => {
            let mut nets = Vec::new();
            for word in args.at_least_one()? {
                let net = IpNet::parse(word)
                    .map_err(|m| ConfigError::at(d, "address", word.as_str(), m))?;
                nets.push(net);
            }
            Directive::TrustedProxies(nets)
        }
        "WSGITrustedProxyHeaders" => {
            let mut headers = Vec::new();
            for word in args.at_least_one()? {
                let Some(canonical) = canonical_proxy_header(word) else {
                    let known: Vec<&str> = KNOWN_PROXY_HEADERS.iter().map(|(h, _)| *h).collect();
                    return Err(ConfigError::at(
                        d,
                        "header",
                        word.as_str(),
                        format!(
                            "not a known proxy header; expected one of {}",
                            known.join(", ")
                        ),
                    ));
                };
                headers.push(canonical.to_owned());
            }
            Directive::TrustedProxyHeaders(headers)
        }
        "WSGIPythonOptimize" => {
            let value = args.one()?;
            Directive::PythonOptimize(match value {
                "0" => 0,
                "1" => 1,
                "2" => 2,
                _ => return Err(args.bad(value, "expected 0, 1 or 2")),
            })
        }
        "WSGIPythonWarnings" => Directive::PythonWarnings(args.one_nonempty()?.to_owned()),
        "WSGIPythonEggs" => Directive::PythonEggs(args.one_nonempty()?.to_owned()),
        "WSGIPythonHashSeed" => {
            let value = args.one()?;
            let seed = match value {
                "random" => None,
                _ if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| hash_seed_error(&args, value))?,
                ),
                _ => return Err(hash_seed_error(&args, value)),
            };
            Directive::PythonHashSeed(seed)
        }
        "WSGISwitchInterval" => {
            let value = args.one()?;
            match value.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Directive::SwitchInterval(v),
                _ => {
                    return Err(
                        args.bad(value, "expected a positive number of seconds, like 0.005")
                    );
                }
            }
        }
        "WSGIMapHEADToGET" => {
            let value = args.one()?;
            Directive::MapHeadToGet(match parse_on_off(value) {
                Some(true) => MapHeadToGet::On,
                Some(false) => MapHeadToGet::Off,
                None if value.eq_ignore_ascii_case("auto") => MapHeadToGet::Auto,
                None => return Err(args.bad(value, "expected On, Off or Auto")),
            })
        }
        // Every directive whose usage is "Name On|Off" is a flag.
        _ if info.syntax.ends_with(" On|Off") => {
            let value = args.one()?;
            let Some(flag) = parse_on_off(value) else {
                return Err(args.bad(value, "expected On or Off"));
            };
            Directive::Flag {
                name: d,
                value: flag,
            }
        }
        _ => {
            validate_other(&args)?;
            Directive::Other {
                name: d,
                args: words,
            }
        }
    })
}

fn hash_seed_error(args: &Args<'_>, value: &str) -> ConfigError {
    args.bad(
        value,
        "expected \"random\" or an integer from 0 to 4294967295",
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::directive_table::{DIRECTIVES, DirectiveInfo};

    /// A valid line for every directive.
    pub(crate) const VALID_LINES: &[(&str, &str)] = &[
        (
            "WSGIScriptAlias",
            "/app /srv/app/wsgi.py process-group=webware",
        ),
        ("WSGIScriptAliasMatch", "^/(\\w+) /srv/$1.wsgi"),
        (
            "WSGIDaemonProcess",
            "webware threads=20 python-home=/srv/venv",
        ),
        ("WSGIProcessGroup", "webware"),
        ("WSGIApplicationGroup", "%{GLOBAL}"),
        ("WSGISocketPrefix", "run/wsgi"),
        ("WSGISocketRotation", "Off"),
        ("WSGIAcceptMutex", "fcntl"),
        ("WSGIRestrictProcess", "webware %{GLOBAL}"),
        ("WSGIPythonHome", "/srv/venv"),
        ("WSGIPythonPath", "/srv/lib:/srv/app"),
        ("WSGIPythonOptimize", "1"),
        ("WSGIDontWriteBytecode", "On"),
        ("WSGIPythonWarnings", "ignore::DeprecationWarning"),
        ("WSGIPythonHashSeed", "0"),
        ("WSGIPythonEggs", "/tmp/eggs"),
        ("WSGIDestroyInterpreter", "Off"),
        ("WSGISwitchInterval", "0.005"),
        ("WSGIPerInterpreterGIL", "On"),
        ("WSGIFreeThreading", "On"),
        ("WSGIVerboseDebugging", "On"),
        ("WSGIRestrictEmbedded", "On"),
        ("WSGIRestrictStdout", "On"),
        ("WSGIRestrictStdin", "On"),
        ("WSGIRestrictSignal", "Off"),
        ("WSGICaseSensitivity", "Off"),
        ("WSGIServerMetrics", "On"),
        ("WSGIHeapPolicy", "Off"),
        (
            "WSGIImportScript",
            "/srv/app.wsgi process-group=webware application-group=%{GLOBAL}",
        ),
        ("WSGICallableObject", "app"),
        (
            "WSGIDispatchScript",
            "/srv/dispatch.py application-group=%{GLOBAL}",
        ),
        (
            "WSGIHandlerScript",
            "express /srv/handler.py process-group=g pass-authorization=On",
        ),
        ("WSGIAccessScript", "/srv/access.py"),
        ("WSGIAuthUserScript", "/srv/auth.py application-group=auth"),
        ("WSGIAuthGroupScript", "/srv/groups.py"),
        ("WSGIGroupAuthoritative", "Off"),
        ("WSGIPassAuthorization", "On"),
        ("WSGIScriptReloading", "Off"),
        ("WSGIChunkedRequest", "On"),
        ("WSGIMapHEADToGET", "Off"),
        ("WSGITrustedProxies", "127.0.0.1 10.0.0.0/8 ::1"),
        (
            "WSGITrustedProxyHeaders",
            "X-Forwarded-For x-forwarded-proto",
        ),
        ("WSGIErrorOverride", "On"),
        ("WSGIIgnoreActivity", "On"),
        ("WSGIEnableSendfile", "On"),
        ("WSGIPassApacheRequest", "On"),
        (
            "WSGITelemetryService",
            "unix:/run/wsgi-telemetry.sock interval=2",
        ),
        ("WSGISlowRequests", "2.5"),
        ("WSGITelemetryOptions", "+CaptureUserAgent"),
    ];

    fn parse(name: &str, raw: &str) -> Directive {
        parse_directive(name, raw).unwrap_or_else(|e| panic!("{name} {raw}: {e}"))
    }

    #[test]
    fn every_directive_parses_a_valid_line() {
        for d in DIRECTIVES {
            let line = VALID_LINES.iter().find(|(n, _)| *n == d.name);
            let (_, raw) = line.unwrap_or_else(|| panic!("no valid line for {}", d.name));
            let parsed = parse(d.name, raw);
            assert_eq!(parsed.directive_name(), d.name, "{raw}");
            if !d.implemented {
                assert!(
                    matches!(parsed, Directive::Flag { .. } | Directive::Other { .. }),
                    "{}: {parsed:?}",
                    d.name
                );
            }
        }
        assert_eq!(VALID_LINES.len(), DIRECTIVES.len());
    }

    #[test]
    fn python_start_up_directives_are_typed() {
        assert_eq!(
            parse("WSGIPythonOptimize", "2"),
            Directive::PythonOptimize(2)
        );
        assert_eq!(
            parse("WSGIPythonWarnings", "error::DeprecationWarning"),
            Directive::PythonWarnings("error::DeprecationWarning".into())
        );
        assert_eq!(
            parse("WSGIPythonHashSeed", "random"),
            Directive::PythonHashSeed(None)
        );
        assert_eq!(
            parse("WSGIPythonHashSeed", "4294967295"),
            Directive::PythonHashSeed(Some(u32::MAX))
        );
        assert_eq!(
            parse("WSGIPythonEggs", "/var/cache/eggs"),
            Directive::PythonEggs("/var/cache/eggs".into())
        );
        assert_eq!(
            parse("WSGISwitchInterval", "0.002"),
            Directive::SwitchInterval(0.002)
        );
        for (name, raw, expect) in [
            (
                "WSGIPythonOptimize",
                "-O",
                "WSGIPythonOptimize: argument '-O'",
            ),
            (
                "WSGIPythonHashSeed",
                "Random",
                "WSGIPythonHashSeed: argument 'Random'",
            ),
            (
                "WSGIPythonHashSeed",
                "99999999999999999999",
                "WSGIPythonHashSeed: argument '99999999999999999999'",
            ),
            (
                "WSGISwitchInterval",
                "inf",
                "WSGISwitchInterval: argument 'inf'",
            ),
            (
                "WSGIDestroyInterpreter",
                "maybe",
                "WSGIDestroyInterpreter: argument 'maybe': expected On or Off",
            ),
            (
                "WSGIRestrictSignal",
                "yes",
                "WSGIRestrictSignal: argument 'yes': expected On or Off",
            ),
        ] {
            let e = parse_directive(name, raw).unwrap_err().to_string();
            assert!(e.starts_with(expect), "{name} {raw}: {e}");
        }
    }

    #[test]
    fn parsing_is_case_insensitive() {
        assert!(matches!(
            parse("wsgipassauthorization", "on"),
            Directive::Flag {
                name: "WSGIPassAuthorization",
                value: true
            }
        ));
        let e = parse_directive("WSGINope", "x").unwrap_err();
        assert_eq!(e.to_string(), "WSGINope: unknown mod_wsgi directive");
    }

    #[test]
    fn every_on_off_directive() {
        let flags: Vec<&DirectiveInfo> = DIRECTIVES
            .iter()
            .filter(|d| d.syntax.ends_with(" On|Off"))
            .collect();
        assert_eq!(flags.len(), 21);
        for d in flags {
            for (text, value) in [
                ("On", true),
                ("on", true),
                ("ON", true),
                ("Off", false),
                ("oFF", false),
            ] {
                assert_eq!(
                    parse(d.name, text),
                    Directive::Flag {
                        name: d.name,
                        value
                    },
                    "{} {text}",
                    d.name
                );
            }
            for bad in ["yes", "1", "true", "Auto"] {
                let e = parse_directive(d.name, bad).unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!("{}: argument '{bad}': expected On or Off", d.name)
                );
            }
            let e = parse_directive(d.name, "").unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("{}: expected one argument", d.name))
            );
            let e = parse_directive(d.name, "On Off").unwrap_err();
            assert!(
                e.to_string().starts_with(&format!(
                    "{}: argument 'Off': unexpected extra argument",
                    d.name
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn map_head_to_get() {
        for (text, value) in [
            ("On", MapHeadToGet::On),
            ("off", MapHeadToGet::Off),
            ("AUTO", MapHeadToGet::Auto),
            ("Auto", MapHeadToGet::Auto),
        ] {
            assert_eq!(
                parse("WSGIMapHEADToGET", text),
                Directive::MapHeadToGet(value)
            );
        }
        let e = parse_directive("WSGIMapHEADToGET", "sometimes").unwrap_err();
        assert_eq!(
            e.to_string(),
            "WSGIMapHEADToGET: argument 'sometimes': expected On, Off or Auto"
        );
        assert_eq!(MapHeadToGet::Auto.to_string(), "Auto");
    }

    #[test]
    fn typed_values() {
        // Empty quoted values, as mod_wsgi-express writes them: default home, nothing added.
        assert_eq!(
            parse("WSGIPythonHome", "''"),
            Directive::PythonHome(String::new())
        );
        assert_eq!(parse("WSGIPythonPath", "''"), Directive::PythonPath(vec![]));
        assert_eq!(parse("WSGIPythonPath", ":"), Directive::PythonPath(vec![]));
        assert_eq!(
            parse("WSGIPythonHome", "/usr:/usr/local"),
            Directive::PythonHome("/usr:/usr/local".into())
        );
        assert_eq!(
            parse("WSGIPythonPath", "'/a b:/c'"),
            Directive::PythonPath(vec!["/a b".into(), "/c".into()])
        );
        assert_eq!(
            parse("WSGISocketPrefix", "/var/run/wsgi"),
            Directive::SocketPrefix("/var/run/wsgi".into())
        );
        assert_eq!(
            parse("WSGICallableObject", "app"),
            Directive::CallableObject("app".into())
        );
        assert_eq!(
            parse("WSGIProcessGroup", "''"),
            Directive::ProcessGroup(GroupSelector::Global)
        );
        assert_eq!(
            parse("WSGIApplicationGroup", "%{ENV:APP}"),
            Directive::ApplicationGroup(GroupSelector::Env("APP".into()))
        );
        let Directive::TrustedProxies(nets) = parse("WSGITrustedProxies", "127.0.0.1 10.0.0.0/8")
        else {
            panic!("wrong variant");
        };
        assert_eq!(
            nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["127.0.0.1/32", "10.0.0.0/8"]
        );
        assert_eq!(
            parse(
                "WSGITrustedProxyHeaders",
                "x-forwarded-for X-FORWARDED-PROTO"
            ),
            Directive::TrustedProxyHeaders(vec![
                "X-Forwarded-For".into(),
                "X-Forwarded-Proto".into()
            ])
        );
        let Directive::DaemonProcess(spec) = parse("WSGIDaemonProcess", "g processes=2") else {
            panic!("wrong variant");
        };
        assert_eq!((spec.name.as_str(), spec.processes), ("g", 2));
        assert_eq!(
            parse("WSGIVerboseDebugging", "On"),
            Directive::Flag {
                name: "WSGIVerboseDebugging",
                value: true
            }
        );
        assert_eq!(
            parse("WSGIAcceptMutex", "FCNTL"),
            Directive::Other {
                name: "WSGIAcceptMutex",
                args: vec!["FCNTL".into()]
            }
        );
    }

    #[test]
    fn literal_process_group_references() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("WSGIProcessGroup", "webware", Some("webware")),
            ("WSGIProcessGroup", "%{GLOBAL}", None),
            ("WSGIProcessGroup", "%{ENV:G}", None),
            ("WSGIScriptAlias", "/ /s.py process-group=g1", Some("g1")),
            (
                "WSGIScriptAliasMatch",
                "^/ /s.py process-group=%{SERVER}",
                None,
            ),
            (
                "WSGIImportScript",
                "/s process-group=g2 application-group=a",
                Some("g2"),
            ),
            ("WSGIApplicationGroup", "app", None),
        ];
        for (name, raw, expected) in cases {
            assert_eq!(
                parse(name, raw).literal_process_group(),
                *expected,
                "{name} {raw}"
            );
        }
    }

    #[test]
    fn handler_script_group_is_the_literal_process_group_option() {
        for (raw, expected) in [
            ("h /s.py process-group=side", Some("side")),
            ("h /s.py process-group=%{GLOBAL} application-group=a", None),
            ("h /s.py process-group=%{ENV:G}", None),
            ("h /s.py", None),
        ] {
            assert_eq!(
                parse("WSGIHandlerScript", raw)
                    .handler_script_group()
                    .as_deref(),
                expected,
                "{raw}"
            );
        }
        assert_eq!(
            parse("WSGIProcessGroup", "side").handler_script_group(),
            None
        );
    }

    #[test]
    fn argument_errors_name_directive_and_token() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "WSGIProcessGroup",
                "",
                "WSGIProcessGroup: expected one argument; usage: ",
            ),
            (
                "WSGIProcessGroup",
                "a b",
                "WSGIProcessGroup: argument 'b': unexpected extra argument",
            ),
            (
                "WSGIProcessGroup",
                "%{ENV:}",
                "WSGIProcessGroup: value '%{ENV:}': expected a variable",
            ),
            (
                "WSGIApplicationGroup",
                "%{FOO}",
                "WSGIApplicationGroup: value '%{FOO}': unknown substitution",
            ),
            (
                "WSGIPythonHome",
                "",
                "WSGIPythonHome: expected one argument",
            ),
            (
                "WSGIPythonHome",
                "/a /b",
                "WSGIPythonHome: argument '/b': unexpected extra argument",
            ),
            (
                "WSGIPythonPath",
                "/a /b",
                "WSGIPythonPath: argument '/b': unexpected extra argument",
            ),
            (
                "WSGISocketPrefix",
                "",
                "WSGISocketPrefix: expected one argument",
            ),
            (
                "WSGICallableObject",
                "''",
                "WSGICallableObject: argument '': expected a non-empty",
            ),
            (
                "WSGITrustedProxies",
                "",
                "WSGITrustedProxies: expected at least one argument",
            ),
            (
                "WSGITrustedProxies",
                "10.0.0.1 proxy.local",
                "WSGITrustedProxies: address 'proxy.local': expected an IPv4",
            ),
            (
                "WSGITrustedProxies",
                "10.0.0.0/40",
                "WSGITrustedProxies: address '10.0.0.0/40': expected a prefix length from 0 to 32",
            ),
            (
                "WSGITrustedProxyHeaders",
                "X-Forwarded-For Forwarded",
                "WSGITrustedProxyHeaders: header 'Forwarded': not a known proxy header; expected one of X-Forwarded-For,",
            ),
            (
                "WSGITrustedProxyHeaders",
                "",
                "WSGITrustedProxyHeaders: expected at least one argument",
            ),
            (
                "WSGIScriptAlias",
                "/only",
                "WSGIScriptAlias: expected a URL path and a script path",
            ),
            (
                "WSGIDaemonProcess",
                "g threads=abc",
                "WSGIDaemonProcess: option 'threads=abc': expected an integer from 0 to 10000",
            ),
            (
                "WSGIDaemonProcess",
                "g display-name='%{GROUP}",
                "WSGIDaemonProcess: argument 'display-name='%{GROUP}': unterminated single quote",
            ),
            (
                "WSGIImportScript",
                "/s.py",
                "WSGIImportScript: the process-group= option is required",
            ),
            (
                "WSGIAcceptMutex",
                "spin",
                "WSGIAcceptMutex: argument 'spin': expected one of default, flock",
            ),
            (
                "WSGIRestrictProcess",
                "",
                "WSGIRestrictProcess: expected at least one argument",
            ),
            (
                "WSGIRestrictProcess",
                "a %{X}",
                "WSGIRestrictProcess: value '%{X}': unknown substitution",
            ),
            (
                "WSGIPythonOptimize",
                "3",
                "WSGIPythonOptimize: argument '3': expected 0, 1 or 2",
            ),
            (
                "WSGIPythonWarnings",
                "",
                "WSGIPythonWarnings: expected one argument",
            ),
            (
                "WSGIPythonEggs",
                "''",
                "WSGIPythonEggs: argument '': expected a non-empty value",
            ),
            (
                "WSGIPythonHashSeed",
                "4294967296",
                "WSGIPythonHashSeed: argument '4294967296': expected \"random\"",
            ),
            (
                "WSGIPythonHashSeed",
                "-1",
                "WSGIPythonHashSeed: argument '-1': expected \"random\"",
            ),
            (
                "WSGISwitchInterval",
                "0",
                "WSGISwitchInterval: argument '0': expected a positive number",
            ),
            (
                "WSGISwitchInterval",
                "abc",
                "WSGISwitchInterval: argument 'abc': expected a positive number",
            ),
            (
                "WSGISlowRequests",
                "-1",
                "WSGISlowRequests: argument '-1': expected a non-negative number",
            ),
            (
                "WSGITelemetryService",
                "udp:host:9",
                "WSGITelemetryService: argument 'udp:host:9': expected a target of the form unix:/path",
            ),
            (
                "WSGITelemetryService",
                "unix:",
                "WSGITelemetryService: argument 'unix:': expected a target",
            ),
            (
                "WSGITelemetryService",
                "unix:/s interval=0.1",
                "WSGITelemetryService: argument 'interval=0.1': expected interval=N",
            ),
            (
                "WSGITelemetryService",
                "unix:/s every=2",
                "WSGITelemetryService: argument 'every=2': expected interval=N",
            ),
            (
                "WSGITelemetryService",
                "unix:/s interval=1 x",
                "WSGITelemetryService: argument 'x': unexpected extra argument",
            ),
            (
                "WSGITelemetryOptions",
                "",
                "WSGITelemetryOptions: expected at least one argument",
            ),
            (
                "WSGITelemetryOptions",
                "CaptureUserAgent +All",
                "WSGITelemetryOptions: argument '+All': cannot mix",
            ),
            (
                "WSGITelemetryOptions",
                "-None",
                "WSGITelemetryOptions: argument '-None': None and All take no +/- prefix",
            ),
            (
                "WSGITelemetryOptions",
                "Bogus",
                "WSGITelemetryOptions: argument 'Bogus': unknown flag",
            ),
            (
                "WSGIDispatchScript",
                "",
                "WSGIDispatchScript: expected a script path",
            ),
            (
                "WSGIDispatchScript",
                "/d.py process-group=g",
                "WSGIDispatchScript: unknown option 'process-group=g'",
            ),
            (
                "WSGIAccessScript",
                "/a.py application-group=%{BAD}",
                "WSGIAccessScript: option 'application-group=%{BAD}': unknown substitution",
            ),
            (
                "WSGIAuthUserScript",
                "/a.py extra",
                "WSGIAuthUserScript: argument 'extra': unexpected argument",
            ),
            (
                "WSGIHandlerScript",
                "name",
                "WSGIHandlerScript: expected a handler name and a script path",
            ),
            (
                "WSGIHandlerScript",
                "n /h.py pass-authorization=x",
                "WSGIHandlerScript: option 'pass-authorization=x': expected On or Off",
            ),
            (
                "WSGIHandlerScript",
                "n /h.py callable-object=x",
                "WSGIHandlerScript: unknown option 'callable-object=x'",
            ),
        ];
        for (name, raw, prefix) in cases {
            let e = parse_directive(name, raw).expect_err(raw);
            assert_eq!(e.directive, *name);
            assert!(
                e.to_string().starts_with(prefix),
                "{name} {raw:?}:\n got  {e}\n want {prefix}"
            );
        }
    }

    #[test]
    fn pre_split_words_are_not_split_again() {
        let d = parse_directive_words("WSGIPythonPath", vec!["/a b:/c".into()]).unwrap();
        assert_eq!(d, Directive::PythonPath(vec!["/a b".into(), "/c".into()]));
        let e = parse_directive_words("WSGIPythonHome", vec![]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("WSGIPythonHome: expected one argument"),
            "{e}"
        );
    }
}
