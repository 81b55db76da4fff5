//! Where Apache is in its life: start-up passes, config generation, MPM state.

use crate::ffi;

/// Is this the real configuration pass of a normal run (not the first, dry start-up pass,
/// and not `-t`/`-S`)? Only then may daemons be started.
pub fn is_real_config_pass() -> bool {
    // SAFETY: ap_state_query only reads Apache's global state; callable from any hook.
    let (main_state, run_mode) = unsafe {
        (
            ffi::ap_state_query(ffi::AP_SQ_MAIN_STATE),
            ffi::ap_state_query(ffi::AP_SQ_RUN_MODE),
        )
    };
    main_state == ffi::AP_SQ_MS_CREATE_CONFIG && run_mode == ffi::AP_SQ_RM_NORMAL
}

/// The configuration generation: 0 at start-up, +1 on every restart or graceful restart.
pub fn config_generation() -> i32 {
    // SAFETY: as above.
    unsafe { ffi::ap_state_query(ffi::AP_SQ_CONFIG_GEN) }
}

/// True while the MPM is shutting down (never respawn daemons then).
pub fn mpm_is_stopping() -> bool {
    let mut state: std::os::raw::c_int = 0;
    // SAFETY: ap_mpm_query writes one int through the valid pointer we pass.
    let rv = unsafe { ffi::ap_mpm_query(ffi::AP_MPMQ_MPM_STATE, &mut state) };
    rv == 0 && state == ffi::AP_MPMQ_STOPPING
}

/// The MPM's answer to an integer query (threads per child, max daemons...).
pub fn mpm_query(code: i32) -> Option<i32> {
    let mut value: std::os::raw::c_int = 0;
    // SAFETY: as above.
    let rv = unsafe { ffi::ap_mpm_query(code, &mut value) };
    (rv == 0).then_some(value)
}

/// The running Apache's version: (major, minor, patch).
pub fn server_version() -> (u32, u32, u32) {
    let mut v = ffi::ap_version_t::default();
    // SAFETY: ap_get_server_revision fills the struct we pass; it only reads constants.
    unsafe { ffi::ap_get_server_revision(&mut v) };
    let num = |n: std::os::raw::c_int| u32::try_from(n).unwrap_or(0);
    (num(v.major), num(v.minor), num(v.patch))
}

/// The name of the running MPM ("event", "worker", "prefork").
pub fn mpm_name() -> String {
    // SAFETY: ap_show_mpm returns a static NUL-terminated string.
    unsafe { crate::apache::pool::cstr_to_string(ffi::ap_show_mpm()) }.unwrap_or_default()
}
