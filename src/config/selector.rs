//! `GroupSelector`: the value of WSGIProcessGroup / WSGIApplicationGroup and of the
//! `process-group=` / `application-group=` options, checked when the configuration is read;
//! and the per-request expansion of those and of WSGICallableObject. Expansion is pure: the
//! handler passes the request's facts in (a [`SelectorContext`], an `env` lookup), and
//! nothing here reads Apache.

use std::fmt;

use super::error::ConfigError;

/// A process-group or application-group value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSelector {
    /// `%{GLOBAL}` or `""`: embedded mode (process group) or the main
    /// interpreter (application group). Expands to `""`.
    Global,
    /// A fixed name.
    Literal(String),
    /// `%{ENV:name}`: looked up per request.
    Env(String),
    /// `%{SERVER}`: `server_hostname[:port]`.
    Server,
    /// `%{HOST}`: `Host[:port]`, falling back to the server name.
    Host,
    /// `%{RESOURCE}`: `server_hostname[:port]|SCRIPT_NAME`.
    Resource,
}

/// Request facts needed to expand a selector.
pub struct SelectorContext<'a> {
    /// The virtual host's ServerName (`r->server->server_hostname`).
    pub server_hostname: &'a str,
    /// The server port of the request (`ap_get_server_port`).
    pub port: u16,
    /// The Host of the request without its port (`r->hostname`), if any.
    pub host_header: Option<&'a str>,
    /// SCRIPT_NAME of the request.
    pub script_name: &'a str,
    /// Variable lookup for `%{ENV:name}`: mod_wsgi looks in `r->notes`, then
    /// `r->subprocess_env`, then the process environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl SelectorContext<'_> {
    /// `name[:port]`, the port omitted for 80 and 443 (as mod_wsgi does).
    fn with_port(&self, name: &str) -> String {
        if self.port == 80 || self.port == 443 {
            name.to_owned()
        } else {
            format!("{name}:{}", self.port)
        }
    }
}

impl GroupSelector {
    /// Parses a selector value for `directive`. `""` and `%{GLOBAL}` are
    /// [`GroupSelector::Global`]; any other value starting with `%{` must be one
    /// of the known forms.
    pub fn parse(directive: &str, value: &str) -> Result<Self, ConfigError> {
        if value.is_empty() {
            return Ok(GroupSelector::Global);
        }
        if !value.starts_with("%{") {
            return Ok(GroupSelector::Literal(value.to_owned()));
        }
        let Some(inner) = value.strip_prefix("%{").and_then(|v| v.strip_suffix('}')) else {
            return Err(ConfigError::at(
                directive,
                "value",
                value,
                "unterminated '%{': expected %{GLOBAL}, %{SERVER}, %{HOST}, %{RESOURCE}, \
                 %{ENV:name} or a plain name",
            ));
        };
        match inner {
            "GLOBAL" => Ok(GroupSelector::Global),
            "SERVER" => Ok(GroupSelector::Server),
            "HOST" => Ok(GroupSelector::Host),
            "RESOURCE" => Ok(GroupSelector::Resource),
            _ => {
                if let Some(name) = inner.strip_prefix("ENV:") {
                    if name.is_empty() || name.contains(['{', '}']) {
                        return Err(ConfigError::at(
                            directive,
                            "value",
                            value,
                            "expected a variable name in %{ENV:name}",
                        ));
                    }
                    return Ok(GroupSelector::Env(name.to_owned()));
                }
                Err(ConfigError::at(
                    directive,
                    "value",
                    value,
                    "unknown substitution: expected %{GLOBAL}, %{SERVER}, %{HOST}, \
                     %{RESOURCE} or %{ENV:name} (names are case-sensitive)",
                ))
            }
        }
    }

    /// True when the value is fixed at configuration time (a plain name or
    /// `%{GLOBAL}`), so it needs no request to expand. mod_wsgi preloads a
    /// script only when both of its groups are literal in this sense.
    pub fn is_literal(&self) -> bool {
        matches!(self, GroupSelector::Global | GroupSelector::Literal(_))
    }

    /// The fixed name of a [`GroupSelector::Literal`]; `None` for every other form.
    pub fn literal_name(&self) -> Option<&str> {
        match self {
            GroupSelector::Literal(name) => Some(name),
            _ => None,
        }
    }

