//! L3: daemon process groups. The Apache parent creates each group's socket
//! (`listener`) and forks its processes; each process prepares itself (`spawn`), starts
//! Python and serves (`process`, `worker`); the parent restarts dead ones (`supervisor`).
//! Nothing here calls Apache: what needs Apache is passed in by `module.rs`.

pub mod listener;
pub mod process;
pub mod spawn;
pub mod supervisor;
pub mod worker;
