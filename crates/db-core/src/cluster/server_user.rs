//! Who runs the server: the current user, or `postgres` when the current user is root.
//!
//! PostgreSQL refuses to run as root (`initdb` and `postgres` both exit), yet CI jobs and
//! containers commonly are root. Then the server programs run as an unprivileged user and
//! the cluster's directories belong to it.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Uid, User, chown, geteuid};

use super::ClusterError;

/// The unprivileged account the server runs as when we are root.
const FALLBACK_USER: &str = "postgres";

#[derive(Debug, Clone)]
pub(crate) enum ServerUser {
    /// We are not root: the server runs as us.
    Current,
    /// We are root: the server runs as this account.
    Other { name: String, uid: Uid, gid: Gid },
}

impl ServerUser {
    pub(crate) fn detect() -> Result<Self, ClusterError> {
        if !geteuid().is_root() {
            return Ok(Self::Current);
        }
        match User::from_name(FALLBACK_USER) {
            Ok(Some(user)) => Ok(Self::Other {
                name: user.name,
                uid: user.uid,
                gid: user.gid,
            }),
            Ok(None) | Err(_) => Err(ClusterError::NoUnprivilegedUser {
                user: FALLBACK_USER.into(),
            }),
        }
    }

    /// A command that runs as the server user.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Self::Other { uid, gid, .. } = self {
            // std drops supplementary groups when it changes the user of a child of root.
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    /// Creates `dir` and, when the server runs as another user, hands it over. The directory
    /// is private (0700): the server's socket lives in it, so only the server user (and root)
    /// can connect. Missing parents are created with the default mode, so the server user can
    /// still pass through them.
    pub(crate) fn create_private_dir(&self, dir: &Path) -> Result<(), ClusterError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let io = |action: &str| {
            let action = format!("{action} {}", dir.display());
            move |source| ClusterError::Io { action, source }
        };
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io("create the parents of"))?;
        }
        self.check_reachable(dir)?;
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(io("create")(error));
            }
            _ => {}
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("set permissions of"))?;
        if let Self::Other { uid, gid, .. } = self {
            chown(dir, Some(*uid), Some(*gid))
                .map_err(|errno| io("hand over")(std::io::Error::from(errno)))?;
        }
        Ok(())
    }

    /// Hands a file over to the server user (a no-op when the server runs as us).
    #[cfg(feature = "testing")]
    pub(crate) fn hand_over(&self, path: &Path) -> std::io::Result<()> {
        if let Self::Other { uid, gid, .. } = self {
            chown(path, Some(*uid), Some(*gid)).map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    /// Fails with a clear message when the server user cannot even reach `dir` because an
    /// ancestor directory is closed to it (typically a checkout under `/root`).
    fn check_reachable(&self, dir: &Path) -> Result<(), ClusterError> {
        let Self::Other { name, uid, gid } = self else {
            return Ok(());
        };
        for ancestor in dir.ancestors().skip(1) {
            let Ok(meta) = ancestor.metadata() else {
                continue;
            };
            let mode = meta.mode();
            let searchable = if meta.uid() == uid.as_raw() {
                mode & 0o100 != 0
            } else if meta.gid() == gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !searchable {
                return Err(ClusterError::UnreachableByServerUser {
                    dir: dir.to_path_buf(),
                    blocking: ancestor.to_path_buf(),
                    user: name.clone(),
                });
            }
        }
        Ok(())
    }
}
