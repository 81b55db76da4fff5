//! The one error type of the configuration layer.

use std::fmt;

/// A configuration error, raised while a directive is parsed or when the
/// whole configuration is checked after it has been read.
///
/// Rendered as `<Directive>: <what> '<token>': <message>`, for example
/// `WSGIDaemonProcess: option 'threads=abc': expected an integer from 0 to 10000`,
/// or as `<Directive>: <message>` when there is no single bad token (a missing
/// argument, for instance); a token-less message that already starts with the
/// directive name is shown as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The directive, spelled as in the directive table (`WSGIDaemonProcess`).
    pub directive: String,
    /// What kind of thing the token is: "option", "argument", "user", ...
    pub what: &'static str,
    /// The offending token exactly as written (quotes removed).
    pub token: Option<String>,
    /// What was expected, or what is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error that does not point at one token (wrong argument count, ...).
    pub fn new(directive: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            directive: directive.into(),
            what: "",
            token: None,
            message: message.into(),
        }
    }

    /// An error about one token; `what` names its kind ("option", "argument").
    pub fn at(
        directive: impl Into<String>,
        what: &'static str,
        token: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            directive: directive.into(),
            what,
            token: Some(token.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.token {
            Some(token) if self.what.is_empty() => {
                write!(f, "{}: '{}': {}", self.directive, token, self.message)
            }
            Some(token) => write!(
                f,
                "{}: {} '{}': {}",
                self.directive, self.what, token, self.message
            ),
            // A message that already starts with the directive is shown as is.
            None if self.message.starts_with(self.directive.as_str()) => f.write_str(&self.message),
            None => write!(f, "{}: {}", self.directive, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_token_names_directive_kind_and_token() {
        let e = ConfigError::at(
            "WSGIDaemonProcess",
            "option",
            "threads=abc",
            "expected an integer from 0 to 10000",
        );
        assert_eq!(
            e.to_string(),
            "WSGIDaemonProcess: option 'threads=abc': expected an integer from 0 to 10000"
        );
    }

    #[test]
    fn display_without_token() {
        let e = ConfigError::new("WSGIScriptAlias", "expected a URL path and a script path");
        assert_eq!(
            e.to_string(),
            "WSGIScriptAlias: expected a URL path and a script path"
        );
    }

    #[test]
    fn display_with_token_but_no_kind() {
        let e = ConfigError::at("WSGIX", "", "tok", "bad");
        assert_eq!(e.to_string(), "WSGIX: 'tok': bad");
    }

    #[test]
    fn display_does_not_repeat_a_leading_directive_name() {
        let e = ConfigError::new("WSGIX", "WSGIX is not supported");
        assert_eq!(e.to_string(), "WSGIX is not supported");
    }

    #[test]
    fn is_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(ConfigError::new("WSGIX", "m"));
        assert_eq!(e.to_string(), "WSGIX: m");
    }
}
