//! The Unix socket of a process group: created by the Apache parent (root), owned by
//! Apache's child user with mode 0600 so only Apache children (and root) can connect, and
//! shared by every daemon process of the group.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Binds and listens on `path` (a stale socket file is replaced), then hands the socket to
/// `owner_uid`/`owner_gid` with mode 0600.
///
/// The socket is made under a staging name next to `path` and renamed over it once it is
/// listening with its owner and mode: at a graceful restart the old generation's Apache
/// children still connect to `path` while the new generation makes its socket, and a socket
/// still owned by root there would refuse them (EACCES, a 503), where the rename leaves them
/// the old socket or the new, never neither. (A path too long for a staging name is bound
/// in place, as before.)
pub fn create(path: &Path, backlog: i32, owner_uid: u32, owner_gid: u32) -> io::Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("socket directory {} does not exist", dir.display()),
            ));
        }
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push("~");
    let staging = PathBuf::from(staging);
    remove_stale(&staging)?;
    let (listener, bound_at) = match bind_private(&staging) {
        Ok(listener) => (listener, staging.as_path()),
        // Too long for sockaddr_un with the staging suffix: bind the path itself.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            remove_stale(path)?;
            (bind_private(path)?, path)
        }
        Err(e) => return Err(e),
    };
    let ready = prepare(&listener, bound_at, backlog, owner_uid, owner_gid).and_then(|()| {
        if bound_at == path {
            Ok(())
        } else {
            std::fs::rename(bound_at, path)
        }
    });
    if let Err(e) = ready {
        let _ = std::fs::remove_file(bound_at);
        return Err(e);
    }
    let fd: OwnedFd = listener.into();
    // Not close-on-exec: the group's daemon processes inherit it.
    set_cloexec(fd.as_raw_fd(), false)?;
    Ok(fd)
}

fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Binds under a strict umask, so the socket is never connectable by others, not even
/// between bind and chmod.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    bound
}

/// Listens with the configured backlog and gives the socket file its owner and mode.
fn prepare(
    listener: &UnixListener,
    path: &Path,
    backlog: i32,
    owner_uid: u32,
    owner_gid: u32,
) -> io::Result<()> {
    // std listens with its own backlog; listen again with the configured one.
    nix::sys::socket::listen(
        listener,
        nix::sys::socket::Backlog::new(backlog.max(1))
            .unwrap_or(nix::sys::socket::Backlog::MAXCONN),
    )
    .map_err(io::Error::from)?;
    std::os::unix::fs::chown(path, Some(owner_uid), Some(owner_gid))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
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

#[cfg(test)]
mod tests {
    use super::create;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// While a group's socket is made again at its path (a graceful restart), the path
    /// always names a socket with its final owner and mode 0600: a watcher never sees it
    /// missing or owned by root (which Apache's children could not connect to), and no
    /// staging file is left.
    #[test]
    fn a_socket_made_again_at_its_path_is_never_missing_nor_foreign_owned() {
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: handing a socket to another owner needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let (owner, group) = (65534, 65534);
        let first = create(&path, 16, owner, group).unwrap();
        let stop = AtomicBool::new(false);
        let seen = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let mut bad = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.uid() == owner && m.permissions().mode() & 0o777 == 0o600 => {}
                        Ok(m) => bad.push(format!("uid {} mode {:o}", m.uid(), m.mode())),
                        Err(e) => bad.push(e.to_string()),
                    }
                }
                bad
            });
            for _ in 0..300 {
                drop(create(&path, 16, owner, group).unwrap());
            }
            stop.store(true, Ordering::SeqCst);
            watcher.join().unwrap()
        });
        drop(first);
        assert!(
            seen.is_empty(),
            "the path was missing or foreign: {:?}",
            &seen[..seen.len().min(5)]
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["g.sock"], "a staging file was left");
    }
}
