//! Apache's regular expressions (PCRE through `ap_regcomp`/`ap_regexec_len`): the syntax
//! mod_alias's `AliasMatch` accepts, so WSGIScriptAliasMatch patterns mean the same thing.

use std::ffi::{CString, c_char};

use crate::ffi;

/// Apache's `AP_MAX_REG_MATCH`: `$0` to `$9`.
pub const MAX_MATCH: usize = 10;

/// A compiled pattern, freed on drop.
pub struct Regex {
    inner: Box<ffi::ap_regex_t>,
}

// SAFETY: after ap_regcomp the compiled pattern is only read: ap_regexec_len takes it by
// const pointer and keeps its match data per call, which is how Apache itself shares the
// patterns of its configuration (AliasMatch, <LocationMatch>) among request threads.
// Compiling and freeing need `&mut`/ownership, so they cannot race with a match.
unsafe impl Send for Regex {}
// SAFETY: as for Send: `captures` (the only `&self` method) is safe to call concurrently.
unsafe impl Sync for Regex {}

impl Regex {
    /// Compiles `pattern` with Apache's default flags; the error is PCRE's own message.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let c_pattern =
            CString::new(pattern).map_err(|_| "the pattern contains a NUL byte".to_string())?;
        let mut inner = Box::new(ffi::ap_regex_t {
            re_pcre: std::ptr::null_mut(),
            re_nsub: 0,
            re_erroffset: 0,
        });
        // SAFETY: `inner` is a valid ap_regex_t to fill, the pattern a NUL-terminated string;
        // ap_regcomp_get_default_cflags only reads a global set at configuration time.
        let rc = unsafe {
            ffi::ap_regcomp(
                &mut *inner,
                c_pattern.as_ptr(),
                ffi::ap_regcomp_get_default_cflags(),
            )
        };
        if rc != 0 {
            let mut buf = [0 as c_char; 256];
            // SAFETY: ap_regerror writes at most buf.len() bytes, NUL-terminated, for the
            // failed compilation described by `inner`.
            unsafe { ffi::ap_regerror(rc, &*inner, buf.as_mut_ptr(), buf.len()) };
            // SAFETY: buf is NUL-terminated (zero-initialised and bounded by ap_regerror).
            let message = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(format!("{message} (at offset {})", inner.re_erroffset));
        }
        Ok(Regex { inner })
    }

    /// Matches `subject`; on a match, the spans of `$0`..`$9` (None for a group that did
    /// not take part).
    pub fn captures(&self, subject: &[u8]) -> Option<[Option<(usize, usize)>; MAX_MATCH]> {
        let mut spans = [ffi::ap_regmatch_t {
            rm_so: -1,
            rm_eo: -1,
        }; MAX_MATCH];
        // SAFETY: the pattern was compiled successfully; subject is valid for its length
        // (ap_regexec_len needs no NUL); spans has room for MAX_MATCH entries.
        let rc = unsafe {
            ffi::ap_regexec_len(
                &*self.inner,
                subject.as_ptr().cast(),
                subject.len(),
                MAX_MATCH,
                spans.as_mut_ptr(),
                0,
            )
        };
        if rc != 0 {
            return None;
        }
        Some(spans.map(|m| {
            (m.rm_so >= 0 && m.rm_eo >= m.rm_so).then_some((m.rm_so as usize, m.rm_eo as usize))
        }))
    }
}

impl Drop for Regex {
    fn drop(&mut self) {
        // SAFETY: the pattern was compiled by ap_regcomp and is freed exactly once.
        unsafe { ffi::ap_regfree(&mut *self.inner) };
    }
}

/// `template` with `$0`..`$9` replaced by the groups of `subject` (an unmatched group by
/// nothing) and `\$` by `$`, as Apache's `ap_pregsub` does for AliasMatch.
pub fn substitute(
    template: &[u8],
    subject: &[u8],
    spans: &[Option<(usize, usize)>; MAX_MATCH],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len());
    let mut i = 0;
    while i < template.len() {
        match (template[i], template.get(i + 1)) {
            (b'$', Some(d)) if d.is_ascii_digit() => {
                if let Some((start, end)) = spans[usize::from(d - b'0')] {
                    out.extend_from_slice(&subject[start..end]);
                }
                i += 2;
            }
            (b'\\', Some(&c)) if c == b'$' || c == b'&' => {
                out.push(c);
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::substitute;

    #[test]
    fn substitution_follows_ap_pregsub() {
        let subject = b"/app/one/rest";
        let mut spans = [None; 10];
        spans[0] = Some((0, 8));
        spans[1] = Some((5, 8));
        assert_eq!(
            substitute(b"/srv/$1.wsgi", subject, &spans),
            b"/srv/one.wsgi"
        );
        assert_eq!(substitute(b"/srv/$2x", subject, &spans), b"/srv/x");
        assert_eq!(substitute(b"a\\$1", subject, &spans), b"a$1");
        assert_eq!(substitute(b"cost$", subject, &spans), b"cost$");
    }
}
