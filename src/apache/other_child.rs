//! APR's "other child" registry for processes the Apache parent forks itself (the daemon
//! manager), through which the MPM tells us (about once a second) that one died, or that
//! Apache is restarting or stopping.

use std::ffi::c_void;
use std::os::raw::c_int;

use crate::apache::pool::Pool;
use crate::ffi;

/// Why the MPM called a maintenance callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The process died; the value is its raw wait status (exit code or signal).
    Death(c_int),
    Restart,
    Unregister,
    Other(c_int),
}

pub type Maintenance = unsafe extern "C" fn(reason: c_int, data: *mut c_void, status: c_int);

pub fn reason_from_raw(reason: c_int, status: c_int) -> Reason {
    match reason {
        ffi::APR_OC_REASON_DEATH | ffi::APR_OC_REASON_LOST => Reason::Death(status),
        ffi::APR_OC_REASON_RESTART => Reason::Restart,
        ffi::APR_OC_REASON_UNREGISTER => Reason::Unregister,
        other => Reason::Other(other),
    }
}

/// A registration slot for one child, allocated in the configuration pool so APR can keep
/// pointing at it.
pub struct OtherChild {
    proc_: *mut ffi::apr_proc_t,
}

impl OtherChild {
    pub fn new(pool: Pool) -> OtherChild {
        let proc_ = pool.alloc_rust(ffi::apr_proc_t::default());
        OtherChild { proc_ }
    }

    /// Registers `pid` so `callback(reason, data, status)` is called when it dies or Apache
    /// restarts. `data` must stay valid until the registration is removed (pool clear).
    ///
    /// # Safety
    /// `data` must outlive the registration; `callback` must not unwind.
    pub unsafe fn register(&self, pid: i32, callback: Maintenance, data: *mut c_void, pool: Pool) {
        // SAFETY: proc_ lives in `pool` (same lifetime as the registration); APR stores the
        // pointers and calls callback from the MPM's main loop in this process.
        unsafe {
            (*self.proc_).pid = pid;
            ffi::apr_proc_other_child_register(
                self.proc_,
                Some(callback),
                data,
                std::ptr::null_mut(),
                pool.as_ptr(),
            );
        }
    }

    /// # Safety
    /// `data` must be the pointer given to `register`.
    pub unsafe fn unregister(data: *mut c_void) {
        // SAFETY: removes the registration made with this data pointer, if any.
        unsafe { ffi::apr_proc_other_child_unregister(data) };
    }
}
