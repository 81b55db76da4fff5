//! WSGIScriptAlias / WSGIScriptAliasMatch and WSGIImportScript, plus the
//! `key=value` option splitter shared by the script directives.

use std::sync::Arc;

use super::daemon_group::parse_on_off;
use super::error::ConfigError;
use super::selector::GroupSelector;

/// One `key=value` option word, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptionWord<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub word: &'a str,
}

/// Splits option words, checking each against `allowed`. Option names are
/// case-sensitive, as in mod_wsgi. Empty values are rejected.
pub(crate) fn split_options<'a>(
    directive: &str,
    words: &'a [String],
    allowed: &[&str],
) -> Result<Vec<OptionWord<'a>>, ConfigError> {
    let mut options = Vec::with_capacity(words.len());
    for word in words {
        let Some((key, value)) = word.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(ConfigError::at(
                directive,
                "argument",
                word,
                format!(
                    "unexpected argument: expected an option of the form name=value ({})",
                    allowed.join("=, ") + "="
                ),
            ));
        };
        if !allowed.contains(&key) {
            return Err(ConfigError::at(
                directive,
                "unknown option",
                word,
                format!("expected one of {}", allowed.join("=, ") + "="),
            ));
        }
        if value.is_empty() {
            return Err(ConfigError::at(
                directive,
                "option",
                word,
                "expected a value after '='",
            ));
        }
        options.push(OptionWord { key, value, word });
    }
    Ok(options)
}

/// Parses a group option value (`process-group=`, `application-group=`).
pub(crate) fn group_option(
    directive: &str,
    o: &OptionWord<'_>,
) -> Result<GroupSelector, ConfigError> {
    GroupSelector::parse(directive, o.value)
        .map_err(|e| ConfigError::at(directive, "option", o.word, e.message))
}

/// Parses an On|Off option value (`pass-authorization=`).
pub(crate) fn flag_option(directive: &str, o: &OptionWord<'_>) -> Result<bool, ConfigError> {
    parse_on_off(o.value)
        .ok_or_else(|| ConfigError::at(directive, "option", o.word, "expected On or Off"))
}

/// How the daemon calls a script's callable: `interface=wsgi` (PEP 3333, the default) or
/// `interface=asgi` (an ASGI 3 application, daemon mode only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Interface {
    #[default]
    Wsgi,
    Asgi,
}

/// Parses an `interface=` option value (`wsgi` or `asgi`, lower case as written in README).
pub(crate) fn interface_option(
    directive: &str,
    o: &OptionWord<'_>,
) -> Result<Interface, ConfigError> {
    match o.value {
        "wsgi" => Ok(Interface::Wsgi),
        "asgi" => Ok(Interface::Asgi),
        _ => Err(ConfigError::at(
            directive,
            "option",
            o.word,
            "expected wsgi or asgi",
        )),
    }
}

/// An ASGI script runs in a daemon process only: `interface=asgi` needs a `process-group=`
/// option on the same line that is not `%{GLOBAL}` (a substitution is checked per request).
pub(crate) fn check_asgi_group(
    directive: &str,
    interface: Interface,
    process_group: Option<&GroupSelector>,
) -> Result<(), ConfigError> {
    if interface != Interface::Asgi {
        return Ok(());
    }
    match process_group {
        Some(GroupSelector::Global) => Err(ConfigError::at(
            directive,
            "option",
            "interface=asgi",
            "an ASGI application runs in daemon mode only, and process-group=%{GLOBAL} is \
             embedded mode: name a WSGIDaemonProcess group",
        )),
        Some(_) => Ok(()),
        None => Err(ConfigError::at(
            directive,
            "option",
            "interface=asgi",
            "an ASGI application runs in daemon mode only: add process-group= naming a \
             WSGIDaemonProcess group to this line",
        )),
    }
}

/// Refuses an empty positional argument, saying what was expected there.
pub(crate) fn require_nonempty(
    directive: &str,
    words: &[(&String, &str)],
) -> Result<(), ConfigError> {
    match words.iter().find(|(word, _)| word.is_empty()) {
        Some((word, what)) => Err(ConfigError::at(
            directive,
            "argument",
            word.as_str(),
            format!("expected {what}, not an empty string"),
        )),
        None => Ok(()),
    }
}

/// How many groups a [`UrlPattern`] reports: `$0` to `$9`, as Apache's AP_MAX_REG_MATCH.
pub const PATTERN_GROUPS: usize = 10;

/// A WSGIScriptAliasMatch regular expression, compiled. This layer only names the
/// operation: the module compiles the pattern with Apache's PCRE while the directive is
/// read and keeps it here, so requests use that one compiled pattern.
pub trait UrlPattern: Send + Sync {
    /// On a match of `subject`, the spans of `$0`..`$9` (None for a group that did not
    /// take part).
    fn captures(&self, subject: &[u8]) -> Option<[Option<(usize, usize)>; PATTERN_GROUPS]>;
}

