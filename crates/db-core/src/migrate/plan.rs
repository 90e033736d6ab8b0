//! What a database holds compared with what this build embeds: applied, pending, drifted.
//!
//! Computed from the history table alone, read-only, so `status`, `verify` and `--dry-run`
//! can never change a database.

use std::fmt;

use refinery_core::Migration;
use serde::Serialize;

use super::set::MigrationSet;

/// One migration as it is known locally or recorded in a history table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    pub version: i32,
    pub name: String,
    /// refinery's checksum of name, version and SQL, as the decimal string it stores.
    pub checksum: String,
    /// RFC 3339 time the migration was applied; absent for local migrations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_on: Option<String>,
}

impl MigrationInfo {
    pub(crate) fn local(migration: &Migration) -> Self {
        Self {
            version: migration.version(),
            name: migration.name().to_owned(),
            checksum: migration.checksum().to_string(),
            applied_on: None,
        }
    }
}

impl fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V{}__{}", self.version, self.name)
    }
}

/// A difference between the history of a database and the migrations of this build that
/// makes applying anything unsafe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub set: String,
    pub version: i32,
    #[serde(flatten)]
    pub kind: DriftKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriftKind {
    /// An applied migration whose file changed afterwards (name or SQL).
    Edited {
        applied_name: String,
        local_name: String,
        applied_checksum: String,
        local_checksum: String,
    },
    /// Applied to the database but absent from this build, below this build's newest
    /// migration: a released migration was deleted. (Above it: a newer build migrated the
    /// database, which is not drift; see [`SetStatus::ahead`].)
    MissingLocally { applied_name: String },
    /// In this build but not applied, although a later version of the set is: it was added
    /// below a released version and would never run in order.
    OutOfOrder {
        local_name: String,
        latest_applied: i32,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (set, version) = (&self.set, self.version);
        match &self.kind {
            DriftKind::Edited {
                applied_name,
                local_name,
                applied_checksum,
                local_checksum,
            } => {
                if applied_name == local_name {
                    write!(
                        f,
                        "set {set}: V{version}__{local_name} was edited after it was applied \
                         (checksum {applied_checksum} in the database, {local_checksum} in this build)"
                    )
                } else {
                    write!(
                        f,
                        "set {set}: V{version} was applied as {applied_name:?} but is named \
                         {local_name:?} in this build"
                    )
                }
            }
            DriftKind::MissingLocally { applied_name } => write!(
                f,
                "set {set}: V{version}__{applied_name} is applied in the database but missing \
                 from this build, which has later migrations (was it deleted?)"
            ),
            DriftKind::OutOfOrder {
                local_name,
                latest_applied,
            } => write!(
                f,
                "set {set}: V{version}__{local_name} is not applied, but V{latest_applied} \
                 already is; new migrations need a version above {latest_applied}"
            ),
        }
    }
}

/// Where one set stands in one database.
#[derive(Debug, Clone, Serialize)]
pub struct SetStatus {
    pub set: String,
    pub schema: String,
    pub history_table: String,
    pub applied: Vec<MigrationInfo>,
    pub pending: Vec<MigrationInfo>,
    pub drift: Vec<Drift>,
    /// Applied migrations newer than every migration of this build: a newer build migrated
    /// the database (expand/contract: this build keeps working on the expanded schema).
    pub ahead: Vec<MigrationInfo>,
}

