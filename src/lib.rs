//! mod_rwsgi: an Apache httpd 2.4 module that runs Python WSGI applications the way
//! mod_wsgi does, configured with mod_wsgi's directives.
//!
//! Layers (dependencies point downwards only):
//! - `module`   composition root: the exported `rwsgi_module`, directive table, hooks.
//! - `handler`  L4 the request path inside Apache (to a daemon, or embedded).
//! - `daemon`   L3 process groups: fork, privileges, supervision, worker threads.
//! - `python`   L3 the CPython host (pyo3): interpreter, script loading, PEP 3333.
//! - `config`   L2 pure Rust config model: directives, options, validation, merging.
//! - `protocol` L2 pure Rust wire protocol between Apache children and daemons.
//! - `apache`   L1 a thin safe layer over Apache's C API.
//! - `ffi`      L0 raw bindgen bindings.
//! - `logging`, `heap`: process-wide helpers (log lines; glibc heap policy).

pub mod config;
pub mod protocol;

pub mod heap;
pub mod logging;

pub mod ffi;

pub mod apache;
pub mod daemon;
pub mod handler;
mod manager;
pub mod module;
pub mod python;
mod server_metrics;