/// A shared compiled pattern: the aliases a virtual host inherits from the main server
/// share it, and it is freed with the last configuration holding it.
#[derive(Clone)]
pub struct CompiledPattern(Arc<dyn UrlPattern>);

impl CompiledPattern {
    pub fn new(pattern: impl UrlPattern + 'static) -> CompiledPattern {
        CompiledPattern(Arc::new(pattern))
    }

    /// See [`UrlPattern::captures`].
    pub fn captures(&self, subject: &[u8]) -> Option<[Option<(usize, usize)>; PATTERN_GROUPS]> {
        self.0.captures(subject)
    }
}

impl std::fmt::Debug for CompiledPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledPattern")
    }
}

/// The same compiled pattern (the source text is compared as `ScriptAlias::url`).
impl PartialEq for CompiledPattern {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CompiledPattern {}

/// One WSGIScriptAlias or WSGIScriptAliasMatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptAlias {
    /// The URL path prefix, or the regular expression for WSGIScriptAliasMatch
    /// (compiled into `pattern`).
    pub url: String,
    /// WSGIScriptAliasMatch's `url` compiled, set by the module when it reads the
    /// directive (a pattern that does not compile fails configtest); None for
    /// WSGIScriptAlias, and from [`ScriptAlias::parse`] alone.
    pub pattern: Option<CompiledPattern>,
    /// The script file (may hold `$1` substitutions for WSGIScriptAliasMatch).
    pub script: String,
    /// True for WSGIScriptAliasMatch.
    pub is_match: bool,
    /// `process-group=`.
    pub process_group: Option<GroupSelector>,
    /// `application-group=`.
    pub application_group: Option<GroupSelector>,
    /// `callable-object=`.
    pub callable_object: Option<String>,
    /// `pass-authorization=On|Off`.
    pub pass_authorization: Option<bool>,
    /// `interface=wsgi|asgi`.
    pub interface: Interface,
}

const ALIAS_OPTIONS: &[&str] = &[
    "process-group",
    "application-group",
    "callable-object",
    "pass-authorization",
    "interface",
];

impl ScriptAlias {
    /// Parses `URL-path file-path [option=value ...]` (or `regex file-path ...`).
    pub fn parse(directive: &str, words: &[String], is_match: bool) -> Result<Self, ConfigError> {
        let first = if is_match {
            "a URL regular expression"
        } else {
            "a URL path"
        };
        if words.len() < 2 {
            return Err(ConfigError::new(
                directive,
                format!(
                    "expected {first} and a script path, then optional process-group=, \
                     application-group=, callable-object=, pass-authorization=, interface="
                ),
            ));
        }
        require_nonempty(
            directive,
            &[(&words[0], first), (&words[1], "a script path")],
        )?;
        let mut alias = ScriptAlias {
            url: words[0].clone(),
            pattern: None,
            script: words[1].clone(),
            is_match,
            process_group: None,
            application_group: None,
            callable_object: None,
            pass_authorization: None,
            interface: Interface::Wsgi,
        };
        for o in split_options(directive, &words[2..], ALIAS_OPTIONS)? {
            match o.key {
                "process-group" => alias.process_group = Some(group_option(directive, &o)?),
                "application-group" => {
                    alias.application_group = Some(group_option(directive, &o)?);
                }
                "callable-object" => alias.callable_object = Some(o.value.to_owned()),
                "pass-authorization" => {
                    alias.pass_authorization = Some(flag_option(directive, &o)?);
                }
                "interface" => alias.interface = interface_option(directive, &o)?,
                _ => unreachable!("split_options only returns allowed keys"),
            }
        }
        check_asgi_group(directive, alias.interface, alias.process_group.as_ref())?;
        Ok(alias)
    }

    /// Whether the script is loaded at process start: both groups given and
    /// literal, and (for WSGIScriptAliasMatch) no `$` substitution in the script.
    pub fn preload(&self) -> bool {
        let literal = |g: &Option<GroupSelector>| g.as_ref().is_some_and(GroupSelector::is_literal);
        literal(&self.process_group)
            && literal(&self.application_group)
            && !(self.is_match && self.script.contains('$'))
    }

    /// The named daemon group this alias refers to, if it is a plain name; the
    /// caller reports it with `GlobalConfig::note_group_ref`.
    pub fn literal_process_group(&self) -> Option<&str> {
        self.process_group
            .as_ref()
            .and_then(GroupSelector::literal_name)
    }
}

