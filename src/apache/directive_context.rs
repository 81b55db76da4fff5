//! The context of one configuration directive being processed (`cmd_parms`).

use std::os::raw::c_char;

use crate::apache::pool::{Pool, cstr_to_string};
use crate::apache::virtual_host::VirtualHost;
use crate::ffi;

/// Where a directive may appear, in Apache's terms (`ap_check_cmd_context` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forbid {
    /// Main server config only (GLOBAL_ONLY).
    AllButMainServer,
    /// Server or virtual host, not in `<Directory>`/`<Location>`/`<Files>` or .htaccess.
    DirectoryAndHtaccess,
    /// Anywhere but .htaccess.
    Htaccess,
    /// Anywhere.
    Nothing,
    /// Only in `<Directory>`/`<Location>`/`<Files>` and .htaccess (authentication hooks).
    ServerAndHtaccessAllowed,
}

/// A borrowed `cmd_parms` for the duration of one directive callback: which directive is
/// being read, where, for which server, in which section (the parsed directive itself is
/// `config::Directive`).
pub struct DirectiveContext<'a> {
    raw: &'a mut ffi::cmd_parms,
}

impl<'a> DirectiveContext<'a> {
    /// # Safety
    /// `raw` must be the `cmd_parms` Apache passed to the running directive callback.
    pub unsafe fn from_raw(raw: *mut ffi::cmd_parms) -> Option<DirectiveContext<'a>> {
        // SAFETY: non-null pointers from Apache are valid and exclusive during the callback.
        unsafe { raw.as_mut() }.map(|raw| DirectiveContext { raw })
    }

    /// The directive's name as registered in the command table.
    pub fn name(&self) -> String {
        // SAFETY: `cmd` points at our own static command table during the callback.
        let cmd = unsafe { self.raw.cmd.as_ref() };
        // SAFETY: null or a NUL-terminated string Apache keeps for at least this call.
        cmd.and_then(|c| unsafe { cstr_to_string(c.name) })
            .unwrap_or_default()
    }

    /// "file:line" of the directive, for messages that are reported after parsing.
    pub fn location(&self) -> String {
        // SAFETY: `directive` is the config tree node being processed, or null.
        match unsafe { self.raw.directive.as_ref() } {
            Some(d) => format!(
                "{}:{}",
                // SAFETY: null or a NUL-terminated string Apache keeps for at least this call.
                unsafe { cstr_to_string(d.filename) }.unwrap_or_else(|| "?".into()),
                d.line_num
            ),
            None => "?".into(),
        }
    }

    pub fn pool(&self) -> Pool {
        // SAFETY: cmd->pool is the configuration pool, live for the whole generation.
        unsafe { Pool::from_raw(self.raw.pool) }.expect("cmd_parms without a pool")
    }

    /// The server (main server or virtual host) the directive configures.
    pub fn server(&self) -> Option<VirtualHost> {
        // SAFETY: cmd->server is the server record being configured, of this generation.
        unsafe { VirtualHost::from_raw(self.raw.server) }
    }

    /// The path of the enclosing `<Directory>`/`<Location>`/`<Files>` section (or of the
    /// .htaccess directory); None at server level.
    pub fn section_path(&self) -> Option<String> {
        // SAFETY: null or a NUL-terminated string Apache keeps for at least this call.
        unsafe { cstr_to_string(self.raw.path) }
    }

    /// Apache's own context check; `Err` carries Apache's message ("... cannot occur within
    /// <Directory> section").
    pub fn check_context(&mut self, forbid: Forbid) -> Result<(), String> {
        let flags = match forbid {
            Forbid::AllButMainServer => ffi::GLOBAL_ONLY,
            Forbid::DirectoryAndHtaccess => ffi::NOT_IN_DIR_CONTEXT | ffi::NOT_IN_HTACCESS,
            Forbid::Htaccess => ffi::NOT_IN_HTACCESS,
            Forbid::ServerAndHtaccessAllowed => {
                // SAFETY: `path` is non-null exactly inside a directory-type section or
                // .htaccess.
                if self.raw.path.is_null() {
                    return Err(format!(
                        "{} is only allowed in <Directory>, <Location>, <Files> or .htaccess",
                        self.name()
                    ));
                }
                return Ok(());
            }
            Forbid::Nothing => return Ok(()),
        };
        // SAFETY: `raw` is the live cmd_parms of this callback; the returned message, if
        // any, is a pool string.
        let err = unsafe { ffi::ap_check_cmd_context(self.raw, flags as u32) };
        // SAFETY: null or a NUL-terminated string Apache keeps for at least this call.
        match unsafe { cstr_to_string(err) } {
            Some(msg) => Err(msg),
            None => Ok(()),
        }
    }

    /// Does the context allow a directive of override class `bits` (`OR_FILEINFO`,
    /// `OR_AUTHCFG`)? Always in the server configuration; in .htaccess as `AllowOverride`
    /// or `AllowOverrideList` say, which Apache checks only against the command table's
    /// flags (one set for every mod_wsgi directive).
    pub fn allows_override(&self, bits: i32) -> bool {
        if self.raw.override_ & bits != 0 {
            return true;
        }
        let name = self.pool().c_string(&self.name());
        // SAFETY: override_list is Apache's live table for this context (or null, which
        // apr_table_get does not accept: checked first); the key is a pool C string.
        !self.raw.override_list.is_null()
            && !unsafe { ffi::apr_table_get(self.raw.override_list, name) }.is_null()
    }

    /// The directives inside the section being processed (its config tree children), in
    /// order: (name, raw arguments, "file:line", whether it is itself a section).
    pub fn children(&self) -> Vec<(String, String, String, bool)> {
        let mut out = Vec::new();
        // SAFETY: `directive` is the config tree node being processed, or null; its
        // children are nodes of the same tree, live for the whole configuration read.
        let mut child =
            unsafe { self.raw.directive.as_ref() }.map_or(std::ptr::null_mut(), |d| d.first_child);
        // SAFETY: each node is a live tree node (see above); strings are null or
        // NUL-terminated pool strings.
        while let Some(node) = unsafe { child.as_ref() } {
            // SAFETY: as above.
            let (name, args, file) = unsafe {
                (
                    cstr_to_string(node.directive).unwrap_or_default(),
                    cstr_to_string(node.args).unwrap_or_default(),
                    cstr_to_string(node.filename).unwrap_or_else(|| "?".into()),
                )
            };
            out.push((
                name.clone(),
                args,
                format!("{file}:{}", node.line_num),
                !node.first_child.is_null() || name.starts_with('<'),
            ));
            child = node.next;
        }
        out
    }

    /// An error message for Apache, allocated in the configuration pool so it outlives
    /// the callback.
    pub fn error(&self, msg: &str) -> *const c_char {
        self.pool().c_string(msg)
    }
}
