//! The Unix socket of a process group: created by the Apache parent (root), owned by
//! Apache's child user with mode 0600 so only Apache children (and root) can connect, and
//! shared by every daemon process of the group.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Binds and listens on `path` (a stale socket file is replaced), then hands the socket to
/// `owner_uid`/`owner_gid` with mode 0600.
pub fn create(path: &Path, backlog: i32, owner_uid: u32, owner_gid: u32) -> io::Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("socket directory {} does not exist", dir.display()),
            ));
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bind under a strict umask so the socket is never connectable by others, not even
    // between bind and chmod.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound?;
    // std listens with its own backlog; listen again with the configured one.
    nix::sys::socket::listen(
        &listener,
        nix::sys::socket::Backlog::new(backlog.max(1))
            .unwrap_or(nix::sys::socket::Backlog::MAXCONN),
    )
    .map_err(io::Error::from)?;
    std::os::unix::fs::chown(path, Some(owner_uid), Some(owner_gid))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let fd: OwnedFd = listener.into();
    // Not close-on-exec: the group's daemon processes inherit it.
    set_cloexec(fd.as_raw_fd(), false)?;
    Ok(fd)
}

/// Clears or sets FD_CLOEXEC.
pub fn set_cloexec(fd: i32, on: bool) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    // SAFETY: fd is an open descriptor owned by the caller for the duration of the call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut flags = FdFlag::from_bits_truncate(fcntl(borrowed, FcntlArg::F_GETFD)?);
    flags.set(FdFlag::FD_CLOEXEC, on);
    fcntl(borrowed, FcntlArg::F_SETFD(flags))?;
    Ok(())
}
