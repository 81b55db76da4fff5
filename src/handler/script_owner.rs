//! `script-user=` / `script-group=`: a WSGI script is only handed to its daemon group when
//! the script and its directory belong to that user (or group) and neither is writable by
//! group or world (mod_wsgi's rule). Checked in the Apache child before the daemon is
//! contacted; a failure is a 403 with a log line naming the file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Who must own a group's scripts (at most one of the two is set: configtest checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScriptOwner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl ScriptOwner {
    pub fn is_set(&self) -> bool {
        self.uid.is_some() || self.gid.is_some()
    }

    /// Ok when `script` and its parent directory satisfy the rule; otherwise a sentence
    /// for the error log naming the file and what is wrong with it.
    pub fn check(&self, script: &Path) -> Result<(), String> {
        self.check_one(script, "WSGI script file")?;
        let parent = script
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("/"));
        self.check_one(parent, "directory of the WSGI script")
    }

    fn check_one(&self, path: &Path, what: &str) -> Result<(), String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot stat the {what} '{}': {e}", path.display()))?;
        if let Some(uid) = self.uid.filter(|uid| *uid != meta.uid()) {
            return Err(format!(
                "the {what} '{}' is owned by uid {}, but script-user= requires uid {uid}",
                path.display(),
                meta.uid()
            ));
        }
        if let Some(gid) = self.gid.filter(|gid| *gid != meta.gid()) {
            return Err(format!(
                "the {what} '{}' belongs to gid {}, but script-group= requires gid {gid}",
                path.display(),
                meta.gid()
            ));
        }
        let mode = meta.mode();
        for (bit, who) in [(0o020, "group"), (0o002, "world")] {
            if mode & bit != 0 {
                return Err(format!(
                    "the {what} '{}' is writable by {who} (mode {:04o}), which script-user= / \
                     script-group= forbid",
                    path.display(),
                    mode & 0o7777
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rwsgi-owner-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn owner_and_write_bits_of_file_and_directory_are_checked() {
        let dir = temp_dir("check");
        let script = dir.join("app.wsgi");
        std::fs::write(&script, b"").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = std::fs::metadata(&script).unwrap();
        let me = ScriptOwner {
            uid: Some(meta.uid()),
            gid: None,
        };
        let my_group = ScriptOwner {
            uid: None,
            gid: Some(meta.gid()),
        };
        assert_eq!(me.check(&script), Ok(()));
        assert_eq!(my_group.check(&script), Ok(()));

        let other = ScriptOwner {
            uid: Some(meta.uid() + 1),
            gid: None,
        };
        let err = other.check(&script).unwrap_err();
        assert!(
            err.contains("app.wsgi") && err.contains("script-user="),
            "{err}"
        );

        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = me.check(&script).unwrap_err();
        assert!(
            err.contains("writable by group") && err.contains("0664"),
            "{err}"
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o757)).unwrap();
        let err = me.check(&script).unwrap_err();
        assert!(
            err.contains("directory") && err.contains("writable by world"),
            "{err}"
        );

        let err = me.check(&dir.join("missing.wsgi")).unwrap_err();
        assert!(err.contains("cannot stat"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
