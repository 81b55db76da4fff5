//! The config fuzz harness, shared by `fuzz/fuzz_targets/config.rs` (which includes this file
//! by path) and the unit tests below, which replay every committed seed in
//! `fuzz/seeds/config/`, so `cargo test` checks them exactly as fuzzed.
//!
//! Input layout: byte 0 picks a directive of [`DIRECTIVES`] (modulo their count); the rest,
//! read as UTF-8 (invalid sequences replaced), is that directive's argument string.
//!
//! Checked properties (any failure panics, which the fuzzer reports):
//! - no panic, whatever the input;
//! - the tokenizer round-trips: its words, each double-quoted with `"` and `\` escaped,
//!   tokenize to the same words;
//! - every error (tokenizer or directive) has a message that names the directive;
//! - a parsed directive is the one asked for.

#![allow(dead_code)]

use crate::config::{DIRECTIVES, parse_directive, tokenize};

/// A word quoted so that [`tokenize`] gives it back unchanged.
pub fn quote_word(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Runs every check on one fuzz input. Panics if a property does not hold.
pub fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let info = &DIRECTIVES[usize::from(selector) % DIRECTIVES.len()];
    let raw = String::from_utf8_lossy(rest);
    match tokenize(info.name, &raw) {
        Ok(words) => {
            let quoted: Vec<String> = words.iter().map(|w| quote_word(w)).collect();
            let again = tokenize(info.name, &quoted.join(" "))
                .unwrap_or_else(|e| panic!("re-quoted words {quoted:?} do not tokenize: {e}"));
            assert_eq!(again, words, "tokenizing {raw:?} does not round-trip");
        }
        Err(e) => assert_names(info.name, &e.to_string()),
    }
    match parse_directive(info.name, &raw) {
        Ok(directive) => assert_eq!(directive.directive_name(), info.name, "for {raw:?}"),
        Err(e) => assert_names(info.name, &e.to_string()),
    }
}

fn assert_names(directive: &str, message: &str) {
    assert!(
        message.starts_with(directive) && message.len() > directive.len() + 2,
        "error message {message:?} does not name {directive}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/config")
    }

    fn index_of(name: &str) -> u8 {
        DIRECTIVES.iter().position(|d| d.name == name).unwrap() as u8
    }

    /// The seed files: (file name, directive, argument string).
    fn seeds() -> Vec<(&'static str, &'static str, &'static str)> {
        vec![
            (
                "daemon_long",
                "WSGIDaemonProcess",
                "site processes=2 threads=15 user=www-data group=www-data \
                 display-name='%{GROUP}' python-home=/srv/venv \
                 python-path=/srv/app:/srv/lib lang='en_US.UTF-8' socket-timeout=60 \
                 request-timeout=30 maximum-requests=1000",
            ),
            (
                "daemon_bad_option",
                "WSGIDaemonProcess",
                "site threads=zero bogus=1",
            ),
            (
                "daemon_quotes",
                "WSGIDaemonProcess",
                "\"a b\" home='/x y' \\\\ \"\"",
            ),
            (
                "script_alias",
                "WSGIScriptAlias",
                "/app /srv/app.wsgi process-group=site application-group=%{GLOBAL} \
                 pass-authorization=On",
            ),
            (
                "script_alias_match",
                "WSGIScriptAliasMatch",
                "^/([^/]+) /srv/$1.wsgi",
            ),
            ("process_group_env", "WSGIProcessGroup", "%{ENV:GROUP}"),
            ("application_group", "WSGIApplicationGroup", "%{RESOURCE}"),
            (
                "trusted_proxies",
                "WSGITrustedProxies",
                "127.0.0.1 10.0.0.0/8 192.168.1.0/255.255.255.0 ::1 2001:db8::/32",
            ),
            (
                "trusted_proxy_headers",
                "WSGITrustedProxyHeaders",
                "X-Forwarded-For x-forwarded-proto X-Real-IP",
            ),
            ("flag_on", "WSGIPassAuthorization", "On"),
            ("flag_bad", "WSGIChunkedRequest", "maybe"),
            (
                "unterminated_quote",
                "WSGIDaemonProcess",
                "site home='/never closed",
            ),
            (
                "continuation",
                "WSGIDaemonProcess",
                "site \\\n threads=2 \\\r\n processes=1",
            ),
            (
                "control_chars",
                "WSGISocketPrefix",
                "run/\u{1}\u{7f}wsgi\t\u{b}",
            ),
            (
                "non_ascii",
                "WSGIDaemonProcess",
                "sité user=\u{e9}\u{20ac} home=/ü",
            ),
            ("empty", "WSGIImportScript", ""),
        ]
    }

    fn seed_bytes(directive: &str, args: &str) -> Vec<u8> {
        let mut data = vec![index_of(directive)];
        data.extend_from_slice(args.as_bytes());
        data
    }

    #[test]
    fn seeds_pass_the_harness() {
        for (name, directive, args) in seeds() {
            let data = seed_bytes(directive, args);
            check(&data);
            assert!(data.len() < 512, "seed {name} is too big");
        }
    }

    /// Every committed seed file (and any crash input added there once fixed) still passes.
    #[test]
    fn committed_seeds_replay() {
        let mut count = 0;
        for entry in std::fs::read_dir(seed_dir()).expect("fuzz/seeds/config exists") {
            let path = entry.unwrap().path();
            check(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count >= seeds().len(), "only {count} seed files");
    }

    /// Writes the seeds to `fuzz/seeds/config/`:
    /// `cargo test write_config_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes files; run by hand when the seeds change"]
    fn write_config_fuzz_seeds() {
        let dir = seed_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (name, directive, args) in seeds() {
            std::fs::write(dir.join(format!("{name}.bin")), seed_bytes(directive, args)).unwrap();
        }
    }

    #[test]
    fn quoting_round_trips_awkward_words() {
        for word in [
            "", "a b", "\"", "'", "\\", "a\\\"b", "x=\"y\"", "\n", "\\\n", "é€",
        ] {
            let quoted = quote_word(word);
            assert_eq!(
                tokenize("WSGIFuzz", &quoted).unwrap(),
                vec![word.to_string()],
                "{quoted:?}"
            );
        }
    }

    #[test]
    fn harness_handles_degenerate_inputs() {
        for data in [&[][..], &[0], &[255], &[7, 0xff, 0xfe], &[3, b'"']] {
            check(data);
        }
    }
}
