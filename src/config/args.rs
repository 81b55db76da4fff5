//! The arguments of one directive line, with the counting helpers every parser uses, so
//! the parsers of implemented and not-yet-implemented directives share them without
//! depending on each other.

use super::directive_table::DirectiveInfo;
use super::error::ConfigError;

/// The words of one directive, with argument-count helpers.
pub(super) struct Args<'a> {
    pub(super) info: &'static DirectiveInfo,
    pub(super) words: &'a [String],
}

impl<'a> Args<'a> {
    pub(super) fn usage(&self) -> String {
        format!("usage: {}", self.info.syntax)
    }

    pub(super) fn bad(&self, token: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.info.name, "argument", token, message)
    }

    /// Exactly one argument (it may be empty).
    pub(super) fn one(&self) -> Result<&'a str, ConfigError> {
        match self.words {
            [one] => Ok(one),
            [] => Err(ConfigError::new(
                self.info.name,
                format!("expected one argument; {}", self.usage()),
            )),
            [_, extra, ..] => Err(self.bad(
                extra,
                format!(
                    "unexpected extra argument: expected one argument; {}",
                    self.usage()
                ),
            )),
        }
    }

    pub(super) fn one_nonempty(&self) -> Result<&'a str, ConfigError> {
        let value = self.one()?;
        if value.is_empty() {
            return Err(self.bad(value, "expected a non-empty value"));
        }
        Ok(value)
    }

    pub(super) fn at_least_one(&self) -> Result<&'a [String], ConfigError> {
        if self.words.is_empty() {
            return Err(ConfigError::new(
                self.info.name,
                format!("expected at least one argument; {}", self.usage()),
            ));
        }
        Ok(self.words)
    }

    pub(super) fn one_or_two(&self) -> Result<(&'a str, Option<&'a str>), ConfigError> {
        match self.words {
            [a] => Ok((a, None)),
            [a, b] => Ok((a, Some(b))),
            [] => Err(ConfigError::new(
                self.info.name,
                format!("expected one or two arguments; {}", self.usage()),
            )),
            [_, _, extra, ..] => Err(self.bad(
                extra,
                format!("unexpected extra argument; {}", self.usage()),
            )),
        }
    }
}
