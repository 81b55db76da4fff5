//! Facts about the Apache server process that daemons inherit: its command line (which a
//! daemon overwrites with its display-name) and the user and group its children run as.

use crate::apache::virtual_host::VirtualHost;
use crate::ffi;

/// Apache's command line as one writable memory area (argv[0] to the end of the last
/// argument), which a daemon overwrites to show its display-name in `ps`: (start address,
/// length).
pub(crate) fn argv_area(server: VirtualHost) -> Option<(usize, usize)> {
    // SAFETY: a live server record's process_rec and its argv are Apache's, valid for the
    // process' lifetime; the argument strings are laid out contiguously by the kernel, so
    // argv[0] to the end of the last one is one area.
    unsafe {
        let process = server.process().as_ref()?;
        let argc = usize::try_from(process.argc).ok()?;
        if argc == 0 || process.argv.is_null() {
            return None;
        }
        let first = *process.argv;
        let last = *process.argv.add(argc - 1);
        if first.is_null() || last.is_null() {
            return None;
        }
        let end = last.add(libc::strlen(last));
        let len = usize::try_from(end.offset_from(first)).ok()?;
        Some((first as usize, len))
    }
}

/// The uid and gid Apache's children run as (`User` / `Group`).
pub fn child_user() -> (u32, u32) {
    // SAFETY: ap_unixd_config is filled by mod_unixd while reading the config; reading two
    // integers from it is fine at any later point.
    unsafe { (ffi::ap_unixd_config.user_id, ffi::ap_unixd_config.group_id) }
}