/// One WSGIImportScript: a script preloaded in a group at process start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportScript {
    /// The script file.
    pub script: String,
    /// `process-group=` (a name, or `%{GLOBAL}` for embedded mode).
    pub process_group: GroupSelector,
    /// `application-group=` (a name, or `%{GLOBAL}` for the main interpreter).
    pub application_group: GroupSelector,
    /// Where the directive was read ("file:line"); set by `GlobalConfig::apply`.
    pub defined_at: String,
}

impl ImportScript {
    /// Parses `path process-group=NAME application-group=NAME` (both required).
    pub fn parse(directive: &str, words: &[String]) -> Result<Self, ConfigError> {
        let Some((script, rest)) = words.split_first().filter(|(s, _)| !s.is_empty()) else {
            return Err(ConfigError::new(
                directive,
                "expected a script path, then process-group= and application-group=",
            ));
        };
        let mut process_group = None;
        let mut application_group = None;
        for o in split_options(directive, rest, &["process-group", "application-group"])? {
            let selector = group_option(directive, &o)?;
            if !selector.is_literal() {
                return Err(ConfigError::at(
                    directive,
                    "option",
                    o.word,
                    "expected a plain name or %{GLOBAL}: a preloaded script has no request \
                     to expand a substitution from",
                ));
            }
            if o.key == "process-group" {
                process_group = Some(selector);
            } else {
                application_group = Some(selector);
            }
        }
        let missing =
            |what: &str| ConfigError::new(directive, format!("the {what}= option is required"));
        Ok(ImportScript {
            script: script.clone(),
            process_group: process_group.ok_or_else(|| missing("process-group"))?,
            application_group: application_group.ok_or_else(|| missing("application-group"))?,
            defined_at: String::new(),
        })
    }

