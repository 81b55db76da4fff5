//! `server_rec`: the main server and the virtual hosts. Apache calls each a "server"; here it
//! is a `VirtualHost` (the main server being the default host), so the name does not clash
//! with a daemon's serving loop.

use crate::apache::pool::cstr_to_string;
use crate::ffi;

/// A borrowed server record: the main server or one `<VirtualHost>`.
#[derive(Clone, Copy)]
pub struct VirtualHost(*mut ffi::server_rec);

impl VirtualHost {
    /// # Safety
    /// `raw` must be a server record of the current configuration generation.
    pub unsafe fn from_raw(raw: *mut ffi::server_rec) -> Option<VirtualHost> {
        (!raw.is_null()).then_some(VirtualHost(raw))
    }

    /// The main server of the configuration being read or served (`ap_server_conf`); None
    /// before Apache has read any configuration.
    pub fn main() -> Option<VirtualHost> {
        // SAFETY: Apache sets ap_server_conf to the main server right after building the
        // config tree, before any directive of ours runs, and moves it to the new main
        // server on each restart; it is null before that.
        unsafe { VirtualHost::from_raw(ffi::ap_server_conf) }
    }

    pub fn as_ptr(self) -> *mut ffi::server_rec {
        self.0
    }

    /// Whether this is the main server (not a `<VirtualHost>`).
    pub fn is_main(self) -> bool {
        VirtualHost::main().is_some_and(|m| m.0 == self.0)
    }

    /// Apache's `Timeout` for this server; None if Apache holds a negative one.
    pub fn timeout(self) -> Option<std::time::Duration> {
        // apr_interval_time_t is in microseconds.
        u64::try_from(self.rec().timeout)
            .ok()
            .map(std::time::Duration::from_micros)
    }

    /// The `process_rec` of the Apache process this server belongs to.
    pub(crate) fn process(self) -> *const ffi::process_rec {
        self.rec().process
    }

    fn rec<'a>(self) -> &'a ffi::server_rec {
        // SAFETY: non-null and live for the generation (from_raw contract).
        unsafe { &*self.0 }
    }

    pub fn hostname(&self) -> String {
        // SAFETY: null or a NUL-terminated string Apache keeps for at least this call.
        unsafe { cstr_to_string(self.rec().server_hostname) }.unwrap_or_default()
    }

    /// The next virtual host in Apache's list (the main server comes first).
    pub fn next(&self) -> Option<VirtualHost> {
        // SAFETY: `next` is null or another live server record of this generation.
        unsafe { VirtualHost::from_raw(self.rec().next) }
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
    /// As [`VirtualHost::module_config`]; and only while Apache reads the configuration (one
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
    pub fn iter(self) -> impl Iterator<Item = VirtualHost> {
        std::iter::successors(Some(self), |s| s.next())
    }
}
