//! Directives that are recognised but not implemented yet: the "is not supported by
//! mod_rwsgi yet" error configtest reports for them, and the checks of their arguments
//! (so a line that could never work is named as wrong, not only as unsupported).

use super::args::Args;
use super::directive_table::directive_info;
use super::error::ConfigError;

/// The error for a directive that is parsed but not supported yet.
pub fn not_implemented_error(name: &str) -> ConfigError {
    let name = directive_info(name).map_or(name, |d| d.name);
    ConfigError::new(name, format!("{name} is not supported by mod_rwsgi yet"))
}

/// Checks the arguments of the directives that stay [`super::Directive::Other`].
pub(super) fn validate_other(args: &Args<'_>) -> Result<(), ConfigError> {
    let d = args.info.name;
    match d {
        "WSGIAcceptMutex" => {
            const MECHS: &[&str] = &[
                "default", "flock", "fcntl", "sysvsem", "posixsem", "pthread",
            ];
            let value = args.one()?;
            if !MECHS.iter().any(|m| m.eq_ignore_ascii_case(value)) {
                return Err(args.bad(value, format!("expected one of {}", MECHS.join(", "))));
            }
        }
        "WSGIRestrictProcess" => {
            super::handler_script::parse_restrict_process(d, args.at_least_one()?)?;
        }
        "WSGISlowRequests" | "WSGITelemetryService" | "WSGITelemetryOptions" => {
            super::telemetry::validate(args)?;
        }
        "WSGIDispatchScript"
        | "WSGIAccessScript"
        | "WSGIAuthUserScript"
        | "WSGIAuthGroupScript" => {
            super::phase_script::PhaseScript::parse(d, args.words)?;
        }
        "WSGIHandlerScript" => {
            super::handler_script::HandlerScript::parse(d, args.words)?;
        }
        _ => unreachable!("directive {d} has no parser"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_implemented_wording() {
        let e = not_implemented_error("WSGIErrorOverride");
        assert_eq!(e.directive, "WSGIErrorOverride");
        assert_eq!(
            e.message,
            "WSGIErrorOverride is not supported by mod_rwsgi yet"
        );
        assert_eq!(
            e.to_string(),
            "WSGIErrorOverride is not supported by mod_rwsgi yet"
        );
        let e = not_implemented_error("wsgierroroverride");
        assert_eq!(
            e.message,
            "WSGIErrorOverride is not supported by mod_rwsgi yet"
        );
    }
}