    /// The named daemon group, if not `%{GLOBAL}`.
    pub fn literal_process_group(&self) -> Option<&str> {
        self.process_group.literal_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tokenizer::tokenize;

    fn alias(raw: &str, is_match: bool) -> Result<ScriptAlias, ConfigError> {
        let d = if is_match {
            "WSGIScriptAliasMatch"
        } else {
            "WSGIScriptAlias"
        };
        ScriptAlias::parse(d, &tokenize(d, raw)?, is_match)
    }

    fn import(raw: &str) -> Result<ImportScript, ConfigError> {
        ImportScript::parse("WSGIImportScript", &tokenize("WSGIImportScript", raw)?)
    }

    #[test]
    fn parses_positional_and_options() {
        let a = alias(
            "/app /srv/app/wsgi.py process-group=webware application-group=%{GLOBAL} \
             callable-object=app pass-authorization=on",
            false,
        )
        .unwrap();
        assert_eq!(a.url, "/app");
        assert_eq!(a.script, "/srv/app/wsgi.py");
        assert!(!a.is_match);
        assert_eq!(
            a.process_group,
            Some(GroupSelector::Literal("webware".into()))
        );
        assert_eq!(a.application_group, Some(GroupSelector::Global));
        assert_eq!(a.callable_object.as_deref(), Some("app"));
        assert_eq!(a.pass_authorization, Some(true));
        assert!(a.preload());
        assert_eq!(a.literal_process_group(), Some("webware"));

        let b = alias("/ /srv/x.wsgi", false).unwrap();
        assert_eq!((b.url.as_str(), b.script.as_str()), ("/", "/srv/x.wsgi"));
        assert_eq!(b.process_group, None);
        assert!(!b.preload());
        assert_eq!(b.literal_process_group(), None);
    }

    #[test]
    fn preload_rules() {
        let cases: &[(&str, bool, bool)] = &[
            ("/a /s.py process-group=g application-group=a", false, true),
            ("/a /s.py process-group=g", false, false),
            ("/a /s.py application-group=a", false, false),
            (
                "/a /s.py process-group=%{GLOBAL} application-group=%{GLOBAL}",
                false,
                true,
            ),
            (
                "/a /s.py process-group=g application-group=%{RESOURCE}",
                false,
                false,
            ),
            (
                "/a /s.py process-group=%{ENV:G} application-group=a",
                false,
                false,
            ),
            (
                "^/(.*) /s.py process-group=g application-group=a",
                true,
                true,
            ),
            (
                "^/(\\w+) /srv/$1.py process-group=g application-group=a",
                true,
                false,
            ),
        ];
        for (raw, is_match, expected) in cases {
            assert_eq!(alias(raw, *is_match).unwrap().preload(), *expected, "{raw}");
        }
    }

    #[test]
    fn match_keeps_regex_verbatim() {
        let a = alias("^/wsgi/([^/]+) /srv/wsgi/$1.wsgi", true).unwrap();
        assert!(a.is_match);
        assert_eq!(a.url, "^/wsgi/([^/]+)");
        assert_eq!(a.script, "/srv/wsgi/$1.wsgi");
    }

    #[test]
    fn later_option_wins() {
        let a = alias("/a /s process-group=x process-group=y", false).unwrap();
        assert_eq!(a.literal_process_group(), Some("y"));
    }

    #[test]
    fn alias_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "WSGIScriptAlias: expected a URL path and a script path"),
            (
                "/app",
                "WSGIScriptAlias: expected a URL path and a script path",
            ),
            (
                "/app ''",
                "WSGIScriptAlias: argument '': expected a script path",
            ),
            ("'' /s", "WSGIScriptAlias: argument '': expected a URL path"),
            (
                "/a /s extra",
                "WSGIScriptAlias: argument 'extra': unexpected argument",
            ),
            (
                "/a /s foo=1",
                "WSGIScriptAlias: unknown option 'foo=1': expected one of",
            ),
            (
                "/a /s process-group=",
                "WSGIScriptAlias: option 'process-group=': expected a value",
            ),
            (
                "/a /s pass-authorization=maybe",
                "WSGIScriptAlias: option 'pass-authorization=maybe': expected On or Off",
            ),
            (
                "/a /s process-group=%{FOO}",
                "WSGIScriptAlias: option 'process-group=%{FOO}': unknown substitution",
            ),
            (
                "/a /s application-group=%{ENV:}",
                "WSGIScriptAlias: option 'application-group=%{ENV:}': expected a variable name",
            ),
            (
                "/a /s Process-Group=x",
                "WSGIScriptAlias: unknown option 'Process-Group=x'",
            ),
            (
                "/a /s interface=ASGI3 process-group=d",
                "WSGIScriptAlias: option 'interface=ASGI3': expected wsgi or asgi",
            ),
            (
                "/a /s interface=asgi",
                "WSGIScriptAlias: option 'interface=asgi': an ASGI application runs in daemon \
                 mode only: add process-group=",
            ),
            (
                "/a /s interface=asgi process-group=%{GLOBAL}",
                "WSGIScriptAlias: option 'interface=asgi': an ASGI application runs in daemon \
                 mode only, and process-group=%{GLOBAL} is embedded mode",
            ),
        ];
        for (raw, prefix) in cases {
            let e = alias(raw, false).expect_err(raw);
            assert!(e.to_string().starts_with(prefix), "{raw}: got {e}");
        }
        let e = alias("x", true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("WSGIScriptAliasMatch: expected a URL regular expression"),
            "{e}"
        );
    }

    #[test]
    fn interface_option() {
        assert_eq!(alias("/a /s", false).unwrap().interface, Interface::Wsgi);
        let a = alias("/a /s interface=asgi process-group=d", false).unwrap();
        assert_eq!(a.interface, Interface::Asgi);
        let a = alias("/a /s process-group=%{ENV:G} interface=wsgi", false).unwrap();
        assert_eq!(a.interface, Interface::Wsgi);
        let a = alias("^/(.*) /s/$1 process-group=%{ENV:G} interface=asgi", true).unwrap();
        assert_eq!(a.interface, Interface::Asgi);
    }

    #[test]
    fn import_script() {
        let i = import("/srv/app.wsgi process-group=webware application-group=%{GLOBAL}").unwrap();
        assert_eq!(i.script, "/srv/app.wsgi");
        assert_eq!(i.process_group, GroupSelector::Literal("webware".into()));
        assert_eq!(i.application_group, GroupSelector::Global);
        assert_eq!(i.literal_process_group(), Some("webware"));
        let j = import("/s application-group=%{GLOBAL} process-group=%{GLOBAL}").unwrap();
        assert_eq!(j.process_group, GroupSelector::Global);
        assert_eq!(j.literal_process_group(), None);
    }

    #[test]
    fn import_script_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "WSGIImportScript: expected a script path"),
            (
                "/s",
                "WSGIImportScript: the process-group= option is required",
            ),
            (
                "/s process-group=g",
                "WSGIImportScript: the application-group= option is required",
            ),
            (
                "/s application-group=a",
                "WSGIImportScript: the process-group= option is required",
            ),
            (
                "/s process-group=g application-group=%{RESOURCE}",
                "WSGIImportScript: option 'application-group=%{RESOURCE}': expected a plain name",
            ),
            (
                "/s process-group=g callable-object=x",
                "WSGIImportScript: unknown option 'callable-object=x'",
            ),
            (
                "/s g",
                "WSGIImportScript: argument 'g': unexpected argument",
            ),
        ];
        for (raw, prefix) in cases {
            let e = import(raw).expect_err(raw);
            assert!(e.to_string().starts_with(prefix), "{raw}: got {e}");
        }
    }
}
