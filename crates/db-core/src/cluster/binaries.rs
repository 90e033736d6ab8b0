//! Finding the PostgreSQL server programs (`initdb`, `pg_ctl`, `postgres`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ClusterError;

/// The programs a local cluster needs, all from one directory so their versions match.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

impl PgBinaries {
    /// Uses `explicit` (configuration) when given, and only it: a configured directory that
    /// lacks the programs is a mistake to report, not to paper over. Otherwise searches, in
    /// order, `$PG_BIN`, `pg_config --bindir`, `/usr/lib/postgresql/<newest>/bin` (Debian,
    /// Ubuntu) and every directory of `$PATH`.
    ///
    /// Reading `PG_BIN` and `PATH` here is the one place db-core looks at the environment:
    /// like `PATH` lookup itself, finding installed programs is a property of the machine,
    /// not application configuration.
    pub fn find(explicit: Option<&Path>) -> Result<Self, ClusterError> {
        let mut searched = Vec::new();
        let candidates: Vec<PathBuf> = match explicit {
            Some(dir) => vec![dir.to_path_buf()],
            None => std::env::var_os("PG_BIN")
                .map(PathBuf::from)
                .into_iter()
                .chain(pg_config_bindir())
                .chain(debian_versioned_dirs())
                .chain(
                    std::env::var_os("PATH")
                        .iter()
                        .flat_map(std::env::split_paths),
                )
                .collect(),
        };
        for dir in candidates {
            if REQUIRED
                .iter()
                .all(|program| is_executable(&dir.join(program)))
            {
                return Ok(Self { dir });
            }
            searched.push(dir.display().to_string());
        }
        Err(ClusterError::BinariesNotFound {
            searched: searched.join(", "),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The major version of the server programs (`15` for `postgres (PostgreSQL) 15.8`).
    pub fn major_version(&self) -> Result<u32, ClusterError> {
        let output = Command::new(self.program("postgres"))
            .arg("--version")
            .output()
            .map_err(|source| ClusterError::Io {
                action: "run postgres --version".into(),
                source,
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .find_map(|word| word.split('.').next()?.parse::<u32>().ok())
            .ok_or_else(|| ClusterError::Command {
                action: "read the PostgreSQL version".into(),
                output: text.into_owned(),
            })
    }
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    output
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// `/usr/lib/postgresql/*/bin`, newest major version first.
fn debian_versioned_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
