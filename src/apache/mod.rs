//! L1: a thin safe layer over Apache's C API. It knows nothing of WSGI: pools, logging,
//! directive context, server and process state. Raw pointers enter through one
//! `unsafe fn from_raw` per wrapper; everything after that is safe.

pub mod auth;
pub mod client_stream;
pub mod directive_context;
pub mod log;
pub mod other_child;
pub mod pool;
pub mod regex;
pub mod request;
pub mod scoreboard;
pub mod server_process;
pub mod state;
pub mod virtual_host;