impl SetStatus {
    /// Nothing pending and nothing drifted; migrations of a newer build beyond this one's
    /// (`ahead`) are allowed, so that running servers stay ready while the next release
    /// migrates underneath them.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.drift.is_empty()
    }

    /// Compares the history read from the database with the set's local migrations.
    /// `target` limits `pending` to versions up to and including it.
    pub(crate) fn compare(
        set: &MigrationSet,
        applied: Vec<MigrationInfo>,
        target: Option<i32>,
    ) -> Self {
        let local: Vec<MigrationInfo> = set.migrations().iter().map(MigrationInfo::local).collect();
        let drift_at = |version: i32, kind: DriftKind| Drift {
            set: set.name().to_owned(),
            version,
            kind,
        };
        let mut drift = Vec::new();
        let mut ahead = Vec::new();
        let newest_local = local.iter().map(|m| m.version).max();

        for recorded in &applied {
            match local.iter().find(|m| m.version == recorded.version) {
                None if newest_local.is_none_or(|newest| recorded.version > newest) => {
                    ahead.push(recorded.clone());
                }
                None => drift.push(drift_at(
                    recorded.version,
                    DriftKind::MissingLocally {
                        applied_name: recorded.name.clone(),
                    },
                )),
                Some(file) if file.name != recorded.name || file.checksum != recorded.checksum => {
                    drift.push(drift_at(
                        recorded.version,
                        DriftKind::Edited {
                            applied_name: recorded.name.clone(),
                            local_name: file.name.clone(),
                            applied_checksum: recorded.checksum.clone(),
                            local_checksum: file.checksum.clone(),
                        },
                    ));
                }
                Some(_) => {}
            }
        }

        let latest_applied = applied.iter().map(|m| m.version).max();
        let mut pending = Vec::new();
        for file in local {
            if applied.iter().any(|m| m.version == file.version) {
                continue;
            }
            match latest_applied {
                Some(latest) if latest > file.version => drift.push(drift_at(
                    file.version,
                    DriftKind::OutOfOrder {
                        local_name: file.name.clone(),
                        latest_applied: latest,
                    },
                )),
                _ if target.is_some_and(|target| file.version > target) => {}
                _ => pending.push(file),
            }
        }

        Self {
            set: set.name().to_owned(),
            schema: set.schema().to_owned(),
            history_table: set.history_table(),
            applied,
            pending,
            drift,
            ahead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        let migrations = files
            .iter()
            .map(|(name, sql)| Migration::unapplied(name, sql).unwrap())
            .collect();
        MigrationSet::new("ai", "ai", migrations)
    }

    fn applied(set: &MigrationSet, versions: &[i32]) -> Vec<MigrationInfo> {
        set.migrations()
            .iter()
            .filter(|m| versions.contains(&m.version()))
            .map(|m| MigrationInfo {
                applied_on: Some("2026-01-01T00:00:00Z".into()),
                ..MigrationInfo::local(m)
            })
            .collect()
    }

    #[test]
    fn fresh_database_has_everything_pending() {
        let set = set(&[("V1__a", "SELECT 1"), ("V2__b", "SELECT 2")]);
        let status = SetStatus::compare(&set, vec![], None);
        assert_eq!(status.pending.len(), 2);
        assert!(status.drift.is_empty());
        assert!(!status.is_current());
    }

    #[test]
    fn target_limits_pending() {
        let set = set(&[
            ("V1__a", "SELECT 1"),
            ("V2__b", "SELECT 2"),
            ("V3__c", "SELECT 3"),
        ]);
        let status = SetStatus::compare(&set, applied(&set, &[1]), Some(2));
        let pending: Vec<i32> = status.pending.iter().map(|m| m.version).collect();
        assert_eq!(pending, [2]);
    }

    #[test]
    fn an_edited_migration_is_drift_naming_both_checksums() {
        let released = set(&[("V1__a", "SELECT 1")]);
        let history = applied(&released, &[1]);
        let edited = set(&[("V1__a", "SELECT 1 -- tweaked")]);
        let status = SetStatus::compare(&edited, history, None);
        assert_eq!(status.drift.len(), 1);
        assert!(matches!(status.drift[0].kind, DriftKind::Edited { .. }));
        assert!(
            status.drift[0]
                .to_string()
                .contains("was edited after it was applied")
        );
    }

    #[test]
    fn a_deleted_migration_is_drift_a_newer_one_is_ahead() {
        let released = set(&[
            ("V1__a", "SELECT 1"),
            ("V2__b", "SELECT 2"),
            ("V3__c", "SELECT 3"),
        ]);
        let history = applied(&released, &[1, 2, 3]);
        let deleted = set(&[("V1__a", "SELECT 1"), ("V3__c", "SELECT 3")]);
        let status = SetStatus::compare(&deleted, history.clone(), None);
        assert_eq!(
            status.drift[0].kind,
            DriftKind::MissingLocally {
                applied_name: "b".into()
            }
        );
        assert!(!status.is_current());

        let older = set(&[("V1__a", "SELECT 1")]);
        let status = SetStatus::compare(&older, history, None);
        assert!(status.drift.is_empty(), "{:?}", status.drift);
        let ahead: Vec<i32> = status.ahead.iter().map(|m| m.version).collect();
        assert_eq!(ahead, [2, 3]);
        assert!(status.is_current(), "an older build serves a newer schema");
    }

    #[test]
    fn a_migration_added_below_the_applied_version_is_drift_not_pending() {
        let released = set(&[("V1__a", "SELECT 1"), ("V3__c", "SELECT 3")]);
        let history = applied(&released, &[1, 3]);
        let with_gap_filled = set(&[
            ("V1__a", "SELECT 1"),
            ("V2__b", "SELECT 2"),
            ("V3__c", "SELECT 3"),
        ]);
        let status = SetStatus::compare(&with_gap_filled, history, None);
        assert!(status.pending.is_empty());
        assert!(matches!(
            status.drift[0].kind,
            DriftKind::OutOfOrder {
                latest_applied: 3,
                ..
            }
        ));
    }
}
