//! `<WSGIInterpreterOptions [process-group=NAME] [application-group=NAME]>` sections, as
//! mod_wsgi 6: per-interpreter settings for the interpreters the selectors match
//! ([`InterpreterOptions`]), and how the matching sections and the top-level values combine
//! for one interpreter ([`resolve`]).
//!
//! Matching and precedence (mod_wsgi 6's documentation): an omitted selector matches any
//! value; `%{GLOBAL}` means "" on both (the main interpreter; embedded mode for
//! `process-group=`). A section's specificity is the number of selectors it gives; for the
//! single-valued settings the most specific matching section wins, a later one on a tie, and
//! the top-level value applies when none matches. WSGIPythonPath layers add up: least
//! specific first, each moved to the front of `sys.path`, so the most specific ends first.

use super::directive_table::directive_info;
use super::directives::{Directive, parse_directive};
use super::error::ConfigError;
use super::tokenizer::tokenize;

/// The section's name in messages.
pub const SECTION: &str = "<WSGIInterpreterOptions>";

/// The directives allowed inside the section.
pub const SECTION_DIRECTIVES: &[&str] = &[
    "WSGIPerInterpreterGIL",
    "WSGIFreeThreading",
    "WSGISwitchInterval",
    "WSGIPythonPath",
    "WSGIRestrictStdin",
    "WSGIRestrictStdout",
    "WSGIRestrictSignal",
];

/// One `<WSGIInterpreterOptions>` section: its selectors and the settings written in it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct InterpreterOptions {
    /// `process-group=` ("" = `%{GLOBAL}`, embedded mode); None = any.
    pub process_group: Option<String>,
    /// `application-group=` ("" = `%{GLOBAL}`, the main interpreter); None = any.
    pub application_group: Option<String>,
    pub switch_interval: Option<f64>,
    pub python_path: Vec<String>,
    pub restrict_stdin: Option<bool>,
    pub restrict_stdout: Option<bool>,
    pub restrict_signal: Option<bool>,
    pub free_threading: Option<bool>,
    /// WSGIPerInterpreterGIL (On is refused on Python < 3.12 by `module/directives.rs`).
    pub per_interpreter_gil: Option<bool>,
    /// "file:line" of the section.
    pub defined_at: String,
}

impl InterpreterOptions {
    /// Parses the section's opening arguments as Apache hands them over
    /// (`process-group=a application-group=b>`).
    pub fn open(raw: &str, defined_at: &str) -> Result<InterpreterOptions, ConfigError> {
        let inner = raw.trim_end().strip_suffix('>').ok_or_else(|| {
            ConfigError::new(SECTION, format!("{SECTION} is missing its closing '>'"))
        })?;
        let mut options = InterpreterOptions {
            defined_at: defined_at.to_string(),
            ..InterpreterOptions::default()
        };
        for word in tokenize(SECTION, inner)? {
            let Some((key, value)) = word.split_once('=') else {
                return Err(ConfigError::at(
                    SECTION,
                    "selector",
                    word.as_str(),
                    "expected process-group=NAME or application-group=NAME",
                ));
            };
            let slot = if key.eq_ignore_ascii_case("process-group") {
                &mut options.process_group
            } else if key.eq_ignore_ascii_case("application-group") {
                &mut options.application_group
            } else {
                return Err(ConfigError::at(
                    SECTION,
                    "selector",
                    word.as_str(),
                    "unknown selector, expected process-group=NAME or application-group=NAME",
                ));
            };
            if slot.is_some() {
                return Err(ConfigError::at(
                    SECTION,
                    "selector",
                    word.as_str(),
                    format!("{key} is given more than once"),
                ));
            }
            if value.contains("%{") && value != "%{GLOBAL}" {
                return Err(ConfigError::at(
                    SECTION,
                    "selector",
                    word.as_str(),
                    "only a literal name or %{GLOBAL} is supported by mod_rwsgi",
                ));
            }
            *slot = Some(if value == "%{GLOBAL}" {
                String::new()
            } else {
                value.to_string()
            });
        }
        Ok(options)
    }

