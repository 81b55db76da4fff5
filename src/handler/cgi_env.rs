//! The CGI/WSGI environment of a request, as byte pairs: Apache's common variables
//! (HTTP_*, SERVER_*, REMOTE_*, SetEnv ...) plus the request line, SCRIPT_NAME/PATH_INFO
//! split as mod_wsgi does, and Authorization only when allowed.

/// Collapses runs of '/' into one, as mod_wsgi does for SCRIPT_NAME and PATH_INFO.
pub fn collapse_slashes(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    out
}

/// Splits a request URI for a script mounted at `mount` (a WSGIScriptAlias URL, with its
/// trailing slash ignored). Returns (SCRIPT_NAME, PATH_INFO) or None when `uri` is not
/// under `mount`. The root mount gives SCRIPT_NAME "" and the whole URI as PATH_INFO.
pub fn split_mount(mount: &[u8], uri: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mount = collapse_slashes(mount);
    let mount = mount.strip_suffix(b"/").unwrap_or(&mount);
    let uri = collapse_slashes(uri);
    if !uri.starts_with(mount) {
        return None;
    }
    let rest = &uri[mount.len()..];
    if !rest.is_empty() && rest[0] != b'/' {
        return None; // "/app" must not match "/application"
    }
    Some((mount.to_vec(), rest.to_vec()))
}

/// SCRIPT_NAME for a request routed by handler (SetHandler/AddHandler): the URI without
/// its PATH_INFO tail.
pub fn script_name_from(uri: &[u8], path_info: &[u8]) -> Vec<u8> {
    let uri = collapse_slashes(uri);
    let script = match uri.strip_suffix(path_info) {
        Some(s) if !path_info.is_empty() => s,
        _ => &uri,
    };
    script.to_vec()
}

/// `n` in decimal, written into `buf` (no allocation): `mod_wsgi.listener_port`.
pub fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// Environment variables Apache adds that a WSGI app must not see.
pub fn is_hidden(key: &[u8]) -> bool {
    matches!(
        key,
        b"PATH" | b"HTTP_PROXY" | b"HTTP_AUTHORIZATION" | b"HTTP_PROXY_AUTHORIZATION"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_mount_gives_empty_script_name() {
        assert_eq!(
            split_mount(b"/", b"/foo/bar"),
            Some((b"".to_vec(), b"/foo/bar".to_vec()))
        );
        assert_eq!(split_mount(b"/", b"/"), Some((b"".to_vec(), b"/".to_vec())));
    }

    #[test]
    fn prefix_mount_splits_at_the_prefix() {
        assert_eq!(
            split_mount(b"/app", b"/app"),
            Some((b"/app".to_vec(), b"".to_vec()))
        );
        assert_eq!(
            split_mount(b"/app", b"/app/x/y"),
            Some((b"/app".to_vec(), b"/x/y".to_vec()))
        );
        assert_eq!(
            split_mount(b"/app/", b"/app/x"),
            Some((b"/app".to_vec(), b"/x".to_vec()))
        );
        assert_eq!(split_mount(b"/app", b"/application"), None);
        assert_eq!(split_mount(b"/app", b"/other"), None);
    }

    #[test]
    fn double_slashes_collapse() {
        assert_eq!(
            split_mount(b"/app", b"//app//x"),
            Some((b"/app".to_vec(), b"/x".to_vec()))
        );
    }

    #[test]
    fn handler_mode_script_name() {
        assert_eq!(
            script_name_from(b"/s/app.wsgi/x", b"/x"),
            b"/s/app.wsgi".to_vec()
        );
        assert_eq!(
            script_name_from(b"/s/app.wsgi", b""),
            b"/s/app.wsgi".to_vec()
        );
    }

    #[test]
    fn decimal_writes_every_port() {
        for n in [0u16, 7, 10, 80, 443, 8000, 65535] {
            assert_eq!(decimal(n, &mut [0; 5]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn authorization_and_path_are_hidden() {
        assert!(is_hidden(b"HTTP_AUTHORIZATION"));
        assert!(is_hidden(b"PATH"));
        assert!(!is_hidden(b"HTTP_HOST"));
    }
}
