//! Apache's access control phases: registering authentication (`authn`) and authorisation
//! (`authz`) providers and an access_checker hook, and the request facts those phases use
//! (the authenticated user, the client's host, a cut-down CGI environment).

use std::ffi::{CStr, c_void};
use std::os::raw::c_char;

use crate::apache::pool::Pool;
use crate::apache::request::Request;
use crate::ffi;

/// Registers an authentication provider (`AuthBasicProvider NAME`, `AuthDigestProvider
/// NAME`), checked once per configuration section as Apache 2.4 recommends.
pub fn register_authn_provider(
    pool: Pool,
    name: &'static CStr,
    provider: &'static ffi::authn_provider,
) {
    // SAFETY: the group, name and version are static C strings and the provider a static
    // table of function pointers: Apache keeps the pointers for the server's life.
    unsafe {
        ffi::ap_register_auth_provider(
            pool.as_ptr(),
            c"authn".as_ptr(),
            name.as_ptr(),
            c"0".as_ptr(),
            std::ptr::from_ref(provider).cast::<c_void>(),
            ffi::AP_AUTH_INTERNAL_PER_CONF,
        );
    }
}

/// Registers an authorisation provider (`Require NAME ...`).
pub fn register_authz_provider(
    pool: Pool,
    name: &'static CStr,
    provider: &'static ffi::authz_provider,
) {
    // SAFETY: as in register_authn_provider.
    unsafe {
        ffi::ap_register_auth_provider(
            pool.as_ptr(),
            c"authz".as_ptr(),
            name.as_ptr(),
            c"0".as_ptr(),
            std::ptr::from_ref(provider).cast::<c_void>(),
            ffi::AP_AUTH_INTERNAL_PER_CONF,
        );
    }
}

