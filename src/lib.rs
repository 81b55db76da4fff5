//! mod_rwsgi: an Apache httpd 2.4 module that runs Python WSGI applications the way
//! mod_wsgi does, configured with mod_wsgi's directives.
//!
//! Layers (dependencies point downwards only):
//! - `module`   composition root: the exported `rwsgi_module`, directive table, hooks;
//!   beside it `server_slot`, `panic_guard`, `system_accounts`, `process_plan` (pure:
//!   config -> daemon plans) and `daemon_launcher` (the parent's side of daemon mode).
//! - `handler`  L4 the request path inside Apache (to a daemon, or embedded).
//! - `daemon`   L3 process groups: fork, privileges, supervision, worker threads.
//! - `python`   L3 the CPython host (pyo3): interpreter, script loading, PEP 3333.
//! - `config`   L2 pure Rust config model: directives, options, validation, merging.
//! - `protocol` L2 pure Rust wire protocol between Apache children and daemons.
//! - `ipc`      L2 the Unix socket under the protocol: poll, descriptor passing (nix).
//! - `apache`   L1 a thin safe layer over Apache's C API.
//! - `ffi`      L0 raw bindgen bindings.
//! - `logging`, `heap`, `util`: process-wide helpers (log lines; glibc heap policy; clock,
//!   resident set size, panic text).

pub mod config;
pub mod protocol;

pub mod ipc;

pub mod heap;
pub mod logging;
pub mod util;

pub mod ffi;

pub mod apache;
pub mod daemon;
mod daemon_launcher;
pub mod handler;
pub mod module;
mod panic_guard;
mod process_plan;
pub mod python;
mod server_metrics;
mod server_slot;
mod system_accounts;
