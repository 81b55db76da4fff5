//! mod_rwsgi: an Apache httpd 2.4 module that runs Python WSGI applications the way
//! mod_wsgi does, configured with mod_wsgi's directives.
//!
//! Layers (dependencies point downwards only):
//! - `module`   composition root, the only code that sees every layer: the exported
//!   `rwsgi_module`, directive table and semantics, hooks, the per-server slot, the panic
//!   guard, system accounts, the pure config -> daemon plan mapping, the daemon launch.
//! - `handler`  L4 the request path inside Apache (to a daemon, or embedded).
//! - `daemon`   L3 process groups: fork, privileges, supervision, worker threads.
//! - `python`   L3 the CPython host (pyo3): interpreter, script loading, PEP 3333.
//! - `config`   L2 pure Rust config model: directives, options, validation, merging.
//! - `protocol` L2 pure Rust wire protocol between Apache children and daemons.
//! - `metrics`  L2 pure Rust metrics table (shared memory layout) and its OpenMetrics text.
//! - `ipc`      L2 the Unix socket under the protocol: poll, descriptor passing (nix).
//! - `apache`   L1 a thin safe layer over Apache's C API.
//! - `ffi`      L0 raw bindgen bindings.
//! - `logging`, `heap`, `util`, `pair_list`: crate-wide utilities (log lines; glibc heap
//!   policy; clock, resident set size, panic text; a request's environ pairs in one buffer),
//!   the only files besides this one at `src/` root.
//!
//! docs/architecture.md describes the folders and a request's way through them.

pub mod config;
pub mod protocol;

pub mod ipc;

pub mod heap;
pub mod logging;
pub mod pair_list;
pub mod util;

pub mod ffi;

pub mod apache;
pub mod daemon;
pub mod handler;
pub mod metrics;
pub mod module;
pub mod python;
