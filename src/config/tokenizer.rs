//! Splits a directive's raw argument string into words, like Apache's
//! `ap_getword_conf` as mod_wsgi uses it.
//!
//! - Words are separated by whitespace (space, tab, CR, LF, VT, FF).
//! - A single or double quote groups a word and is removed: `"a b"` gives `a b`,
//!   `""` gives an empty word.
//! - A quote may also open right after the first `=` of a word, as mod_wsgi's
//!   `key=value` option parser allows: `display-name='%{GROUP}'` gives
//!   `display-name=%{GROUP}`, `key='v a l'` gives `key=v a l`. Anywhere else a
//!   quote is an ordinary character (`/srv/bob's` stays as written), as in Apache.
//! - Inside quotes, a backslash escapes the quote character or a backslash;
//!   outside quotes, `\\` gives one backslash. Other backslashes are kept.
//! - Apache joins `\`-newline continuations before a module sees the line; a
//!   stray backslash-newline is still treated as whitespace here.
//! - An unterminated quote is an error naming the word.

use super::error::ConfigError;

/// Apache's `apr_isspace`.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Length in chars of a backslash-newline continuation starting at `i`, if any.
fn continuation_len(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i) != Some(&'\\') {
        return None;
    }
    match (chars.get(i + 1), chars.get(i + 2)) {
        (Some('\n'), _) => Some(2),
        (Some('\r'), Some('\n')) => Some(3),
        _ => None,
    }
}

/// Splits `raw` into words; `directive` is used for error messages.
pub fn tokenize(directive: &str, raw: &str) -> Result<Vec<String>, ConfigError> {
    let chars: Vec<char> = raw.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut i = 0;

    loop {
        // Skip separators, including stray continuations.
        while i < n {
            if is_space(chars[i]) {
                i += 1;
            } else if let Some(len) = continuation_len(&chars, i) {
                i += len;
            } else {
                break;
            }
        }
        if i >= n {
            return Ok(words);
        }

        let start = i;
        let mut word = String::new();
        // True right after the first unquoted '=' of the word was copied.
        let mut just_after_first_eq = false;
        let mut seen_eq = false;

        while i < n {
            let c = chars[i];
            if is_space(c) || continuation_len(&chars, i).is_some() {
                break;
            }
            let may_open_quote = i == start || just_after_first_eq;
            just_after_first_eq = false;

            if (c == '"' || c == '\'') && may_open_quote {
                let quote = c;
                i += 1;
                let mut closed = false;
                while i < n {
                    let q = chars[i];
                    if q == quote {
                        closed = true;
                        i += 1;
                        break;
                    }
                    if let Some(len) = continuation_len(&chars, i) {
                        word.push(' ');
                        i += len;
                        continue;
                    }
                    if q == '\\'
                        && matches!(chars.get(i + 1), Some(&next) if next == quote || next == '\\')
                    {
                        word.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    word.push(q);
                    i += 1;
                }
                if !closed {
                    let token: String = chars[start..].iter().collect();
                    let kind = if quote == '"' { "double" } else { "single" };
                    return Err(ConfigError::at(
                        directive,
                        "argument",
                        token.trim_end(),
                        format!("unterminated {kind} quote (missing closing {quote})"),
                    ));
                }
                continue;
            }

            if c == '\\' && chars.get(i + 1) == Some(&'\\') {
                word.push('\\');
                i += 2;
                continue;
            }
            if c == '=' && !seen_eq {
                seen_eq = true;
                just_after_first_eq = true;
            }
            word.push(c);
            i += 1;
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(raw: &str) -> Vec<String> {
        tokenize("WSGITest", raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    #[test]
    fn splitting_and_quoting_cases() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   \t ", &[]),
            ("a", &["a"]),
            ("  a   b\tc  ", &["a", "b", "c"]),
            ("a\nb\r\nc", &["a", "b", "c"]),
            ("\"a b\" c", &["a b", "c"]),
            ("'a b' c", &["a b", "c"]),
            ("\"\"", &[""]),
            ("x '' y", &["x", "", "y"]),
            ("display-name='%{GROUP}'", &["display-name=%{GROUP}"]),
            ("lang='de_DE.UTF-8'", &["lang=de_DE.UTF-8"]),
            ("key='v a l' next", &["key=v a l", "next"]),
            ("key=\"v a l\"", &["key=v a l"]),
            // Only the first '=' may open a quote; elsewhere quotes are literal.
            ("a=b='c'", &["a=b='c'"]),
            ("/srv/bob's/app.wsgi", &["/srv/bob's/app.wsgi"]),
            ("it\"s", &["it\"s"]),
            // Escapes inside quotes.
            (r#""say \"hi\"""#, &["say \"hi\""]),
            (r"'it\'s'", &["it's"]),
            (r#"'a\\b'"#, &[r"a\b"]),
            (r#""a\b""#, &[r"a\b"]),
            // Outside quotes only a double backslash collapses.
            (r"a\\b", &[r"a\b"]),
            (r"a\b", &[r"a\b"]),
            // A quoted segment followed by more characters stays one word.
            ("'ab'cd", &["abcd"]),
            // Stray continuations are whitespace.
            ("a \\\n b", &["a", "b"]),
            ("a\\\nb", &["a", "b"]),
            ("a \\\r\n b", &["a", "b"]),
            ("'x\\\ny'", &["x y"]),
            // Unicode passes through.
            ("name=\"Grüße\"", &["name=Grüße"]),
        ];
        for (raw, expected) in cases {
            assert_eq!(words(raw), *expected, "input {raw:?}");
        }
    }

    #[test]
    fn guide_long_form_words() {
        let raw = "webware \\\n    user=www-data group=www-data \\\n    threads=15 \
                   display-name='%{GROUP}' lang='de_DE.UTF-8'";
        assert_eq!(
            words(raw),
            [
                "webware",
                "user=www-data",
                "group=www-data",
                "threads=15",
                "display-name=%{GROUP}",
                "lang=de_DE.UTF-8"
            ]
        );
    }

    #[test]
    fn unterminated_quotes_are_errors_naming_the_word() {
        let cases: &[(&str, &str, &str)] = &[
            ("a 'b c", "'b c", "single"),
            ("\"abc", "\"abc", "double"),
            ("display-name='%{GROUP}", "display-name='%{GROUP}", "single"),
            ("x 'it\\'", "'it\\'", "single"),
        ];
        for (raw, token, kind) in cases {
            let e = tokenize("WSGIDaemonProcess", raw).unwrap_err();
            assert_eq!(e.directive, "WSGIDaemonProcess");
            assert_eq!(e.token.as_deref(), Some(*token), "input {raw:?}");
            assert!(e.message.contains(kind), "{e}");
            assert!(
                e.to_string().starts_with("WSGIDaemonProcess: argument '"),
                "{e}"
            );
        }
    }
}
