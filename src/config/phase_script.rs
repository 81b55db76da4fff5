//! The scripts mod_wsgi runs in Apache's early request phases, inside the Apache child:
//! WSGIAccessScript, WSGIAuthUserScript, WSGIAuthGroupScript and WSGIDispatchScript, each
//! `path [application-group=NAME]`.

use super::error::ConfigError;
use super::script_alias::{group_option, split_options};
use super::selector::GroupSelector;

/// One phase script directive, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseScript {
    /// The script file, as written (the caller makes it ServerRoot-relative).
    pub path: String,
    /// `application-group=`; `None` is `%{GLOBAL}`, mod_wsgi's default for all four
    /// directives (its code; the WSGIDispatchScript page says otherwise).
    pub application_group: Option<GroupSelector>,
}

static GLOBAL: GroupSelector = GroupSelector::Global;

impl PhaseScript {
    /// Parses `path [application-group=NAME]`; errors name the directive and the token.
    pub fn parse(directive: &str, words: &[String]) -> Result<PhaseScript, ConfigError> {
        let Some((path, rest)) = words.split_first().filter(|(p, _)| !p.is_empty()) else {
            return Err(ConfigError::new(
                directive,
                format!(
                    "expected a script path; usage: {directive} file-path [application-group=NAME]"
                ),
            ));
        };
        let mut application_group = None;
        for o in split_options(directive, rest, &["application-group"])? {
            application_group = Some(group_option(directive, &o)?);
        }
        Ok(PhaseScript {
            path: path.clone(),
            application_group,
        })
    }

    /// The application group the script runs in (`%{GLOBAL}` unless given).
    pub fn application_group(&self) -> &GroupSelector {
        self.application_group.as_ref().unwrap_or(&GLOBAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn path_and_application_group() {
        let s = PhaseScript::parse("WSGIAuthUserScript", &words("/srv/auth.py")).unwrap();
        assert_eq!(s.path, "/srv/auth.py");
        assert_eq!(s.application_group(), &GroupSelector::Global);
        let s = PhaseScript::parse(
            "WSGIAccessScript",
            &words("/srv/a.py application-group=site"),
        )
        .unwrap();
        assert_eq!(s.application_group().literal_name(), Some("site"));
    }

    #[test]
    fn errors_name_the_directive_and_token() {
        let e = PhaseScript::parse("WSGIDispatchScript", &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("WSGIDispatchScript: expected a script path"),
            "{e}"
        );
        let e =
            PhaseScript::parse("WSGIDispatchScript", &words("/d.py process-group=g")).unwrap_err();
        assert!(e.to_string().contains("'process-group=g'"), "{e}");
        let e = PhaseScript::parse("WSGIAccessScript", &words("/a.py application-group=%{BAD}"))
            .unwrap_err();
        assert!(e.to_string().contains("'application-group=%{BAD}'"), "{e}");
    }
}