    /// Expands the selector for one request. `Global` gives `""`. An unset
    /// `%{ENV:name}` gives the text `%{ENV:name}` unchanged, as mod_wsgi does; a
    /// variable whose value is itself `%{GLOBAL}`, `%{SERVER}`, `%{HOST}` or
    /// `%{RESOURCE}` is expanded once more.
    pub fn expand(&self, ctx: &SelectorContext<'_>) -> String {
        match self {
            GroupSelector::Global => String::new(),
            GroupSelector::Literal(name) => name.clone(),
            GroupSelector::Server => ctx.with_port(ctx.server_hostname),
            GroupSelector::Host => {
                let host = match ctx.host_header {
                    Some(h) if !h.is_empty() => h,
                    _ => ctx.server_hostname,
                };
                ctx.with_port(host)
            }
            GroupSelector::Resource => {
                format!("{}|{}", ctx.with_port(ctx.server_hostname), ctx.script_name)
            }
            GroupSelector::Env(name) => match (ctx.env)(name) {
                Some(value) => {
                    if value.starts_with('%') && !value.starts_with("%{ENV:") {
                        match GroupSelector::parse("", &value) {
                            Ok(
                                inner @ (GroupSelector::Global
                                | GroupSelector::Server
                                | GroupSelector::Host
                                | GroupSelector::Resource),
                            ) => inner.expand(ctx),
                            _ => value,
                        }
                    } else {
                        value
                    }
                }
                None => format!("%{{ENV:{name}}}"),
            },
        }
    }
}

/// The callable a WSGICallableObject (or `callable-object=`) value names for one request,
/// as mod_wsgi expands it: a value not starting with `%` is the name; `%{ENV:name}` is that
/// variable's value (`env`: notes, subprocess_env, process environment), or `application`
/// when it is unset; any other `%` value is `application`.
pub fn expand_callable_object(value: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    if !value.starts_with('%') {
        return value.to_owned();
    }
    value
        .strip_prefix("%{ENV:")
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|name| !name.is_empty())
        .and_then(env)
        .unwrap_or_else(|| "application".to_owned())
}

impl fmt::Display for GroupSelector {
    /// The configuration form of the selector (`%{GLOBAL}`, `name`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupSelector::Global => f.write_str("%{GLOBAL}"),
            GroupSelector::Literal(name) => f.write_str(name),
            GroupSelector::Env(name) => write!(f, "%{{ENV:{name}}}"),
            GroupSelector::Server => f.write_str("%{SERVER}"),
            GroupSelector::Host => f.write_str("%{HOST}"),
            GroupSelector::Resource => f.write_str("%{RESOURCE}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> GroupSelector {
        GroupSelector::parse("WSGIProcessGroup", v).unwrap_or_else(|e| panic!("{v:?}: {e}"))
    }

    #[test]
    fn parses_every_form() {
        let cases: &[(&str, GroupSelector)] = &[
            ("", GroupSelector::Global),
            ("%{GLOBAL}", GroupSelector::Global),
            ("webware", GroupSelector::Literal("webware".into())),
            ("a b", GroupSelector::Literal("a b".into())),
            ("%name", GroupSelector::Literal("%name".into())),
            ("%{SERVER}", GroupSelector::Server),
            ("%{HOST}", GroupSelector::Host),
            ("%{RESOURCE}", GroupSelector::Resource),
            ("%{ENV:APP_GROUP}", GroupSelector::Env("APP_GROUP".into())),
        ];
        for (v, expected) in cases {
            assert_eq!(&parse(v), expected, "value {v:?}");
        }
    }

