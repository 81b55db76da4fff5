//! The telemetry directives of mod_wsgi 6 (WSGITelemetryService, WSGISlowRequests,
//! WSGITelemetryOptions): their argument checks, and the one [`Telemetry`] value the lines
//! of a configuration add up to.

use super::args::Args;
use super::error::ConfigError;

/// The flags WSGITelemetryOptions knows.
const FLAGS: &[&str] = &["CaptureUserAgent"];

/// What the telemetry directives configure, server-wide.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The ingester's Unix datagram socket (the path after `unix:`).
    pub socket: String,
    /// Seconds between two samples (`interval=`, default 1).
    pub interval: f64,
    /// WSGISlowRequests seconds; None = no slow-request records.
    pub slow_threshold: Option<f64>,
    /// WSGITelemetryOptions +CaptureUserAgent.
    pub capture_user_agent: bool,
}

/// Checks one telemetry directive's arguments (the caller keeps the words).
pub(super) fn validate(args: &Args<'_>) -> Result<(), ConfigError> {
    match args.info.name {
        "WSGISlowRequests" => threshold_value(args.one()?).map(|_| ()).ok_or_else(|| {
            args.bad(
                args.words[0].as_str(),
                "expected a non-negative number of seconds",
            )
        }),
        "WSGITelemetryService" => {
            let (target, interval) = args.one_or_two()?;
            if target.strip_prefix("unix:").is_none_or(str::is_empty) {
                return Err(args.bad(target, "expected a target of the form unix:/path"));
            }
            if let Some(word) = interval {
                if interval_value(word).is_none() {
                    return Err(args.bad(word, "expected interval=N with N at least 0.5 seconds"));
                }
            }
            Ok(())
        }
        _ => validate_options(args),
    }
}

fn threshold_value(word: &str) -> Option<f64> {
    word.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

fn interval_value(word: &str) -> Option<f64> {
    word.strip_prefix("interval=")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.5)
}

/// `[+|-]Flag ... | None | All`; +/- and absolute forms may not be mixed.
fn validate_options(args: &Args<'_>) -> Result<(), ConfigError> {
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

/// The telemetry settings of validated server-wide lines, in configuration order: None
/// without WSGITelemetryService. A later WSGITelemetryService or WSGISlowRequests replaces
/// an earlier one; WSGITelemetryOptions lines apply in turn (+/- change the flags set so
/// far, None and All replace them), as mod_wsgi does.
pub fn telemetry_of(lines: &[(&'static str, Vec<String>)]) -> Option<Telemetry> {
    let mut service: Option<(String, f64)> = None;
    let mut slow_threshold = None;
    let mut capture_user_agent = false;
    for (name, words) in lines {
        match (*name, words.as_slice()) {
            ("WSGITelemetryService", [target, rest @ ..]) => {
                let socket = target.strip_prefix("unix:").unwrap_or(target).to_owned();
                let interval = rest.first().and_then(|w| interval_value(w)).unwrap_or(1.0);
                service = Some((socket, interval));
            }
            ("WSGISlowRequests", [value]) => slow_threshold = threshold_value(value),
            ("WSGITelemetryOptions", words) => {
                let absolute = words.iter().all(|w| !w.starts_with(['+', '-']));
                let mut flag = if absolute { false } else { capture_user_agent };
                for w in words {
                    let (sign, name) = match w.strip_prefix(['+', '-']) {
                        Some(rest) => (w.starts_with('+'), rest),
                        None => (true, w.as_str()),
                    };
                    if name.eq_ignore_ascii_case("None") {
                        flag = false;
                    } else if name.eq_ignore_ascii_case("All") {
                        flag = true;
                    } else if name.eq_ignore_ascii_case("CaptureUserAgent") {
                        flag = sign;
                    }
                }
                capture_user_agent = flag;
            }
            _ => {}
        }
    }
    let (socket, interval) = service?;
    Some(Telemetry {
        socket,
        interval,
        slow_threshold,
        capture_user_agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &'static str, words: &[&str]) -> (&'static str, Vec<String>) {
        (name, words.iter().map(|w| (*w).to_owned()).collect())
    }

    #[test]
    fn no_service_no_telemetry() {
        assert_eq!(telemetry_of(&[line("WSGISlowRequests", &["2"])]), None);
    }

    #[test]
    fn lines_add_up_in_order() {
        let t = telemetry_of(&[
            line("WSGIAcceptMutex", &["fcntl"]),
            line("WSGITelemetryOptions", &["+CaptureUserAgent"]),
            line("WSGISlowRequests", &["2.5"]),
            line(
                "WSGITelemetryService",
                &["unix:/run/t.sock", "interval=0.5"],
            ),
        ])
        .unwrap();
        assert_eq!(
            t,
            Telemetry {
                socket: "/run/t.sock".into(),
                interval: 0.5,
                slow_threshold: Some(2.5),
                capture_user_agent: true,
            }
        );
        let t = telemetry_of(&[
            line("WSGITelemetryService", &["unix:/a"]),
            line("WSGITelemetryOptions", &["All"]),
            line("WSGITelemetryOptions", &["-captureuseragent"]),
        ])
        .unwrap();
        assert_eq!(t.interval, 1.0);
        assert_eq!(t.slow_threshold, None);
        assert!(!t.capture_user_agent);
        let t = telemetry_of(&[
            line("WSGITelemetryService", &["unix:/a"]),
            line("WSGITelemetryOptions", &["+CaptureUserAgent"]),
            line("WSGITelemetryOptions", &["None"]),
        ])
        .unwrap();
        assert!(!t.capture_user_agent);
    }
}
