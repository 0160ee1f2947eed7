//! Journey maps: the current document of each map, and every saved version of it, so that a
//! version can be listed, compared and restored. The document is JSON the application layer
//! validates; saving checks the version the editor started from, so two editors cannot
//! silently overwrite each other.

use crate::{hash, now, random_secret, Meta, MetaError, Result};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// A map's current document and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMap {
    pub name: String,
    pub version: i64,
    pub body: String,
    pub updated_at: String,
    pub updated_by: String,
}

/// One saved version (without its body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapVersion {
    pub version: i64,
    pub saved_at: String,
    pub saved_by: String,
    pub note: String,
}

/// A read-only link to a map, as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MapShare {
    pub id: i64,
    pub prefix: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// What a live share link shows: one map of one project.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedMap {
    pub project: String,
    pub name: String,
    pub expires_at_ms: i64,
}

/// A `maps` row selected as `name, version, body, updated_at, updated_by`.
fn stored_map(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMap> {
    Ok(StoredMap {
        name: r.get(0)?,
        version: r.get(1)?,
        body: r.get(2)?,
        updated_at: r.get(3)?,
        updated_by: r.get(4)?,
    })
}

impl Meta {
    /// The rows of `sql` about one map of a project (`?1` the project's id, `?2` the map's name).
    fn map_rows<T>(
        &self,
        project: &str,
        name: &str,
        sql: &str,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let p = self.project(project)?;
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map(params![p.id, name], row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn map(&self, project: &str, name: &str) -> Result<Option<StoredMap>> {
        Ok(self
            .map_rows(
                project,
                name,
                "SELECT name, version, body, updated_at, updated_by FROM maps
                 WHERE project_id = ?1 AND name = ?2",
                stored_map,
            )?
            .pop())
    }

    /// The project's maps, current versions, by name.
    pub fn maps(&self, project: &str) -> Result<Vec<StoredMap>> {
        let p = self.project(project)?;
        let mut st = self.conn.prepare(
            "SELECT name, version, body, updated_at, updated_by FROM maps
             WHERE project_id = ?1 ORDER BY name",
        )?;
        let rows = st.query_map([p.id], stored_map)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Saves a new version of the map. `base` is the version the editor started from (`None`
    /// overwrites whatever is there); a different current version refuses the save with
    /// [`MetaError::Stale`]. Returns the new version number.
    pub fn save_map(
        &self,
        project: &str,
        name: &str,
        body: &str,
        base: Option<i64>,
        by: &str,
        note: &str,
    ) -> Result<i64> {
        let p = self.project(project)?;
        let tx = self.conn.unchecked_transaction()?;
        let current: Option<i64> = tx
            .query_row(
                "SELECT version FROM maps WHERE project_id = ?1 AND name = ?2",
                params![p.id, name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(base) = base {
            if current.unwrap_or(0) != base {
                return Err(MetaError::Stale);
            }
        }
        let version = current.unwrap_or(0) + 1;
        let at = now();
        tx.execute(
            "INSERT INTO maps (project_id, name, version, body, updated_at, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (project_id, name) DO UPDATE SET version = ?3, body = ?4, updated_at = ?5, updated_by = ?6",
            params![p.id, name, version, body, at, by],
        )?;
        tx.execute(
            "INSERT INTO map_versions (project_id, name, version, body, saved_at, saved_by, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![p.id, name, version, body, at, by, note],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// Every saved version of a map, newest first.
    pub fn map_versions(&self, project: &str, name: &str) -> Result<Vec<MapVersion>> {
        self.map_rows(
            project,
            name,
            "SELECT version, saved_at, saved_by, note FROM map_versions
             WHERE project_id = ?1 AND name = ?2 ORDER BY version DESC",
            |r| {
                Ok(MapVersion {
                    version: r.get(0)?,
                    saved_at: r.get(1)?,
                    saved_by: r.get(2)?,
                    note: r.get(3)?,
                })
            },
        )
    }

    /// The body of one saved version.
    pub fn map_version(&self, project: &str, name: &str, version: i64) -> Result<Option<String>> {
        let p = self.project(project)?;
        Ok(self
            .conn
            .query_row(
                "SELECT body FROM map_versions WHERE project_id = ?1 AND name = ?2 AND version = ?3",
                params![p.id, name, version],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Deletes a map and its versions; false when there was none.
    pub fn delete_map(&self, project: &str, name: &str) -> Result<bool> {
        let p = self.project(project)?;
        self.conn.execute(
            "DELETE FROM map_versions WHERE project_id = ?1 AND name = ?2",
            params![p.id, name],
        )?;
        Ok(self.conn.execute(
            "DELETE FROM maps WHERE project_id = ?1 AND name = ?2",
            params![p.id, name],
        )? > 0)
    }
}

impl Meta {
    /// Creates a read-only link to a map until `expires_at_ms`; returns it and its secret, the
    /// only time the secret is visible.
    pub fn create_share(
        &self,
        project: &str,
        name: &str,
        expires_at_ms: i64,
        by: &str,
    ) -> Result<(MapShare, String)> {
        let p = self.project(project)?;
        let secret = random_secret("sh_");
        self.conn.execute(
            "INSERT INTO map_shares (project_id, name, hash, prefix, created_at, created_by, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![p.id, name, hash(&secret), &secret[..10], now(), by, expires_at_ms],
        )?;
        let id = self.conn.last_insert_rowid();
        let share = self
            .shares(project, name)?
            .into_iter()
            .find(|s| s.id == id)
            .expect("just inserted");
        Ok((share, secret))
    }

    /// The links of a map, newest first.
    pub fn shares(&self, project: &str, name: &str) -> Result<Vec<MapShare>> {
        self.map_rows(
            project,
            name,
            "SELECT id, prefix, created_at, created_by, expires_at, revoked_at FROM map_shares
             WHERE project_id = ?1 AND name = ?2 ORDER BY id DESC",
            |r| {
                Ok(MapShare {
                    id: r.get(0)?,
                    prefix: r.get(1)?,
                    created_at: r.get(2)?,
                    created_by: r.get(3)?,
                    expires_at_ms: r.get(4)?,
                    revoked_at: r.get(5)?,
                })
            },
        )
    }

    /// Revokes a link of the map; false when it has no such live link.
    pub fn revoke_share(&self, project: &str, name: &str, id: i64) -> Result<bool> {
        let p = self.project(project)?;
        Ok(self.conn.execute(
            "UPDATE map_shares SET revoked_at = ?4
             WHERE id = ?1 AND project_id = ?2 AND name = ?3 AND revoked_at IS NULL",
            params![id, p.id, name, now()],
        )? > 0)
    }

    /// What a link's secret shows at `now_ms`, if it is live (not expired, not revoked).
    pub fn shared_map(&self, secret: &str, now_ms: i64) -> Result<Option<SharedMap>> {
        Ok(self
            .conn
            .query_row(
                "SELECT p.name, s.name, s.expires_at FROM map_shares s JOIN projects p ON p.id = s.project_id
                 WHERE s.hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2",
                params![hash(secret), now_ms],
                |r| {
                    Ok(SharedMap {
                        project: r.get(0)?,
                        name: r.get(1)?,
                        expires_at_ms: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_save_is_a_version_and_a_stale_base_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.sqlite")).unwrap();
        assert_eq!(
            m.save_map("default", "cj", "{\"a\":1}", Some(0), "ada", "first")
                .unwrap(),
            1
        );
        assert_eq!(
            m.save_map("default", "cj", "{\"a\":2}", Some(1), "bob", "")
                .unwrap(),
            2
        );
        let stale = m.save_map("default", "cj", "{\"a\":3}", Some(1), "ada", "");
        assert!(matches!(stale, Err(MetaError::Stale)));
        let current = m.map("default", "cj").unwrap().unwrap();
        assert_eq!((current.version, current.body.as_str()), (2, "{\"a\":2}"));
        let versions: Vec<i64> = m
            .map_versions("default", "cj")
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect();
        assert_eq!(versions, [2, 1]);
        assert_eq!(
            m.map_version("default", "cj", 1).unwrap().unwrap(),
            "{\"a\":1}"
        );
        assert!(m.delete_map("default", "cj").unwrap());
        assert!(m.map("default", "cj").unwrap().is_none());
        assert!(m.map_versions("default", "cj").unwrap().is_empty());
    }

    #[test]
    fn share_links_expire_and_are_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.sqlite")).unwrap();
        let (share, secret) = m.create_share("default", "cj", 1_000, "ada").unwrap();
        assert!(secret.starts_with("sh_") && share.prefix == secret[..10]);
        let live = m.shared_map(&secret, 999).unwrap().unwrap();
        assert_eq!(
            (live.project.as_str(), live.name.as_str()),
            ("default", "cj")
        );
        assert_eq!(m.shared_map(&secret, 1_000).unwrap(), None, "expired");
        assert_eq!(m.shared_map("sh_made_up", 0).unwrap(), None);
        assert!(
            !m.revoke_share("default", "other", share.id).unwrap(),
            "only the map's own links"
        );
        assert!(m.revoke_share("default", "cj", share.id).unwrap());
        assert_eq!(m.shared_map(&secret, 0).unwrap(), None, "revoked");
        assert!(m.shares("default", "cj").unwrap()[0].revoked_at.is_some());
    }
}
