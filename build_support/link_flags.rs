//! The link flags of a Python's sysconfig `LIBS`, `SYSLIBS` and `MODLIBS` (used by build.rs
//! for the daemon host's static libpython, unit-tested by tests/packaging.rs).
//!
//! Those values are Makefile text, not an argument list: Debian's Python 3.14 has
//! `MODLIBS = '-lm ... -lexpat \ \ \ \ \       -lz'` (the backslashes of line continuations
//! in Modules/Setup) and 3.13 a relative `Modules/_hacl/libHacl_Hash_SHA2.a` of CPython's
//! build tree. Split on whitespace, both reach the linker as file names it cannot find.

/// The words of `text` split as a POSIX shell splits them (blanks separate words; quotes
/// and backslashes escape; a backslash before a blank makes the blank part of the word).
pub fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                in_word = true;
                match chars.next() {
                    // A backslash-newline is a line continuation: nothing.
                    Some('\n') => {}
                    Some(next) => word.push(next),
                    None => word.push('\\'),
                }
            }
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => word.push(e),
                            Some('\n') => {}
                            Some(e) => {
                                word.push('\\');
                                word.push(e);
                            }
                            None => word.push('\\'),
                        },
                        _ => word.push(q),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Whether `word` is a link flag `cc` takes for the libraries of a program: `-l...`,
/// `-L...`, `-Wl,...`, `-pthread`, or an absolute path of an archive or shared library.
fn is_link_flag(word: &str) -> bool {
    let absolute_library = word.starts_with('/')
        && (word.ends_with(".a") || word.ends_with(".so") || word.contains(".so."));
    (word.len() > 2 && (word.starts_with("-l") || word.starts_with("-L")))
        || (word.len() > 4 && word.starts_with("-Wl,"))
        || word == "-pthread"
        || absolute_library
}

/// The link flags of `text` (sysconfig's LIBS, SYSLIBS and MODLIBS joined by blanks), each
/// once, in their first order (MODLIBS repeats its libraries), and the words left out
/// (anything else: blanks escaped by the continuation backslashes, paths relative to
/// CPython's build tree).
pub fn python_link_libs(text: &str) -> (Vec<String>, Vec<String>) {
    let mut flags: Vec<String> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    for word in shell_words(text) {
        if is_link_flag(&word) {
            if !flags.contains(&word) {
                flags.push(word);
            }
        } else if !word.trim().is_empty() {
            dropped.push(word);
        }
    }
    (flags, dropped)
}
