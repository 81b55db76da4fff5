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
        "WSGISlowRequests" => {
            let value = args.one()?;
            if !value
                .parse::<f64>()
                .is_ok_and(|v| v.is_finite() && v >= 0.0)
            {
                return Err(args.bad(value, "expected a non-negative number of seconds"));
            }
        }
        "WSGITelemetryService" => {
            let (target, interval) = args.one_or_two()?;
            if target.strip_prefix("unix:").is_none_or(str::is_empty) {
                return Err(args.bad(target, "expected a target of the form unix:/path"));
            }
            if let Some(word) = interval {
                let ok = word
                    .strip_prefix("interval=")
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v.is_finite() && v >= 0.5);
                if !ok {
                    return Err(args.bad(word, "expected interval=N with N at least 0.5 seconds"));
                }
            }
        }
        "WSGITelemetryOptions" => validate_telemetry_options(args)?,
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

/// `[+|-]Flag ... | None | All`; +/- and absolute forms may not be mixed.
fn validate_telemetry_options(args: &Args<'_>) -> Result<(), ConfigError> {
    const FLAGS: &[&str] = &["CaptureUserAgent"];
    let mut incremental = false;
    let mut absolute = false;
    for word in args.at_least_one()? {
        let (signed, name) = match word.strip_prefix(['+', '-']) {
            Some(rest) => (true, rest),
            None => (false, word.as_str()),
        };
        if signed {
            incremental = true;
        } else {
            absolute = true;
        }
        if incremental && absolute {
            return Err(args.bad(word, "cannot mix +/- flags with absolute flags"));
        }
        let pseudo = name.eq_ignore_ascii_case("None") || name.eq_ignore_ascii_case("All");
        if pseudo && signed {
            return Err(args.bad(word, "None and All take no +/- prefix"));
        }
        if !pseudo && !FLAGS.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            return Err(args.bad(
                word,
                format!("unknown flag; expected {}, None or All", FLAGS.join(", ")),
            ));
        }
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
