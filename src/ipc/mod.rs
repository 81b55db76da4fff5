//! The operating-system side of the daemon connection (L2½: std, nix and libc, no Apache or
//! Python): waiting for a socket to become readable, and passing file descriptors alongside
//! the byte stream (`SCM_RIGHTS`). [`crate::protocol`] stays pure Rust over any
//! `Read`/`Write`; this module gives it the Unix socket underneath. It may use `protocol`,
//! never the reverse.

pub mod connect;
pub mod fd_passing;
pub mod poll;
