//! When the module gets an rpath to libpython's directory (used by build.rs, unit-tested by
//! tests/packaging.rs). An rpath is only needed where the dynamic loader would not find
//! libpython on its own; Debian packages must not carry one (lintian:
//! custom-library-search-path), hence `RWSGI_NO_RPATH=1`.

use std::path::{Path, PathBuf};

/// The directories the dynamic loader searches without being told: `/lib`, `/usr/lib`,
/// their `64` variants and the multiarch directories of `target`
/// (`x86_64-unknown-linux-gnu` -> `/usr/lib/x86_64-linux-gnu`).
pub fn default_linker_dirs(target: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let parts: Vec<&str> = target.split('-').collect();
    if let [arch, _vendor, os, env @ ..] = parts.as_slice() {
        // Debian names 32-bit x86 i386 whatever the compiler's i586/i686.
        let arch = if matches!(*arch, "i586" | "i686") {
            "i386"
        } else {
            arch
        };
        let mut triple = format!("{arch}-{os}");
        for e in env {
            triple.push('-');
            triple.push_str(e);
        }
        dirs.push(Path::new("/lib").join(&triple));
        dirs.push(Path::new("/usr/lib").join(triple));
    }
    dirs
}

/// Whether to link with `-rpath <lib_dir>`: not when `RWSGI_NO_RPATH` is set to anything
/// but "" or "0", and not when `lib_dir` is (or resolves to) a default linker directory.
pub fn wants_rpath(lib_dir: &Path, target: &str, no_rpath: Option<&str>) -> bool {
    if no_rpath.is_some_and(|v| !v.is_empty() && v != "0") {
        return false;
    }
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let lib_dir = canonical(lib_dir);
    !default_linker_dirs(target)
        .iter()
        .any(|d| canonical(d) == lib_dir)
}