/// The access control facts of a request.
pub trait AuthRequest {
    /// `r->user`: the authenticated user, if any.
    fn user(&self) -> Option<&[u8]>;
    /// Replaces `r->user` (an authentication provider naming the user differently).
    fn set_user(&mut self, user: &[u8]);
    /// The client's host name if Apache knows it (HostnameLookups), else its address.
    fn remote_host(&self) -> Option<&[u8]>;
    /// The environment mod_wsgi gives its access and authentication scripts: request
    /// headers as HTTP_* (never Authorization or Proxy-Authorization), the server, client
    /// and request line variables, SCRIPT_NAME and PATH_INFO; no SetEnv values.
    fn auth_environ(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
}

fn cbytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        None
    } else {
        // SAFETY: strings Apache hands out here are NUL-terminated and live in the request,
        // connection or server pool, all of which outlive the request borrow 'a.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// `Content-Type` → CONTENT_TYPE, `X-Foo` → HTTP_X_FOO; None for headers Apache's own CGI
/// environment leaves out (Authorization, and names with characters other than letters,
/// digits and '-', such as '_').
fn header_env_name(name: &[u8]) -> Option<Vec<u8>> {
    if name.eq_ignore_ascii_case(b"Content-Type") {
        return Some(b"CONTENT_TYPE".to_vec());
    }
    if name.eq_ignore_ascii_case(b"Content-Length") {
        return Some(b"CONTENT_LENGTH".to_vec());
    }
    if name.eq_ignore_ascii_case(b"Authorization")
        || name.eq_ignore_ascii_case(b"Proxy-Authorization")
        || name.is_empty()
        || !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    {
        return None;
    }
    let mut env = b"HTTP_".to_vec();
    env.extend(name.iter().map(|b| match b {
        b'-' => b'_',
        b => b.to_ascii_uppercase(),
    }));
    Some(env)
}

impl AuthRequest for Request<'_> {
    fn user(&self) -> Option<&[u8]> {
        // SAFETY: the request is live (Request's contract); `user` is a pool string or null.
        cbytes(unsafe { (*self.as_ptr()).user })
    }

    fn set_user(&mut self, user: &[u8]) {
        let copy = self.pool().c_bytes(user);
        // SAFETY: the request is live and ours during the hook; the string lives in its pool.
        unsafe { (*self.as_mut_ptr()).user = copy.cast_mut() };
    }

    fn remote_host(&self) -> Option<&[u8]> {
        let r = self.as_ptr();
        // SAFETY: the request and its connection are live; ap_get_remote_host returns a
        // connection-pool string (or null) and only reads the per-dir config.
        unsafe {
            let host = ffi::ap_get_remote_host(
                (*r).connection,
                (*r).per_dir_config.cast(),
                ffi::REMOTE_HOST,
                std::ptr::null_mut(),
            );
            cbytes(host).or_else(|| cbytes((*r).useragent_ip))
        }
    }

    fn auth_environ(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let r = self.as_ptr().cast_mut();
        let mut env: Vec<(Vec<u8>, Vec<u8>)> = self
            .headers_in()
            .into_iter()
            .filter_map(|(k, v)| Some((header_env_name(k)?, v.to_vec())))
            .collect();
        let mut add = |k: &[u8], v: Option<&[u8]>| {
            if let Some(v) = v {
                env.push((k.to_vec(), v.to_vec()));
            }
        };
        // SAFETY: the request, its connection and server are live during the hook; each
        // call returns a NUL-terminated string from a live pool or static memory (or null),
        // read at once.
        unsafe {
            let c = (*r).connection;
            let s = (*r).server;
            add(b"SERVER_SOFTWARE", cbytes(ffi::ap_get_server_banner()));
            add(b"SERVER_NAME", cbytes(ffi::ap_get_server_name(r)));
            add(b"SERVER_ADDR", c.as_ref().and_then(|c| cbytes(c.local_ip)));
            let port = ffi::ap_get_server_port(r).to_string();
            add(b"SERVER_PORT", Some(port.as_bytes()));
            let host = ffi::ap_get_remote_host(
                c,
                (*r).per_dir_config.cast(),
                ffi::REMOTE_HOST,
                std::ptr::null_mut(),
            );
            add(b"REMOTE_HOST", cbytes(host));
            add(b"REMOTE_ADDR", cbytes((*r).useragent_ip));
            add(b"DOCUMENT_ROOT", cbytes(ffi::ap_document_root(r)));
            add(
                b"SERVER_ADMIN",
                s.as_ref().and_then(|s| cbytes(s.server_admin)),
            );
            let client_port = c
                .as_ref()
                .and_then(|c| c.client_addr.as_ref())
                .map(|a| a.port.to_string());
            add(b"REMOTE_PORT", client_port.as_deref().map(str::as_bytes));
        }
        add(b"SERVER_PROTOCOL", Some(self.protocol()));
        add(b"REQUEST_METHOD", Some(self.method()));
        add(b"QUERY_STRING", Some(self.args().unwrap_or(b"")));
        add(b"REQUEST_URI", Some(self.unparsed_uri()));
        let uri = self.uri();
        let path_info = self.path_info().unwrap_or(b"");
        let script_name = if path_info.is_empty() || !uri.ends_with(path_info) {
            uri
        } else {
            &uri[..uri.len() - path_info.len()]
        };
        add(b"SCRIPT_NAME", Some(script_name));
        add(
            b"PATH_INFO",
            Some(if script_name.len() == uri.len() {
                b""
            } else {
                path_info
            }),
        );
        env
    }
}

#[cfg(test)]
mod tests {
    use super::header_env_name;

    #[test]
    fn header_names_become_cgi_names_and_credentials_stay_out() {
        assert_eq!(header_env_name(b"user-agent").unwrap(), b"HTTP_USER_AGENT");
        assert_eq!(header_env_name(b"Content-Type").unwrap(), b"CONTENT_TYPE");
        assert_eq!(
            header_env_name(b"content-length").unwrap(),
            b"CONTENT_LENGTH"
        );
        assert!(header_env_name(b"Authorization").is_none());
        assert!(header_env_name(b"proxy-authorization").is_none());
        assert!(header_env_name(b"X_Forwarded").is_none());
    }
}