    /// Applies a directive written inside the section; any directive but
    /// [`SECTION_DIRECTIVES`] is an error naming it and the section.
    pub fn apply(&mut self, name: &str, raw_args: &str) -> Result<(), ConfigError> {
        let canonical = directive_info(name).map_or(name, |d| d.name);
        if !SECTION_DIRECTIVES.contains(&canonical) {
            return Err(ConfigError::new(
                canonical,
                format!(
                    "{canonical} is not allowed inside {SECTION} (only {} are)",
                    SECTION_DIRECTIVES.join(", ")
                ),
            ));
        }
        match parse_directive(canonical, raw_args)? {
            Directive::SwitchInterval(seconds) => self.switch_interval = Some(seconds),
            Directive::PythonPath(path) => self.python_path = path,
            Directive::Flag { name, value } => {
                let slot = match name {
                    "WSGIRestrictStdin" => &mut self.restrict_stdin,
                    "WSGIRestrictStdout" => &mut self.restrict_stdout,
                    "WSGIRestrictSignal" => &mut self.restrict_signal,
                    "WSGIFreeThreading" => &mut self.free_threading,
                    _ => &mut self.per_interpreter_gil,
                };
                *slot = Some(value);
            }
            other => {
                return Err(ConfigError::new(
                    other.directive_name(),
                    format!("internal error: not a {SECTION} setting"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the section selects interpreter `app_group` of process group `process_group`
    /// ("" = embedded mode), and how specifically.
    fn specificity(&self, process_group: &str, app_group: &str) -> Option<u8> {
        let mut score = 0;
        for (selector, value) in [
            (&self.process_group, process_group),
            (&self.application_group, app_group),
        ] {
            if let Some(want) = selector {
                if want != value {
                    return None;
                }
                score += 1;
            }
        }
        Some(score)
    }

    /// Configtest warnings for this section alone (see [`section_warnings`] for the ones
    /// that depend on the other sections).
    fn own_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.free_threading.is_some() && self.application_group.is_some() {
            out.push(format!(
                "WSGIFreeThreading inside the {SECTION} at {} is ignored: it has \
                 application-group= set, and free-threading is a process-wide setting",
                self.defined_at
            ));
        }
        out
    }
}

/// Configtest warnings of `sections` (in configuration order), given the top-level
/// WSGIPerInterpreterGIL and the process groups their interpreters may run in
/// (`process_groups`, "" = embedded mode). As mod_wsgi 6 checks at configuration load: a
/// WSGISwitchInterval in a section selecting a sub-interpreter by `application-group=` is
/// applied only where that interpreter resolves to its own GIL (WSGIPerInterpreterGIL On:
/// the interval is then its GIL's); where it shares the GIL it is skipped (the interval is
/// process-wide), which is warned about here naming those process groups.
pub fn section_warnings(
    sections: &[InterpreterOptions],
    per_interpreter_gil: bool,
    process_groups: &[&str],
) -> Vec<String> {
    let base = BaseOptions {
        restrict_stdin: false,
        restrict_stdout: false,
        restrict_signal: false,
        per_interpreter_gil,
    };
    let mut out = Vec::new();
    for section in sections {
        out.extend(section.own_warnings());
        let Some(app_group) = section.application_group.as_deref() else {
            continue;
        };
        if section.switch_interval.is_none() || app_group.is_empty() {
            continue;
        }
        let candidates: Vec<&str> = match section.process_group.as_deref() {
            Some(group) => vec![group],
            None => process_groups.to_vec(),
        };
        let shared: Vec<String> = candidates
            .into_iter()
            .filter(|group| !resolve(sections, group, app_group, base).per_interpreter_gil)
            .map(|group| {
                if group.is_empty() {
                    "embedded mode".to_string()
                } else {
                    format!("daemon process group '{group}'")
                }
            })
            .collect();
        if !shared.is_empty() {
            out.push(format!(
                "WSGISwitchInterval inside the {SECTION} at {} is not applied to \
                 sub-interpreter '{app_group}' in {}: it selects by application-group=, and \
                 there that interpreter shares the GIL (WSGIPerInterpreterGIL Off), so the \
                 switch interval is process-wide; set WSGIPerInterpreterGIL On for it, or \
                 select with process-group= only",
                section.defined_at,
                shared.join(", ")
            ));
        }
    }
    out
}

/// The settings of one interpreter: the top-level values with the matching sections applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolvedOptions {
    /// From a matching section only (the top-level value was applied at start-up); `None`
    /// when none sets it.
    pub switch_interval: Option<f64>,
    /// Whether that section selects on `application-group=` (a non-%{GLOBAL} one).
    pub switch_interval_app_scoped: bool,
    pub restrict_stdin: bool,
    pub restrict_stdout: bool,
    pub restrict_signal: bool,
    /// WSGIPerInterpreterGIL: a sub-interpreter gets its own GIL (ignored for the main one).
    pub per_interpreter_gil: bool,
    /// The sections' python-path layers, least specific first (the base path comes before).
    pub python_path_layers: Vec<Vec<String>>,
}

/// The top-level values [`resolve`] starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaseOptions {
    pub restrict_stdin: bool,
    pub restrict_stdout: bool,
    pub restrict_signal: bool,
    /// The top-level WSGIPerInterpreterGIL.
    pub per_interpreter_gil: bool,
}

/// Resolves the options of interpreter `app_group` ("" = main) in process group
/// `process_group` ("" = embedded mode).
pub fn resolve(
    sections: &[InterpreterOptions],
    process_group: &str,
    app_group: &str,
    base: BaseOptions,
) -> ResolvedOptions {
    let mut out = ResolvedOptions {
        restrict_stdin: base.restrict_stdin,
        restrict_stdout: base.restrict_stdout,
        restrict_signal: base.restrict_signal,
        per_interpreter_gil: base.per_interpreter_gil,
        ..ResolvedOptions::default()
    };
    // (specificity of the value's section) per setting; later sections win ties.
    let mut best = [None::<u8>; 5];
    let mut layers: Vec<(u8, usize, &Vec<String>)> = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        let Some(score) = section.specificity(process_group, app_group) else {
            continue;
        };
        let mut take = |slot: usize| {
            let wins = best[slot].is_none_or(|b| score >= b);
            if wins {
                best[slot] = Some(score);
            }
            wins
        };
        if let Some(v) = section.switch_interval {
            if take(0) {
                out.switch_interval = Some(v);
                out.switch_interval_app_scoped = section
                    .application_group
                    .as_ref()
                    .is_some_and(|g| !g.is_empty());
            }
        }
        if let Some(v) = section.restrict_stdin {
            if take(1) {
                out.restrict_stdin = v;
            }
        }
        if let Some(v) = section.restrict_stdout {
            if take(2) {
                out.restrict_stdout = v;
            }
        }
        if let Some(v) = section.restrict_signal {
            if take(3) {
                out.restrict_signal = v;
            }
        }
        if let Some(v) = section.per_interpreter_gil {
            if take(4) {
                out.per_interpreter_gil = v;
            }
        }
        if !section.python_path.is_empty() {
            layers.push((score, index, &section.python_path));
        }
    }
    layers.sort_by_key(|(score, index, _)| (*score, *index));
    out.python_path_layers = layers.into_iter().map(|(_, _, p)| p.clone()).collect();
    out
}

/// WSGIFreeThreading for the processes of `process_group` ("" = embedded mode): the most
/// specific matching section without `application-group=`, else `top_level`.
pub fn resolve_free_threading(
    sections: &[InterpreterOptions],
    process_group: &str,
    top_level: bool,
) -> bool {
    let mut value = top_level;
    let mut best = None::<u8>;
    for section in sections.iter().filter(|s| s.application_group.is_none()) {
        if let (Some(v), Some(score)) = (
            section.free_threading,
            section.specificity(process_group, ""),
        ) {
            if best.is_none_or(|b| score >= b) {
                best = Some(score);
                value = v;
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(open: &str, lines: &[(&str, &str)]) -> InterpreterOptions {
        let mut s = InterpreterOptions::open(open, "x.conf:1").unwrap();
        for (name, args) in lines {
            s.apply(name, args).unwrap();
        }
        s
    }

    const BASE: BaseOptions = BaseOptions {
        restrict_stdin: false,
        restrict_stdout: false,
        restrict_signal: true,
        per_interpreter_gil: false,
    };

    #[test]
    fn selectors_parse_and_errors_name_the_token() {
        let s = InterpreterOptions::open("process-group=d application-group=%{GLOBAL}>", "f:1")
            .unwrap();
        assert_eq!(s.process_group.as_deref(), Some("d"));
        assert_eq!(s.application_group.as_deref(), Some(""));
        let s = InterpreterOptions::open(">", "f:1").unwrap();
        assert!(s.process_group.is_none() && s.application_group.is_none());
        let e = InterpreterOptions::open("process-group=d", "f:1").unwrap_err();
        assert!(e.to_string().contains("closing '>'"), "{e}");
        let e = InterpreterOptions::open("colour=red>", "f:1").unwrap_err();
        assert_eq!(e.token.as_deref(), Some("colour=red"), "{e}");
        let e = InterpreterOptions::open("app1>", "f:1").unwrap_err();
        assert_eq!(e.token.as_deref(), Some("app1"), "{e}");
        let e = InterpreterOptions::open("process-group=a process-group=b>", "f:1").unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
    }

    #[test]
    fn only_the_listed_directives_are_allowed_inside() {
        let mut s = InterpreterOptions::open(">", "f:1").unwrap();
        let e = s.apply("WSGIDaemonProcess", "x").unwrap_err();
        assert_eq!(e.directive, "WSGIDaemonProcess");
        assert!(
            e.message
                .contains("not allowed inside <WSGIInterpreterOptions>"),
            "{e}"
        );
        let e = s.apply("WSGIRestrictStdout", "Maybe").unwrap_err();
        assert!(e.to_string().contains("Maybe"), "{e}");
        s.apply("WSGIPerInterpreterGIL", "On").unwrap();
        assert_eq!(s.per_interpreter_gil, Some(true));
        s.apply("wsgiperinterpretergil", "Off").unwrap();
        assert_eq!(s.per_interpreter_gil, Some(false));
        s.apply("WSGISwitchInterval", "0.01").unwrap();
        s.apply("WSGIPythonPath", "/a:/b").unwrap();
        assert_eq!(s.python_path, ["/a", "/b"]);
    }

    #[test]
    fn most_specific_wins_later_on_a_tie_and_paths_add_up() {
        let sections = vec![
            section(
                "process-group=d application-group=app>",
                &[("WSGIRestrictStdout", "On"), ("WSGIPythonPath", "/both")],
            ),
            section(
                ">",
                &[("WSGIRestrictStdout", "Off"), ("WSGIPythonPath", "/any")],
            ),
            section(
                "application-group=app>",
                &[("WSGIRestrictStdin", "On"), ("WSGIPythonPath", "/app")],
            ),
            section("application-group=app>", &[("WSGIRestrictStdin", "Off")]),
            section("process-group=other>", &[("WSGIRestrictSignal", "Off")]),
        ];
        let r = resolve(&sections, "d", "app", BASE);
        assert!(r.restrict_stdout && !r.restrict_stdin && r.restrict_signal);
        assert_eq!(
            r.python_path_layers,
            [
                vec!["/any".to_string()],
                vec!["/app".into()],
                vec!["/both".into()]
            ]
        );
        let r = resolve(&sections, "d", "", BASE);
        assert!(!r.restrict_stdout && !r.restrict_stdin);
        assert_eq!(r.python_path_layers, [vec!["/any".to_string()]]);
        let r = resolve(&sections, "other", "x", BASE);
        assert!(!r.restrict_signal);
        assert_eq!(r.switch_interval, None);
    }

    #[test]
    fn free_threading_is_per_process_group() {
        let sections = vec![
            section("process-group=d>", &[("WSGIFreeThreading", "On")]),
            section("application-group=a>", &[("WSGIFreeThreading", "On")]),
            section("process-group=%{GLOBAL}>", &[("WSGIFreeThreading", "Off")]),
        ];
        assert!(resolve_free_threading(&sections, "d", false));
        assert!(!resolve_free_threading(&sections, "e", false));
        assert!(!resolve_free_threading(&sections, "", true));
        assert_eq!(section_warnings(&sections, false, &[""]).len(), 1);
    }

    #[test]
    fn app_scoped_switch_interval_is_warned_about_only_where_the_gil_is_shared() {
        let interval = section("application-group=a>", &[("WSGISwitchInterval", "0.001")]);
        let own_gil = section("application-group=a>", &[("WSGIPerInterpreterGIL", "On")]);
        let groups = ["", "d", "e"];
        // Shared GIL everywhere: one warning naming every place.
        let w = section_warnings(std::slice::from_ref(&interval), false, &groups);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains(
                "not applied to sub-interpreter 'a' in embedded mode, daemon process \
                           group 'd', daemon process group 'e'"
            ),
            "{}",
            w[0]
        );
        // Own GIL from the top level or a section: nothing to warn about.
        assert!(section_warnings(std::slice::from_ref(&interval), true, &groups).is_empty());
        assert!(section_warnings(&[interval.clone(), own_gil.clone()], false, &groups).is_empty());
        // Own GIL only in group d: the others are named.
        let own_in_d = section(
            "process-group=d application-group=a>",
            &[("WSGIPerInterpreterGIL", "On")],
        );
        let w = section_warnings(&[interval.clone(), own_in_d.clone()], false, &groups);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("in embedded mode, daemon process group 'e':"),
            "{}",
            w[0]
        );
        // A section naming its process group is checked there only.
        let interval_in_d = section(
            "process-group=d application-group=a>",
            &[("WSGISwitchInterval", "0.001")],
        );
        assert!(section_warnings(&[interval_in_d.clone(), own_in_d], false, &groups).is_empty());
        assert_eq!(section_warnings(&[interval_in_d], false, &groups).len(), 1);
        // Process-group-only and %{GLOBAL} sections are always applied.
        let by_group = section("process-group=d>", &[("WSGISwitchInterval", "0.001")]);
        let global = section(
            "application-group=%{GLOBAL}>",
            &[("WSGISwitchInterval", "0.001")],
        );
        assert!(section_warnings(&[by_group, global], false, &groups).is_empty());
    }
}
