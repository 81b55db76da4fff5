//! L3: daemon process groups. The Apache parent creates each group's socket
//! (`listener`) and forks one daemon manager process (`manager`), which forks every
//! daemon, restarts dead ones (policy in `supervisor`) and replaces them warm when they ask
//! (`control`). Each daemon starts up the same way (`child_start`: prepares itself with
//! `spawn`, takes its signals through `signals`, starts Python), then serves requests
//! (`serving_daemon`, `gil_thread` taking the GIL for its monitor, `dispatcher` dispatching
//! requests to its threads, `request_io` for each request's I/O, `ws_direct` for an accepted WebSocket's
//! messages written by the ASGI event loop) or runs its service
//! scripts (`service_daemon`). Nothing here calls Apache, the handler or the composition
//! root: the composition root turns the configuration into plans (`DaemonPlan`,
//! `GroupPlan`) and starts the manager with them.

pub mod child_start;
pub mod control;
pub mod dispatcher;
pub mod exit;
mod gil_thread;
pub mod host;
pub mod host_exec;
pub mod host_log;
pub mod listener;
pub mod manager;
pub mod metrics_shm;
pub mod plan_wire;
mod request_io;
pub mod service_daemon;
pub mod serving_daemon;
mod signals;
pub mod spawn;
pub mod supervisor;
pub mod telemetry;
mod ws_direct;
