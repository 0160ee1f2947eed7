//! Metadata in an embedded SQLite database: projects and their credentials, and the saved
//! definitions of a project (segments, personas), kept as JSON the edges validate.
//!
//! Credentials come in two kinds that cannot stand in for each other: a **write key** can only
//! ingest (it ships inside web pages and apps, so it must not read data), a **read token** can only
//! query. Secrets are random, shown once, and stored as SHA-256 hashes; a short prefix is kept
//! to tell keys apart in listings.

mod maps;
mod triggers;
mod users;

pub use maps::{MapShare, MapVersion, SharedMap, StoredMap};
pub use triggers::{ActionOutcome, Firing, FiringAction, NewAction, PendingAction};
pub use users::{valid_email, NewSession, Role, Session, User};

use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The project that exists in every data directory, so single-project use needs no flag.
pub const DEFAULT_PROJECT: &str = "default";

/// The schema, one versioned SQL file per change (`migrations/`), applied in order on open; the
/// version is SQLite's `user_version`.
fn migrations() -> rusqlite_migration::Migrations<'static> {
    rusqlite_migration::Migrations::new(vec![
        rusqlite_migration::M::up(include_str!("../migrations/0001_initial.sql")),
        rusqlite_migration::M::up(include_str!("../migrations/0002_token_scopes.sql")),
        rusqlite_migration::M::up(include_str!("../migrations/0003_users_and_maps.sql")),
        rusqlite_migration::M::up(include_str!("../migrations/0004_map_shares.sql")),
        rusqlite_migration::M::up(include_str!("../migrations/0005_triggers.sql")),
    ])
}

/// What a saved definition is; stored as its name in the `definitions` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefinitionKind {
    Segment,
    Persona,
    StageModel,
    Survey,
    Alert,
    Trigger,
}

impl DefinitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Segment => "segment",
            DefinitionKind::Persona => "persona",
            DefinitionKind::StageModel => "stage_model",
            DefinitionKind::Survey => "survey",
            DefinitionKind::Alert => "alert",
            DefinitionKind::Trigger => "trigger",
        }
    }
}

impl std::fmt::Display for DefinitionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DefinitionKind::StageModel => "stage model",
            DefinitionKind::Alert => "alert rule",
            DefinitionKind::Trigger => "trigger rule",
            other => other.as_str(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database migration: {0}")]
    Migration(String),
    #[error("metadata database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no project named {0:?}")]
    NoProject(String),
    #[error("no key with id or prefix {0:?}")]
    NoKey(String),
    #[error("invalid project name {0:?}: use 1-64 letters, digits, '-' or '_'")]
    BadName(String),
    #[error("{0}")]
    BadValue(String),
    /// A value is wrong: the field and why.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A map was saved by someone else after the version an edit started from.
    #[error("the map was saved by someone else meanwhile")]
    Stale,
}

pub type Result<T> = std::result::Result<T, MetaError>;

/// What a credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Write,
    Read,
}

/// What a token (a `Bearer` credential of the query API) may do; each scope includes the ones
/// before it. Write keys are not tokens: they only ingest.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Run analyses, read definitions, jobs, alerts and cases.
    Read,
    /// Also change definitions (segments, personas, models, surveys, alert rules), mint survey
    /// links, evaluate alerts and manage cases.
    Edit,
    /// Also manage credentials and users.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Edit => "edit",
            Scope::Admin => "admin",
        }
    }

    /// The secret's prefix names the scope, so a leaked token says what it can do.
    fn prefix(self) -> &'static str {
        match self {
            Scope::Read => "rt_",
            Scope::Edit => "et_",
            Scope::Admin => "at_",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "edit" => Some(Scope::Edit),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Scope::parse(s).ok_or_else(|| format!("`{s}` is not a scope: read, edit or admin"))
    }
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            KeyKind::Write => "write",
            KeyKind::Read => "read",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            KeyKind::Write => "wk_",
            KeyKind::Read => "rt_",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub created_at: String,
}

/// A key as listed: never the secret, only its prefix.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: i64,
    pub project: String,
    pub kind: KeyKind,
    /// Tokens: what they may do (write keys: none).
    pub scope: Option<Scope>,
    pub prefix: String,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A saved definition (a segment, a persona): its JSON body and its place in an ordered list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Definition {
    pub name: String,
    pub position: i64,
    pub body: String,
    pub updated_at: String,
}

