//! WSGIHandlerScript: requests whose Apache handler (`SetHandler`, `AddHandler`,
//! `RewriteRule ... [H=name]`) is a registered name run that script's `handle_request`;
//! and WSGIRestrictProcess, which limits the process groups a request may select.

use crate::apache::log::{self, Level};
use crate::apache::request::Request;
use crate::config::{DirConfig, HandlerScript};

/// The WSGIHandlerScript this request's handler names, if any. Apache handler names are
/// compared without case, as mod_mime and the core store them lowercased.
pub fn selected<'d>(r: &Request<'_>, dir: &'d DirConfig) -> Option<&'d HandlerScript> {
    let handler = r.handler()?;
    dir.handler_scripts
        .as_deref()?
        .iter()
        .find(|h| h.name.as_bytes().eq_ignore_ascii_case(handler))
}

/// The handler script's file, ServerRoot-relative when written relative.
pub fn script_path(r: &Request<'_>, handler: &HandlerScript) -> String {
    r.pool().absolute_or_server_root(&handler.script)
}

/// WSGIRestrictProcess refused the request (403): logs the group (`""` = embedded mode)
/// and the groups `allowed`.
pub fn log_restricted(r: &Request<'_>, group: &str, allowed: &[String], script: &str) {
    let shown = if group.is_empty() {
        "%{GLOBAL} (embedded mode)"
    } else {
        group
    };
    log::request(
        r,
        Level::Error,
        &format!(
            "RW0115: mod_rwsgi: daemon process group '{shown}' may not be used by '{script}': \
             WSGIRestrictProcess allows only {}",
            allowed
                .iter()
                .map(|g| if g.is_empty() {
                    "%{GLOBAL}"
                } else {
                    g.as_str()
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
}
