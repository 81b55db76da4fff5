//! L3: daemon process groups. The Apache parent creates each group's socket
//! (`listener`) and forks one daemon manager process (`manager_process`), which forks every
//! daemon, restarts dead ones (policy in `supervisor`) and replaces them warm when they ask
//! (`control`). Each daemon prepares itself (`spawn`), starts Python and serves (`process`,
//! `worker` dispatching requests to its threads, `request_io` for each request's I/O).
//! Nothing here calls Apache: what needs Apache is passed in by `module.rs`.

pub mod control;
pub mod exit;
pub mod listener;
pub mod manager_process;
pub mod metrics_shm;
pub mod process;
mod request_io;
pub mod service;
pub mod spawn;
pub mod supervisor;
pub mod worker;