    fn callable_env(name: &str) -> Option<String> {
        match name {
            "APP_CALLABLE" => Some("app".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn callable_object_plain_name_is_itself() {
        assert_eq!(
            expand_callable_object("application", &callable_env),
            "application"
        );
        assert_eq!(expand_callable_object("app", &callable_env), "app");
    }

    #[test]
    fn callable_object_env_is_the_variable() {
        assert_eq!(
            expand_callable_object("%{ENV:APP_CALLABLE}", &callable_env),
            "app"
        );
        assert_eq!(expand_callable_object("%{ENV:EMPTY}", &callable_env), "");
    }

    #[test]
    fn callable_object_env_unset_is_application() {
        assert_eq!(
            expand_callable_object("%{ENV:UNSET}", &callable_env),
            "application"
        );
    }

    #[test]
    fn callable_object_other_percent_values_are_application() {
        for value in ["%{ENV:}", "%{ENV:APP_CALLABLE", "%{GLOBAL}", "%other"] {
            assert_eq!(
                expand_callable_object(value, &callable_env),
                "application",
                "{value:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_substitutions_naming_them() {
        for bad in [
            "%{ENV:}",
            "%{FOO}",
            "%{global}",
            "%{GLOBAL",
            "%{ENV:a{b}",
            "%{}",
        ] {
            let e = GroupSelector::parse("WSGIApplicationGroup", bad).unwrap_err();
            assert_eq!(e.directive, "WSGIApplicationGroup");
            assert_eq!(e.token.as_deref(), Some(bad));
            assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn literal_classification() {
        assert!(parse("").is_literal());
        assert!(parse("x").is_literal());
        for v in ["%{SERVER}", "%{HOST}", "%{RESOURCE}", "%{ENV:X}"] {
            assert!(!parse(v).is_literal(), "{v}");
        }
        assert_eq!(parse("x").literal_name(), Some("x"));
        assert_eq!(parse("%{GLOBAL}").literal_name(), None);
    }

    #[test]
    fn display_round_trips() {
        for v in [
            "%{GLOBAL}",
            "x",
            "%{SERVER}",
            "%{HOST}",
            "%{RESOURCE}",
            "%{ENV:V}",
        ] {
            assert_eq!(parse(v).to_string(), v);
            assert_eq!(parse(&parse(v).to_string()), parse(v));
        }
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "GROUP" => Some("blue".into()),
            "INDIRECT" => Some("%{SERVER}".into()),
            "WEIRD" => Some("%{NOPE}".into()),
            "NESTED_ENV" => Some("%{ENV:GROUP}".into()),
            _ => None,
        }
    }

    fn ctx<'a>(port: u16, host: Option<&'a str>, script_name: &'a str) -> SelectorContext<'a> {
        SelectorContext {
            server_hostname: "www.example.com",
            port,
            host_header: host,
            script_name,
            env: &env,
        }
    }

    fn expand(v: &str, ctx: &SelectorContext<'_>) -> String {
        parse(v).expand(ctx)
    }

    #[test]
    fn global_expands_to_nothing() {
        let c = ctx(8080, Some("alias.example.com"), "/app");
        assert_eq!(expand("%{GLOBAL}", &c), "");
        assert_eq!(expand("", &c), "");
    }

    #[test]
    fn literal_expands_to_itself() {
        let c = ctx(8080, Some("alias.example.com"), "/app");
        assert_eq!(expand("fixed", &c), "fixed");
        // Only whole %{...} forms are substitutions.
        assert_eq!(expand("%name", &c), "%name");
    }

    #[test]
    fn env_expands_to_the_variable() {
        assert_eq!(expand("%{ENV:GROUP}", &ctx(80, None, "")), "blue");
    }

    #[test]
    fn env_unset_stays_as_written() {
        assert_eq!(expand("%{ENV:UNSET}", &ctx(80, None, "")), "%{ENV:UNSET}");
    }

    #[test]
    fn env_holding_a_substitution_is_expanded_once_more() {
        assert_eq!(
            expand("%{ENV:INDIRECT}", &ctx(8080, None, "")),
            "www.example.com:8080"
        );
        // Not another %{ENV:...} (no recursion), and nothing unknown.
        assert_eq!(
            expand("%{ENV:NESTED_ENV}", &ctx(80, None, "")),
            "%{ENV:GROUP}"
        );
        assert_eq!(expand("%{ENV:WEIRD}", &ctx(80, None, "")), "%{NOPE}");
    }

    #[test]
    fn server_is_the_server_name_with_a_port_other_than_80_and_443() {
        assert_eq!(
            expand("%{SERVER}", &ctx(80, Some("alias.example.com"), "/app")),
            "www.example.com"
        );
        assert_eq!(expand("%{SERVER}", &ctx(443, None, "")), "www.example.com");
        assert_eq!(
            expand("%{SERVER}", &ctx(8080, Some("alias.example.com"), "")),
            "www.example.com:8080"
        );
    }

    #[test]
    fn host_is_the_host_header_with_its_port() {
        assert_eq!(
            expand("%{HOST}", &ctx(80, Some("alias.example.com"), "/app")),
            "alias.example.com"
        );
        assert_eq!(
            expand("%{HOST}", &ctx(8080, Some("alias.example.com"), "")),
            "alias.example.com:8080"
        );
    }

    #[test]
    fn host_missing_or_empty_falls_back_to_the_server_name() {
        assert_eq!(
            expand("%{HOST}", &ctx(8080, None, "")),
            "www.example.com:8080"
        );
        assert_eq!(
            expand("%{HOST}", &ctx(443, Some(""), "/x")),
            "www.example.com"
        );
    }

    #[test]
    fn resource_is_the_server_and_script_name() {
        assert_eq!(
            expand("%{RESOURCE}", &ctx(80, Some("alias.example.com"), "/app")),
            "www.example.com|/app"
        );
        assert_eq!(
            expand("%{RESOURCE}", &ctx(8080, None, "")),
            "www.example.com:8080|"
        );
    }
}
