//! APR pools: Rust values owned by a pool (dropped by a pool cleanup) and C strings.

use std::ffi::{CStr, c_void};
use std::ptr::NonNull;

use crate::ffi;

/// A borrowed APR pool. Everything allocated in it lives until the pool is cleared.
#[derive(Clone, Copy)]
pub struct Pool(NonNull<ffi::apr_pool_t>);

impl Pool {
    /// # Safety
    /// `raw` must be a live APR pool that outlives every use of the returned value.
    pub unsafe fn from_raw(raw: *mut ffi::apr_pool_t) -> Option<Pool> {
        NonNull::new(raw).map(Pool)
    }

    pub fn as_ptr(self) -> *mut ffi::apr_pool_t {
        self.0.as_ptr()
    }

    /// Moves `value` into the pool: it is dropped when the pool is cleared or destroyed.
    pub fn alloc_rust<T>(self, value: T) -> *mut T {
        unsafe extern "C" fn drop_box<T>(data: *mut c_void) -> ffi::apr_status_t {
            let result = std::panic::catch_unwind(|| {
                // SAFETY: `data` is the pointer produced by Box::into_raw below, and APR
                // runs each registered cleanup exactly once.
                drop(unsafe { Box::from_raw(data.cast::<T>()) });
            });
            if result.is_err() {
                // Through the facade: the pool sits below the error-log wrapper.
                crate::logging::log(
                    crate::logging::Level::Error,
                    "RW0013: mod_rwsgi: a panic occurred while freeing configuration",
                );
            }
            0
        }
        let ptr = Box::into_raw(Box::new(value));
        // SAFETY: the pool is live (from_raw contract); the cleanup owns `ptr` from here on
        // and is the only place that frees it. The child cleanup is the no-op one so a
        // forked child's exec does not double-free.
        unsafe {
            ffi::apr_pool_cleanup_register(
                self.as_ptr(),
                ptr as *const c_void,
                Some(drop_box::<T>),
                Some(ffi::apr_pool_cleanup_null),
            );
        }
        ptr
    }

    /// Copies `s` into the pool as a NUL-terminated C string (interior NULs become `?`).
    pub fn c_string(self, s: &str) -> *const std::os::raw::c_char {
        self.c_bytes(s.as_bytes())
    }

    /// Copies arbitrary bytes into the pool as a C string (interior NULs become `?`).
    pub fn c_bytes(self, b: &[u8]) -> *const std::os::raw::c_char {
        let clean: std::borrow::Cow<'_, [u8]> = if b.contains(&0) {
            b.iter()
                .map(|&c| if c == 0 { b'?' } else { c })
                .collect::<Vec<u8>>()
                .into()
        } else {
            b.into()
        };
        // SAFETY: apr_pstrmemdup copies exactly `len` bytes from a valid slice into the live
        // pool and appends a NUL.
        unsafe { ffi::apr_pstrmemdup(self.as_ptr(), clean.as_ptr().cast(), clean.len()) }
    }

    /// A path made absolute relative to ServerRoot, as Apache's own directives do.
    pub fn server_root_relative(self, path: &str) -> Option<String> {
        let c = self.c_string(path);
        // SAFETY: `c` is a NUL-terminated string in the pool; the result (or null) is too.
        let out = unsafe { ffi::ap_server_root_relative(self.as_ptr(), c) };
        // SAFETY: null or a NUL-terminated string Apache keeps for at least this call.
        unsafe { cstr_to_string(out) }
    }

    /// `path` as it is when absolute, else under ServerRoot (as written if that fails): how
    /// a script file written in a directive is found.
    pub fn absolute_or_server_root(self, path: &str) -> String {
        if path.starts_with('/') {
            return path.to_string();
        }
        self.server_root_relative(path)
            .unwrap_or_else(|| path.to_string())
    }

    /// [`Pool::absolute_or_server_root`] in bytes, for a path that need not be UTF-8.
    pub fn absolute_or_server_root_bytes(self, path: Vec<u8>) -> Vec<u8> {
        if path.starts_with(b"/") {
            return path;
        }
        self.server_root_relative_bytes(&path).unwrap_or(path)
    }

    /// [`Pool::server_root_relative`] in bytes, for a path that need not be UTF-8 (one a
    /// WSGIScriptAliasMatch substitution took from a URL).
    pub fn server_root_relative_bytes(self, path: &[u8]) -> Option<Vec<u8>> {
        let c = self.c_bytes(path);
        // SAFETY: `c` is a NUL-terminated string in the pool; the result (or null) is too.
        let out = unsafe { ffi::ap_server_root_relative(self.as_ptr(), c) };
        // SAFETY: null or a NUL-terminated string in the pool, copied before this returns.
        (!out.is_null()).then(|| unsafe { CStr::from_ptr(out) }.to_bytes().to_vec())
    }

    /// A path relative to Apache's DefaultRuntimeDir.
    pub fn runtime_dir_relative(self, path: &str) -> Option<String> {
        let c = self.c_string(path);
        // SAFETY: as for server_root_relative.
        let out = unsafe { ffi::ap_runtime_dir_relative(self.as_ptr(), c) };
        // SAFETY: null or a NUL-terminated string Apache keeps for at least this call.
        unsafe { cstr_to_string(out) }
    }
}

/// A C string owned by Apache, as an owned Rust string (lossy for non-UTF-8).
///
/// # Safety
/// `p` is null or a NUL-terminated string valid for the duration of the call.
pub(crate) unsafe fn cstr_to_string(p: *const std::os::raw::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: Apache strings are NUL-terminated and outlive this call.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}
