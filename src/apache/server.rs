//! `server_rec`: the main server and virtual hosts.

use crate::apache::pool::cstr_to_string;
use crate::ffi;

/// A borrowed server record (main server or a virtual host).
#[derive(Clone, Copy)]
pub struct Server(*mut ffi::server_rec);

impl Server {
    /// # Safety
    /// `raw` must be a server record of the current configuration generation.
    pub unsafe fn from_raw(raw: *mut ffi::server_rec) -> Option<Server> {
        (!raw.is_null()).then_some(Server(raw))
    }

    pub fn as_ptr(self) -> *mut ffi::server_rec {
        self.0
    }

    fn rec<'a>(self) -> &'a ffi::server_rec {
        // SAFETY: non-null and live for the generation (from_raw contract).
        unsafe { &*self.0 }
    }

    pub fn hostname(&self) -> String {
        cstr_to_string(self.rec().server_hostname).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.rec().port
    }

    /// The next virtual host in Apache's list (the main server comes first).
    pub fn next(&self) -> Option<Server> {
        // SAFETY: `next` is null or another live server record of this generation.
        unsafe { Server::from_raw(self.rec().next) }
    }

    /// This module's per-server config slot.
    ///
    /// # Safety
    /// `module` must be the module whose slot holds a `T` created by its server-config
    /// callbacks.
    pub unsafe fn module_config<T>(self, module: *const ffi::module) -> Option<&'static T> {
        // SAFETY: caller guarantees the slot type; Apache keeps the vector for the
        // generation, and shared access is all this gives.
        unsafe {
            ffi::ap_get_module_config(self.rec().module_config, module)
                .cast::<T>()
                .as_ref()
        }
    }

    /// This module's per-server config slot, to change while the configuration is read.
    ///
    /// # Safety
    /// As [`Server::module_config`]; and only while Apache reads the configuration (one
    /// thread, no request running, no other reference to the slot alive), with the
    /// reference dropped before the directive callback returns.
    pub unsafe fn module_config_mut<T>(self, module: *const ffi::module) -> Option<&'static mut T> {
        // SAFETY: as above; exclusivity is the caller's promise.
        unsafe {
            ffi::ap_get_module_config(self.rec().module_config, module)
                .cast::<T>()
                .as_mut()
        }
    }

    /// This server's `LogLevel` for the module with Apache index `module_index` (its
    /// `LogLevel module:level` if given, else the server's own), as an APLOG_* number.
    pub fn module_log_level(self, module_index: i32) -> i32 {
        // SAFETY: a live server record (from_raw contract); Apache only reads its log
        // configuration.
        unsafe { ffi::ap_get_server_module_loglevel(self.rec(), module_index) }
    }

    /// The main server and every virtual host.
    pub fn iter(self) -> impl Iterator<Item = Server> {
        std::iter::successors(Some(self), |s| s.next())
    }
}

/// The uid and gid Apache's children run as (`User` / `Group`).
pub fn child_user() -> (u32, u32) {
    // SAFETY: ap_unixd_config is filled by mod_unixd while reading the config; reading two
    // integers from it is fine at any later point.
    unsafe { (ffi::ap_unixd_config.user_id, ffi::ap_unixd_config.group_id) }
}