/// An alert that fired, with where its delivery stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AlertRecord {
    pub id: i64,
    pub rule: String,
    pub key: String,
    pub payload: serde_json::Value,
    pub created_at: String,
    /// `pending`, `delivered`, `failed` or `none` (no webhook).
    pub delivery: String,
    pub attempts: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    /// `webhook` or `email`.
    pub channel: String,
    pub attempt: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub at: String,
}

/// A case opened to close the loop with a customer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Case {
    pub id: i64,
    pub alert_id: Option<i64>,
    pub person: Option<String>,
    pub title: String,
    pub status: String,
    pub assignee: Option<String>,
    pub root_cause: Option<String>,
    pub action: Option<String>,
    pub follow_up: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Changes to a case; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseUpdate {
    pub status: Option<String>,
    pub assignee: Option<String>,
    pub root_cause: Option<String>,
    pub action: Option<String>,
    pub follow_up: Option<String>,
}

/// Case statuses.
pub const CASE_STATUSES: [&str; 4] = ["open", "in_progress", "waiting_on_customer", "closed"];

/// A freshly created pair of credentials; the only time the secrets are visible.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewKeys {
    pub project: String,
    pub write_key: String,
    pub read_token: String,
}

pub struct Meta {
    conn: Connection,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The clock in ms since the epoch (session expiries are kept so).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn new_secret(kind: KeyKind) -> String {
    random_secret(kind.prefix())
}

fn new_token(scope: Scope) -> String {
    random_secret(scope.prefix())
}

fn random_secret(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    let body: String = (0..32)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{body}")
}

pub fn valid_project_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Meta {
    /// Opens (or creates) the database and makes sure the default project exists.
    pub fn open(path: &Path) -> Result<Meta> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // deleted rows are overwritten, not left in free pages: erasure must reach the file
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|e| MetaError::Migration(e.to_string()))?;
        let meta = Meta { conn };
        meta.ensure_project(DEFAULT_PROJECT)?;
        Ok(meta)
    }

    /// Saves (creates or replaces) a definition of `kind` in `project`.
    pub fn put_definition(
        &self,
        project: &str,
        kind: DefinitionKind,
        name: &str,
        body: &str,
        position: i64,
    ) -> Result<()> {
        let p = self.project(project)?;
        self.conn.execute(
            "INSERT INTO definitions (project_id, kind, name, position, body, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (project_id, kind, name) DO UPDATE SET
                position = excluded.position, body = excluded.body, updated_at = excluded.updated_at",
            params![p.id, kind.as_str(), name, position, body, now()],
        )?;
        Ok(())
    }

    /// The definitions of `kind` in `project`, by position then name.
    pub fn definitions(&self, project: &str, kind: DefinitionKind) -> Result<Vec<Definition>> {
        let p = self.project(project)?;
        let mut st = self.conn.prepare(
            "SELECT name, position, body, updated_at FROM definitions
             WHERE project_id = ?1 AND kind = ?2 ORDER BY position, name",
        )?;
        let rows = st.query_map(params![p.id, kind.as_str()], |r| {
            Ok(Definition {
                name: r.get(0)?,
                position: r.get(1)?,
                body: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Deletes a definition; false when there was none.
    pub fn delete_definition(
        &self,
        project: &str,
        kind: DefinitionKind,
        name: &str,
    ) -> Result<bool> {
        let p = self.project(project)?;
        let n = self.conn.execute(
            "DELETE FROM definitions WHERE project_id = ?1 AND kind = ?2 AND name = ?3",
            params![p.id, kind.as_str(), name],
        )?;
        Ok(n > 0)
    }

    /// A server secret (e.g. the key that signs survey links), created at random on first use.
    pub fn secret(&self, name: &str) -> Result<String> {
        let found: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(v) = found {
            return Ok(v);
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill(&mut bytes);
        let v = hex::encode(bytes);
        self.conn.execute(
            "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
            params![name, v],
        )?;
        Ok(self.conn.query_row(
            "SELECT value FROM secrets WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?)
    }

    /// (watermark, last fired) of an alert rule; `None` before its first evaluation.
    pub fn alert_state(&self, project: &str, rule: &str) -> Result<Option<(i64, Option<i64>)>> {
        let p = self.project(project)?;
        Ok(self
            .conn
            .query_row(
                "SELECT watermark_ms, last_fired_ms FROM alert_state WHERE project_id = ?1 AND rule = ?2",
                params![p.id, rule],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn set_alert_state(
        &self,
        project: &str,
        rule: &str,
        watermark_ms: i64,
        last_fired_ms: Option<i64>,
    ) -> Result<()> {
        let p = self.project(project)?;
        self.conn.execute(
            "INSERT INTO alert_state (project_id, rule, watermark_ms, last_fired_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (project_id, rule) DO UPDATE SET watermark_ms = excluded.watermark_ms,
                last_fired_ms = excluded.last_fired_ms",
            params![p.id, rule, watermark_ms, last_fired_ms],
        )?;
        Ok(())
    }

    /// Records an alert; `None` when one with the same rule and key exists (deduplication).
    pub fn insert_alert(
        &self,
        project: &str,
        rule: &str,
        key: &str,
        payload: &serde_json::Value,
        delivery: &str,
    ) -> Result<Option<i64>> {
        let p = self.project(project)?;
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO alerts (project_id, rule, key, payload, created_at, delivery)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![p.id, rule, key, payload.to_string(), now(), delivery],
        )?;
        Ok((n > 0).then(|| self.conn.last_insert_rowid()))
    }

    /// Whether `rule` fired an alert whose key starts with `key_prefix` at or after `since_ms`.
    pub fn recent_alert(
        &self,
        project: &str,
        rule: &str,
        key_prefix: &str,
        since_ms: i64,
    ) -> Result<bool> {
        let p = self.project(project)?;
        let since = chrono::DateTime::from_timestamp_millis(since_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM alerts WHERE project_id = ?1 AND rule = ?2
             AND substr(key, 1, length(?3)) = ?3 AND created_at >= ?4",
            params![p.id, rule, key_prefix, since],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    pub fn log_delivery(
        &self,
        alert_id: i64,
        channel: &str,
        attempt: i64,
        status: Option<i64>,
        error: Option<&str>,
        outcome: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO deliveries (alert_id, attempt, status, error, at, channel) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![alert_id, attempt, status, error, now(), channel],
        )?;
        if let Some(o) = outcome {
            self.conn.execute(
                "UPDATE alerts SET delivery = ?2 WHERE id = ?1",
                params![alert_id, o],
            )?;
        }
        Ok(())
    }

    /// The newest alerts of a project with their delivery attempts.
    pub fn alerts(&self, project: &str, limit: i64) -> Result<Vec<AlertRecord>> {
        let p = self.project(project)?;
        let mut st = self.conn.prepare(
            "SELECT id, rule, key, payload, created_at, delivery FROM alerts
             WHERE project_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st
            .query_map(params![p.id, limit], |r| {
                Ok(AlertRecord {
                    id: r.get(0)?,
                    rule: r.get(1)?,
                    key: r.get(2)?,
                    payload: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                    created_at: r.get(4)?,
                    delivery: r.get(5)?,
                    attempts: Vec::new(),
                })
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut st = self.conn.prepare(
            "SELECT attempt, status, error, at, channel FROM deliveries WHERE alert_id = ?1 ORDER BY channel DESC, attempt",
        )?;
        rows.into_iter()
            .map(|mut a| {
                a.attempts = st
                    .query_map(params![a.id], |r| {
                        Ok(DeliveryAttempt {
                            channel: r.get(4)?,
                            attempt: r.get(0)?,
                            status: r.get(1)?,
                            error: r.get(2)?,
                            at: r.get(3)?,
                        })
                    })?
                    .collect::<std::result::Result<_, _>>()?;
                Ok(a)
            })
            .collect()
    }

    pub fn open_case(
        &self,
        project: &str,
        alert_id: Option<i64>,
        person: Option<&str>,
        title: &str,
    ) -> Result<i64> {
        let p = self.project(project)?;
        let t = now();
        self.conn.execute(
            "INSERT INTO cases (project_id, alert_id, person, title, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![p.id, alert_id, person, title, t],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    const CASE_COLUMNS: &'static str = "id, alert_id, person, title, status, assignee, root_cause, action, follow_up, created_at, updated_at";

    fn case_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Case> {
        Ok(Case {
            id: r.get(0)?,
            alert_id: r.get(1)?,
            person: r.get(2)?,
            title: r.get(3)?,
            status: r.get(4)?,
            assignee: r.get(5)?,
            root_cause: r.get(6)?,
            action: r.get(7)?,
            follow_up: r.get(8)?,
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
        })
    }

    /// Cases of a project, newest first, optionally of one status.
    pub fn cases(&self, project: &str, status: Option<&str>) -> Result<Vec<Case>> {
        let p = self.project(project)?;
        let sql = format!(
            "SELECT {} FROM cases WHERE project_id = ?1 AND (?2 IS NULL OR status = ?2) ORDER BY id DESC",
            Self::CASE_COLUMNS
        );
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(params![p.id, status], Self::case_of)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Case `id` of `project`.
    pub fn case(&self, project: &str, id: i64) -> Result<Option<Case>> {
        let p = self.project(project)?;
        let sql = format!(
            "SELECT {} FROM cases WHERE id = ?1 AND project_id = ?2",
            Self::CASE_COLUMNS
        );
        Ok(self
            .conn
            .query_row(&sql, params![id, p.id], Self::case_of)
            .optional()?)
    }

    /// Applies `u` to case `id` of `project`; `None` when there is no such case.
    pub fn update_case(&self, project: &str, id: i64, u: &CaseUpdate) -> Result<Option<Case>> {
        let p = self.project(project)?;
        if let Some(s) = &u.status {
            if !CASE_STATUSES.contains(&s.as_str()) {
                return Err(MetaError::BadValue(format!(
                    "status {s:?}: expected one of {}",
                    CASE_STATUSES.join(", ")
                )));
            }
        }
        let n = self.conn.execute(
            "UPDATE cases SET status = COALESCE(?3, status), assignee = COALESCE(?4, assignee),
                root_cause = COALESCE(?5, root_cause), action = COALESCE(?6, action),
                follow_up = COALESCE(?7, follow_up), updated_at = ?8
             WHERE id = ?1 AND project_id = ?2",
            params![
                id,
                p.id,
                u.status,
                u.assignee,
                u.root_cause,
                u.action,
                u.follow_up,
                now()
            ],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let sql = format!("SELECT {} FROM cases WHERE id = ?1", Self::CASE_COLUMNS);
        Ok(Some(self.conn.query_row(
            &sql,
            params![id],
            Self::case_of,
        )?))
    }

    /// Creates the project if missing; returns it.
    pub fn ensure_project(&self, name: &str) -> Result<Project> {
        if !valid_project_name(name) {
            return Err(MetaError::BadName(name.into()));
        }
        self.conn.execute(
            "INSERT OR IGNORE INTO projects (name, created_at) VALUES (?1, ?2)",
            params![name, now()],
        )?;
        self.project(name)
    }

    pub fn project(&self, name: &str) -> Result<Project> {
        self.conn
            .query_row(
                "SELECT id, name, created_at FROM projects WHERE name = ?1",
                [name],
                |r| {
                    Ok(Project {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| MetaError::NoProject(name.into()))
    }

    pub fn projects(&self) -> Result<Vec<Project>> {
        let mut st = self
            .conn
            .prepare("SELECT id, name, created_at FROM projects ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(Project {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Creates a write key and a read token for the project (creating the project if needed).
    pub fn create_keys(&self, project: &str, label: &str) -> Result<NewKeys> {
        let p = self.ensure_project(project)?;
        let write_key = new_secret(KeyKind::Write);
        let read_token = new_secret(KeyKind::Read);
        for (kind, scope, secret) in [
            (KeyKind::Write, "ingest", &write_key),
            (KeyKind::Read, "read", &read_token),
        ] {
            self.conn.execute(
                "INSERT INTO keys (project_id, kind, scope, prefix, hash, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![p.id, kind.as_str(), scope, &secret[..10], hash(secret), label, now()],
            )?;
        }
        Ok(NewKeys {
            project: p.name,
            write_key,
            read_token,
        })
    }

    /// Creates a token of `scope` for the project (creating the project if needed); the only
    /// time its secret is visible.
    pub fn create_token(&self, project: &str, scope: Scope, label: &str) -> Result<String> {
        let p = self.ensure_project(project)?;
        let secret = new_token(scope);
        self.conn.execute(
            "INSERT INTO keys (project_id, kind, scope, prefix, hash, label, created_at) VALUES (?1, 'read', ?2, ?3, ?4, ?5, ?6)",
            params![p.id, scope.as_str(), &secret[..10], hash(&secret), label, now()],
        )?;
        Ok(secret)
    }

    /// Creates a write key for the project; the only time its secret is visible.
    pub fn create_write_key(&self, project: &str, label: &str) -> Result<String> {
        let p = self.project(project)?;
        let secret = new_secret(KeyKind::Write);
        self.conn.execute(
            "INSERT INTO keys (project_id, kind, scope, prefix, hash, label, created_at) VALUES (?1, 'write', 'ingest', ?2, ?3, ?4, ?5)",
            params![p.id, &secret[..10], hash(&secret), label, now()],
        )?;
        Ok(secret)
    }

    /// Revokes the key with this id if it belongs to `project` (an admin of one project cannot
    /// revoke another's keys).
    pub fn revoke_in(&self, project: &str, id: i64) -> Result<()> {
        let p = self.project(project)?;
        let n = self.conn.execute(
            "UPDATE keys SET revoked_at = ?3 WHERE id = ?1 AND project_id = ?2 AND revoked_at IS NULL",
            params![id, p.id, now()],
        )?;
        if n == 0 {
            return Err(MetaError::NoKey(id.to_string()));
        }
        Ok(())
    }

    /// The project and scope of a live token.
    pub fn authenticate_token(&self, secret: &str) -> Result<Option<(String, Scope)>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT p.name, k.scope FROM keys k JOIN projects p ON p.id = k.project_id
                 WHERE k.hash = ?1 AND k.kind = 'read' AND k.revoked_at IS NULL",
                params![hash(secret)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(p, s)| Scope::parse(&s).map(|s| (p, s))))
    }

    pub fn keys(&self, project: Option<&str>) -> Result<Vec<KeyInfo>> {
        let mut st = self.conn.prepare(
            "SELECT k.id, p.name, k.kind, k.prefix, k.label, k.created_at, k.revoked_at, k.scope
             FROM keys k JOIN projects p ON p.id = k.project_id
             WHERE ?1 IS NULL OR p.name = ?1 ORDER BY k.id",
        )?;
        let rows = st.query_map([project], |r| {
            let kind: String = r.get(2)?;
            Ok(KeyInfo {
                id: r.get(0)?,
                project: r.get(1)?,
                kind: if kind == "write" {
                    KeyKind::Write
                } else {
                    KeyKind::Read
                },
                scope: Scope::parse(&r.get::<_, String>(7)?),
                prefix: r.get(3)?,
                label: r.get(4)?,
                created_at: r.get(5)?,
                revoked_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Revokes a key by its id or its prefix; returns how many keys were revoked.
    pub fn revoke(&self, id_or_prefix: &str) -> Result<usize> {
        let n = self.conn.execute(
            "UPDATE keys SET revoked_at = ?2 WHERE revoked_at IS NULL AND (CAST(id AS TEXT) = ?1 OR prefix = ?1)",
            params![id_or_prefix, now()],
        )?;
        if n == 0 {
            return Err(MetaError::NoKey(id_or_prefix.into()));
        }
        Ok(n)
    }

    /// Erases what the metadata holds of a person (`ids`: every id linked to them): the alerts
    /// their answers fired, with their deliveries, and their cases. Deleted rows are overwritten
    /// (`secure_delete`) and the write-ahead log is checkpointed and truncated, so no file keeps
    /// them. Returns (alerts, cases) erased.
    pub fn erase_person(&self, project: &str, ids: &[String]) -> Result<(usize, usize)> {
        let p = self.project(project)?;
        let tx = self.conn.unchecked_transaction()?;
        let mut alerts = Vec::new();
        {
            let mut st = tx.prepare(
                "SELECT id, json_extract(payload, '$.person') FROM alerts WHERE project_id = ?1",
            )?;
            let rows = st.query_map([p.id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
            })?;
            for row in rows {
                let (id, person) = row?;
                if person.is_some_and(|x| ids.contains(&x)) {
                    alerts.push(id);
                }
            }
        }
        let mut cases = 0;
        for id in &alerts {
            tx.execute("DELETE FROM deliveries WHERE alert_id = ?1", [id])?;
            cases += tx.execute("DELETE FROM cases WHERE alert_id = ?1", [id])?;
            tx.execute("DELETE FROM alerts WHERE id = ?1", [id])?;
        }
        for person in ids {
            cases += tx.execute(
                "DELETE FROM cases WHERE project_id = ?1 AND person = ?2",
                params![p.id, person],
            )?;
        }
        Meta::erase_trigger_state(&tx, p.id, ids)?;
        tx.commit()?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok((alerts.len(), cases))
    }

    /// The project a live secret of the given kind belongs to.
    pub fn authenticate(&self, secret: &str, kind: KeyKind) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT p.name FROM keys k JOIN projects p ON p.id = k.project_id
                 WHERE k.hash = ?1 AND k.kind = ?2 AND k.revoked_at IS NULL",
                params![hash(secret), kind.as_str()],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens carry their scope; read tokens made before scopes existed stay read tokens; write
    /// keys are never tokens.
    #[test]
    fn tokens_have_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.sqlite")).unwrap();
        let pair = m.create_keys("shop", "").unwrap();
        assert_eq!(
            m.authenticate_token(&pair.read_token).unwrap(),
            Some(("shop".into(), Scope::Read))
        );
        assert_eq!(m.authenticate_token(&pair.write_key).unwrap(), None);
        let edit = m.create_token("shop", Scope::Edit, "ci").unwrap();
        assert!(edit.starts_with("et_"));
        assert_eq!(
            m.authenticate_token(&edit).unwrap(),
            Some(("shop".into(), Scope::Edit))
        );
        let admin = m.create_token("shop", Scope::Admin, "").unwrap();
        assert_eq!(
            m.authenticate_token(&admin).unwrap().unwrap().1,
            Scope::Admin
        );
        assert!(Scope::Read < Scope::Edit && Scope::Edit < Scope::Admin);
        let listed: Vec<_> = m
            .keys(Some("shop"))
            .unwrap()
            .iter()
            .map(|k| k.scope)
            .collect();
        assert_eq!(
            listed,
            [
                None,
                Some(Scope::Read),
                Some(Scope::Edit),
                Some(Scope::Admin)
            ]
        );
        m.revoke(&edit[..10]).unwrap();
        assert_eq!(m.authenticate_token(&edit).unwrap(), None);
    }

    /// A database written before migrations existed (a `schema_version` table, `user_version` 0)
    /// opens, keeps its rows, and is marked as at the latest migration.
    #[test]
    fn databases_from_before_migrations_open_and_keep_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(include_str!("../migrations/0001_initial.sql"))
                .unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (1);
                 INSERT INTO projects (name, created_at) VALUES ('old', '2026-01-01T00:00:00Z');",
            )
            .unwrap();
            // a read token and a write key of that time
            conn.execute(
                "INSERT INTO keys (project_id, kind, prefix, hash, created_at)
                 VALUES ((SELECT id FROM projects WHERE name = 'old'), 'read', 'rt_old', ?1, 'x'),
                        ((SELECT id FROM projects WHERE name = 'old'), 'write', 'wk_old', ?2, 'x')",
                params![hash("rt_oldsecret"), hash("wk_oldsecret")],
            )
            .unwrap();
        }
        let m = Meta::open(&path).unwrap();
        assert_eq!(m.project("old").unwrap().name, "old");
        let v: i64 = m
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .count() as i64;
        assert_eq!(v, files, "every migration file registered and applied");
        assert_eq!(
            m.authenticate_token("rt_oldsecret").unwrap(),
            Some(("old".into(), Scope::Read)),
            "tokens from before scopes stay read tokens"
        );
        assert_eq!(m.authenticate_token("wk_oldsecret").unwrap(), None);
        assert_eq!(
            m.authenticate("wk_oldsecret", KeyKind::Write)
                .unwrap()
                .as_deref(),
            Some("old")
        );
        drop(m);
        // opening again applies nothing twice
        Meta::open(&path).unwrap();
    }

    #[test]
    fn alerts_deliveries_and_cases() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        assert_eq!(m.alert_state("default", "r").unwrap(), None);
        m.set_alert_state("default", "r", 5, Some(3)).unwrap();
        assert_eq!(m.alert_state("default", "r").unwrap(), Some((5, Some(3))));
        let payload = serde_json::json!({"score": 2});
        let id = m
            .insert_alert("default", "r", "k1", &payload, "pending")
            .unwrap()
            .unwrap();
        assert_eq!(
            m.insert_alert("default", "r", "k1", &payload, "pending")
                .unwrap(),
            None,
            "deduplicated"
        );
        m.log_delivery(id, "webhook", 1, Some(500), Some("server error"), None)
            .unwrap();
        m.log_delivery(id, "webhook", 2, Some(200), None, Some("delivered"))
            .unwrap();
        let a = m.alerts("default", 10).unwrap();
        assert_eq!(a[0].delivery, "delivered");
        assert_eq!(a[0].attempts.len(), 2);
        let c = m
            .open_case("default", Some(id), Some("p1"), "detractor")
            .unwrap();
        let u = CaseUpdate {
            status: Some("in_progress".into()),
            assignee: Some("kim".into()),
            ..Default::default()
        };
        let case = m.update_case("default", c, &u).unwrap().unwrap();
        assert_eq!(
            (case.status.as_str(), case.assignee.as_deref()),
            ("in_progress", Some("kim"))
        );
        assert!(m.update_case("default", 999, &u).unwrap().is_none());
        let bad = CaseUpdate {
            status: Some("done".into()),
            ..Default::default()
        };
        assert!(m.update_case("default", c, &bad).is_err());
        assert_eq!(m.cases("default", Some("in_progress")).unwrap().len(), 1);
        assert!(m.cases("default", Some("closed")).unwrap().is_empty());
    }

    #[test]
    fn definitions_are_saved_per_project_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.db")).unwrap();
        m.ensure_project("other").unwrap();
        m.put_definition("default", DefinitionKind::Persona, "b", "{\"x\":1}", 2)
            .unwrap();
        m.put_definition("default", DefinitionKind::Persona, "a", "{}", 1)
            .unwrap();
        m.put_definition("default", DefinitionKind::Segment, "a", "{}", 0)
            .unwrap();
        m.put_definition("default", DefinitionKind::Persona, "b", "{\"x\":2}", 0)
            .unwrap();
        let p = m.definitions("default", DefinitionKind::Persona).unwrap();
        assert_eq!(
            p.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(p[0].body, "{\"x\":2}");
        assert!(m
            .definitions("other", DefinitionKind::Persona)
            .unwrap()
            .is_empty());
        assert!(m
            .delete_definition("default", DefinitionKind::Persona, "a")
            .unwrap());
        assert!(!m
            .delete_definition("default", DefinitionKind::Persona, "a")
            .unwrap());
        assert!(matches!(
            m.definitions("nope", DefinitionKind::Segment),
            Err(MetaError::NoProject(_))
        ));
    }

    #[test]
    fn keys_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.sqlite")).unwrap();
        assert_eq!(m.projects().unwrap()[0].name, DEFAULT_PROJECT);
        let k = m.create_keys("shop", "web").unwrap();
        assert!(k.write_key.starts_with("wk_") && k.read_token.starts_with("rt_"));
        assert_eq!(
            m.authenticate(&k.write_key, KeyKind::Write)
                .unwrap()
                .as_deref(),
            Some("shop")
        );
        assert_eq!(
            m.authenticate(&k.write_key, KeyKind::Read).unwrap(),
            None,
            "a write key cannot read"
        );
        assert_eq!(
            m.authenticate(&k.read_token, KeyKind::Write).unwrap(),
            None,
            "a read token cannot write"
        );
        let listed = m.keys(Some("shop")).unwrap();
        assert_eq!(listed.len(), 2);
        let raw = std::fs::read(dir.path().join("meta.sqlite")).unwrap_or_default();
        let wal = std::fs::read(dir.path().join("meta.sqlite-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(
                !bytes
                    .windows(k.write_key.len())
                    .any(|w| w == k.write_key.as_bytes()),
                "secrets are stored hashed"
            );
        }
        m.revoke(&listed[0].prefix).unwrap();
        assert_eq!(m.authenticate(&k.write_key, KeyKind::Write).unwrap(), None);
        assert!(m.revoke("nope").is_err());
        assert!(m.ensure_project("bad name!").is_err());
    }
}
