//! L3: daemon process groups. The Apache parent creates each group's socket
//! (`listener`) and forks one daemon manager process (`manager_process`), which forks every
//! daemon, restarts dead ones (policy in `supervisor`) and replaces them warm when they ask
//! (`control`). Each daemon prepares itself (`spawn`), starts Python and serves (`process`,
//! `worker`). Nothing here calls Apache: what needs Apache is passed in by `module.rs`.

pub mod control;
pub mod exit;
pub mod listener;
pub mod manager_process;
pub mod metrics_shm;
pub mod process;
pub mod spawn;
pub mod supervisor;
pub mod worker;
