//! This module's per-server configuration slot and the only ways to reach it: shared
//! (`&'static`) by hooks and request threads, exclusive only from a directive callback while
//! Apache reads its configuration. Once the MPM runs, a directive callback (one read from
//! `.htaccess` on a request thread) gets no slot: [`configuring_slot`] and [`with_global`]
//! refuse, so nothing changes a server's configuration while requests are served.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::apache::virtual_host::VirtualHost;
use crate::config::{GlobalConfig, ServerConfig};
use crate::ffi;

/// This module's record, which says where each server keeps our slot. Set by the module's
/// register_hooks (before any slot is made or read), so this file needs nothing from the
/// module definition.
static MODULE: AtomicPtr<ffi::module> = AtomicPtr::new(std::ptr::null_mut());

/// Tells the slot accessors which module record is ours.
pub(crate) fn set_module(module: *const ffi::module) {
    MODULE.store(module.cast_mut(), Ordering::Release);
}

/// Our module record, once registered.
fn module() -> Option<*const ffi::module> {
    let module = MODULE.load(Ordering::Acquire);
    (!module.is_null()).then_some(module.cast_const())
}

/// Per-server config slot. `global` is only used in the main server's slot: it holds the
/// server-wide settings (daemon groups, Python home ...) of one configuration generation.
///
/// `global` and `server` are written only while the configuration is read (one thread);
/// afterwards the slot is shared read-only by every request thread, and the few facts set
/// later are set once (`OnceLock`) or taken under a lock.
#[derive(Default)]
pub struct ServerSlot {
    pub global: GlobalConfig,
    pub server: ServerConfig,
    /// Daemon groups started by post_config (main server slot only); Apache children
    /// inherit it and use it to reach the daemons.
    pub daemons: OnceLock<Vec<crate::handler::DaemonTarget>>,
    /// The parent's listening sockets, closed in each Apache child.
    pub listener_fds: Mutex<Vec<i32>>,
    /// Python settings for embedded mode (main server slot only; set in post_config).
    pub embedded: OnceLock<crate::handler::embedded::EmbeddedSettings>,
}

/// The main server's slot of the configuration just read, shared (request time, hooks).
pub(crate) fn main_slot() -> Option<&'static ServerSlot> {
    server_slot(VirtualHost::main()?)
}

/// The slot of a given server, shared.
pub(crate) fn server_slot(s: VirtualHost) -> Option<&'static ServerSlot> {
    let module = module()?;
    // SAFETY: `module` is our live module record; our slot in every server holds a
    // ServerSlot (create/merge_server_config).
    unsafe { s.module_config::<ServerSlot>(module) }
}

/// Is Apache still reading its configuration (no request served yet in this process)?
/// A `.htaccess` file is read on request threads while the MPM runs: directives read from
/// one must not reach the server-wide configuration.
pub(crate) fn reading_configuration() -> bool {
    // SAFETY: ap_state_query only reads Apache's global state; callable from any thread.
    let state = unsafe { ffi::ap_state_query(ffi::AP_SQ_MAIN_STATE) };
    state != ffi::AP_SQ_MS_RUN_MPM && state != ffi::AP_SQ_MS_EXITING
}

/// The slot of `s`, to change from a directive callback. None once Apache serves requests
/// (a directive read from `.htaccess`): nothing may change a server's configuration then,
/// whoever asks, so this is the one place that rule is kept.
///
/// # Safety
/// Only from a directive callback (Apache reads the configuration on one thread and runs
/// no request meanwhile), dropping the reference before the callback returns.
pub(crate) unsafe fn configuring_slot(s: VirtualHost) -> Option<&'static mut ServerSlot> {
    if !reading_configuration() {
        return None;
    }
    let module = module()?;
    // SAFETY: `module` is our live module record; our slot holds a ServerSlot;
    // exclusivity is the caller's promise, and no request thread runs while the
    // configuration is read (checked above).
    unsafe { s.module_config_mut::<ServerSlot>(module) }
}

/// Runs `f` on the server-wide configuration being read. `Ok(None)` without running `f`
/// once Apache serves requests (a directive from `.htaccess`): the server-wide
/// configuration is fixed then, and what `f` would note (references and sites checked at
/// configtest) has been checked already.
///
/// # Safety
/// As [`configuring_slot`]: only from a directive callback, holding no other slot reference.
pub(crate) unsafe fn with_global<R>(
    f: impl FnOnce(&mut GlobalConfig) -> R,
) -> Result<Option<R>, String> {
    if !reading_configuration() {
        return Ok(None);
    }
    let main = VirtualHost::main().ok_or("mod_rwsgi: main server configuration missing")?;
    // SAFETY: the caller is a directive callback (Apache's one configuration thread) and
    // holds no other slot reference; the borrow ends when `f` returns.
    let slot =
        unsafe { configuring_slot(main) }.ok_or("mod_rwsgi: main server configuration missing")?;
    Ok(Some(f(&mut slot.global)))
}
