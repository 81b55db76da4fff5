//! L3: daemon process groups. The Apache parent creates each group's socket
//! (`listener`) and forks one daemon manager process (`manager_process`), which forks every
//! daemon, restarts dead ones (policy in `supervisor`) and replaces them warm when they ask
//! (`control`). Each daemon starts up the same way (`child_start`: prepares itself with
//! `spawn`, takes its signals through `signals`, starts Python), then serves (`process`,
//! `gil_thread` taking the GIL for its monitor, `worker` dispatching requests to its
//! threads, `request_io` for each request's I/O) or runs its service scripts (`service`).
//! Nothing here calls Apache or reads its configuration: the composition root turns the
//! configuration into plans (`DaemonPlan`, `GroupPlan`) and starts the manager with them.

pub mod child_start;
pub mod control;
pub mod exit;
mod gil_thread;
pub mod listener;
pub mod manager_process;
pub mod metrics_shm;
pub mod process;
mod request_io;
pub mod service;
mod signals;
pub mod spawn;
pub mod supervisor;
pub mod worker;
