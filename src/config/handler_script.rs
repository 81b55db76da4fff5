//! WSGIHandlerScript (a named Apache handler that runs a script's `handle_request`) and
//! WSGIRestrictProcess (which daemon groups a request may be sent to).

use super::error::ConfigError;
use super::script_alias::{
    Interface, check_asgi_group, flag_option, group_option, interface_option, require_nonempty,
    split_options,
};
use super::selector::GroupSelector;

/// The callable a handler script must define (WSGICallableObject does not apply).
pub const HANDLER_CALLABLE: &str = "handle_request";

/// One `WSGIHandlerScript name path [process-group=] [application-group=]
/// [pass-authorization=]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerScript {
    /// The handler name `SetHandler`, `AddHandler` or `RewriteRule [H=]` selects.
    pub name: String,
    /// The script file, as written (the caller makes it ServerRoot-relative).
    pub script: String,
    /// `process-group=`; unset = WSGIProcessGroup of the request's directory.
    pub process_group: Option<GroupSelector>,
    /// `application-group=`; unset = WSGIApplicationGroup of the request's directory.
    pub application_group: Option<GroupSelector>,
    /// `pass-authorization=`; unset = WSGIPassAuthorization.
    pub pass_authorization: Option<bool>,
    /// `interface=wsgi|asgi`: `handle_request` is an ASGI 3 application.
    pub interface: Interface,
}

impl HandlerScript {
    /// Parses the words of one WSGIHandlerScript line.
    pub fn parse(directive: &str, words: &[String]) -> Result<Self, ConfigError> {
        let [name, script, rest @ ..] = words else {
            return Err(ConfigError::new(
                directive,
                "expected a handler name and a script path; usage: WSGIHandlerScript name \
                 file-path [process-group=NAME] [application-group=NAME] \
                 [pass-authorization=On|Off] [interface=wsgi|asgi]",
            ));
        };
        require_nonempty(
            directive,
            &[(name, "a handler name"), (script, "a script path")],
        )?;
        let mut handler = HandlerScript {
            name: name.clone(),
            script: script.clone(),
            process_group: None,
            application_group: None,
            pass_authorization: None,
            interface: Interface::Wsgi,
        };
        let allowed = [
            "process-group",
            "application-group",
            "pass-authorization",
            "interface",
        ];
        for o in split_options(directive, rest, &allowed)? {
            match o.key {
                "pass-authorization" => {
                    handler.pass_authorization = Some(flag_option(directive, &o)?);
                }
                "process-group" => handler.process_group = Some(group_option(directive, &o)?),
                "interface" => handler.interface = interface_option(directive, &o)?,
                _ => handler.application_group = Some(group_option(directive, &o)?),
            }
        }
        check_asgi_group(directive, handler.interface, handler.process_group.as_ref())?;
        Ok(handler)
    }
}

/// Parses the words of WSGIRestrictProcess into the group names a request may select;
/// `%{GLOBAL}` (embedded mode) becomes `""`, as the process group it stands for.
pub fn parse_restrict_process(
    directive: &str,
    words: &[String],
) -> Result<Vec<String>, ConfigError> {
    if words.is_empty() {
        return Err(ConfigError::new(
            directive,
            "expected at least one process group name; usage: WSGIRestrictProcess group ...",
        ));
    }
    let mut names = Vec::with_capacity(words.len());
    for word in words {
        let name = match GroupSelector::parse(directive, word)? {
            GroupSelector::Global => String::new(),
            GroupSelector::Literal(name) => name,
            _ => {
                return Err(ConfigError::at(
                    directive,
                    "group",
                    word,
                    "expected a daemon process group name or %{GLOBAL}: the list is compared \
                     with the group a request selects, after its own substitution",
                ));
            }
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// `child`'s handler scripts over `base`'s: a name defined in `child` wins, the other names
/// of `base` stay (mod_wsgi overlays the two tables).
pub fn merge_handler_scripts(
    base: &[HandlerScript],
    child: &[HandlerScript],
) -> Vec<HandlerScript> {
    let mut merged: Vec<HandlerScript> = base
        .iter()
        .filter(|b| !child.iter().any(|c| c.name == b.name))
        .cloned()
        .collect();
    merged.extend(child.iter().cloned());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tokenizer::tokenize;

    fn parse(raw: &str) -> Result<HandlerScript, ConfigError> {
        HandlerScript::parse("WSGIHandlerScript", &tokenize("WSGIHandlerScript", raw)?)
    }

    #[test]
    fn handler_script_with_every_option() {
        let h = parse(
            "wsgi-handler '/srv/handler.wsgi' process-group='localhost:8000' \
             application-group=%{GLOBAL} pass-authorization=On",
        )
        .unwrap();
        assert_eq!(h.name, "wsgi-handler");
        assert_eq!(h.script, "/srv/handler.wsgi");
        assert_eq!(
            h.process_group,
            Some(GroupSelector::Literal("localhost:8000".into()))
        );
        assert_eq!(h.application_group, Some(GroupSelector::Global));
        assert_eq!(h.pass_authorization, Some(true));
        let bare = parse("h /srv/h.wsgi").unwrap();
        assert_eq!(
            (
                bare.process_group,
                bare.application_group,
                bare.pass_authorization
            ),
            (None, None, None)
        );
    }

    #[test]
    fn handler_script_errors_name_the_token() {
        for (raw, token) in [
            ("only-a-name", "expected a handler name and a script path"),
            (
                "h /s.wsgi pass-authorization=maybe",
                "pass-authorization=maybe",
            ),
            ("h /s.wsgi callable-object=x", "callable-object=x"),
            ("h /s.wsgi stray", "stray"),
            ("'' /s.wsgi", "handler name"),
        ] {
            let err = parse(raw).unwrap_err().to_string();
            assert!(err.contains(token), "{raw}: {err}");
            assert!(err.contains("WSGIHandlerScript"), "{raw}: {err}");
        }
    }

    #[test]
    fn restrict_process_maps_global_to_embedded() {
        let words: Vec<String> = ["a", "%{GLOBAL}", "b:1", "a"].map(String::from).to_vec();
        assert_eq!(
            parse_restrict_process("WSGIRestrictProcess", &words).unwrap(),
            ["a", "", "b:1"]
        );
        let err = parse_restrict_process("WSGIRestrictProcess", &["%{ENV:G}".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("%{ENV:G}"), "{err}");
        assert!(parse_restrict_process("WSGIRestrictProcess", &[]).is_err());
    }

    #[test]
    fn handler_scripts_merge_by_name() {
        let h = |name: &str, script: &str| parse(&format!("{name} {script}")).unwrap();
        let merged = merge_handler_scripts(
            &[h("a", "/base-a"), h("b", "/base-b")],
            &[h("b", "/child-b"), h("c", "/child-c")],
        );
        let pairs: Vec<(&str, &str)> = merged
            .iter()
            .map(|h| (h.name.as_str(), h.script.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("a", "/base-a"), ("b", "/child-b"), ("c", "/child-c")]
        );
    }
}
