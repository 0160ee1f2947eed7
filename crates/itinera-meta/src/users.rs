//! Users of the web app and their browser sessions. A user's role holds for every project of the
//! data directory. Password hashes are computed and checked by the application layer (argon2id);
//! this module only stores them. Session secrets are stored as SHA-256 hashes, like tokens.

use crate::{hash, now, random_secret, Meta, MetaError, Result, Scope};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// What a user may do: the same three levels as tokens (docs/security.md).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every view and analysis.
    Viewer,
    /// Also edits maps, segments, personas, models, surveys, alert rules and cases.
    Editor,
    /// Also manages users and project credentials.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    /// The token scope with the same rights.
    pub fn scope(self) -> Scope {
        match self {
            Role::Viewer => Scope::Read,
            Role::Editor => Scope::Edit,
            Role::Admin => Scope::Admin,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("`{s}` is not a role: viewer, editor or admin")),
        }
    }
}

/// A user as listed (never with the password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub created_at: String,
}

/// A live session: who, and the CSRF token its page must echo.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub expires_at_ms: i64,
}

/// A new session's secrets, shown once: the cookie value and the CSRF token.
pub struct NewSession {
    pub secret: String,
    pub csrf: String,
}

fn row_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        role: role.parse().unwrap_or(Role::Viewer),
        created_at: r.get(3)?,
    })
}

/// An e-mail address as a login name: trimmed, with one `@` between non-empty parts.
pub fn valid_email(email: &str) -> bool {
    let e = email.trim();
    e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(e.split_once('@'), Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains('@'))
}

impl Meta {
    /// Creates a user with an already computed password hash.
    pub fn create_user(&self, email: &str, role: Role, password_hash: &str) -> Result<User> {
        let email = email.trim();
        if !valid_email(email) {
            return Err(MetaError::Invalid {
                field: "email",
                reason: format!("{email:?} is not an e-mail address"),
            });
        }
        if self.user_by_email(email)?.is_some() {
            return Err(MetaError::Invalid {
                field: "email",
                reason: format!("a user with {email:?} exists already"),
            });
        }
        self.conn.execute(
            "INSERT INTO users (email, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![email, role.as_str(), password_hash, now()],
        )?;
        Ok(self.user_by_email(email)?.expect("just inserted").0)
    }

    /// The user with this e-mail (case-insensitive) and their password hash.
    pub fn user_by_email(&self, email: &str) -> Result<Option<(User, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, email, role, created_at, password_hash FROM users WHERE email = ?1",
                [email.trim()],
                |r| Ok((row_user(r)?, r.get(4)?)),
            )
            .optional()?)
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let mut st = self
            .conn
            .prepare("SELECT id, email, role, created_at FROM users ORDER BY id")?;
        let rows = st.query_map([], row_user)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Changes a user's role; their sessions see it at once (sessions look the role up).
    pub fn set_role(&self, email: &str, role: Role) -> Result<User> {
        let n = self.conn.execute(
            "UPDATE users SET role = ?2 WHERE email = ?1",
            params![email.trim(), role.as_str()],
        )?;
        if n == 0 {
            return Err(MetaError::Invalid {
                field: "email",
                reason: format!("no user {email:?}"),
            });
        }
        Ok(self.user_by_email(email)?.expect("updated").0)
    }

    /// Replaces a user's password hash and ends their sessions.
    pub fn set_password(&self, email: &str, password_hash: &str) -> Result<()> {
        let user = self
            .user_by_email(email)?
            .ok_or_else(|| MetaError::Invalid {
                field: "email",
                reason: format!("no user {email:?}"),
            })?
            .0;
        self.conn.execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![user.id, password_hash],
        )?;
        self.conn
            .execute("DELETE FROM sessions WHERE user_id = ?1", [user.id])?;
        Ok(())
    }

    /// Deletes a user and ends their sessions; the last admin cannot be deleted.
    pub fn delete_user(&self, email: &str) -> Result<()> {
        let user = self
            .user_by_email(email)?
            .ok_or_else(|| MetaError::Invalid {
                field: "email",
                reason: format!("no user {email:?}"),
            })?
            .0;
        if user.role == Role::Admin && self.admins()? <= 1 {
            return Err(MetaError::Invalid {
                field: "email",
                reason: "the last admin cannot be deleted; make another user admin first".into(),
            });
        }
        self.conn
            .execute("DELETE FROM sessions WHERE user_id = ?1", [user.id])?;
        self.conn
            .execute("DELETE FROM users WHERE id = ?1", [user.id])?;
        Ok(())
    }

    fn admins(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
                r.get(0)
            })?)
    }

    /// Starts a session for the user that lasts until `expires_at_ms`.
    pub fn create_session(&self, user_id: i64, expires_at_ms: i64) -> Result<NewSession> {
        // sessions that were never logged out would otherwise stay forever
        self.conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            [crate::now_ms()],
        )?;
        let secret = random_secret("s_");
        let csrf = random_secret("c_");
        self.conn.execute(
            "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash(&secret), user_id, csrf, now(), expires_at_ms],
        )?;
        Ok(NewSession { secret, csrf })
    }

    /// The live session of a cookie secret at `now_ms`; expired sessions are removed.
    pub fn session(&self, secret: &str, now_ms: i64) -> Result<Option<Session>> {
        let found = self
            .conn
            .query_row(
                "SELECT u.id, u.email, u.role, u.created_at, s.csrf, s.expires_at
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = ?1",
                [hash(secret)],
                |r| {
                    Ok(Session {
                        user: row_user(r)?,
                        csrf: r.get(4)?,
                        expires_at_ms: r.get(5)?,
                    })
                },
            )
            .optional()?;
        match found {
            Some(s) if s.expires_at_ms > now_ms => Ok(Some(s)),
            Some(_) => {
                self.end_session(secret)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    pub fn end_session(&self, secret: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM sessions WHERE hash = ?1", [hash(secret)])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.sqlite")).unwrap();
        (dir, m)
    }

    #[test]
    fn users_are_unique_by_email_whatever_the_case() {
        let (_d, m) = meta();
        m.create_user("Ada@example.com", Role::Admin, "h").unwrap();
        let again = m.create_user("ada@EXAMPLE.com", Role::Viewer, "h");
        assert!(
            matches!(again, Err(MetaError::Invalid { field: "email", reason }) if reason.contains("exists"))
        );
        assert!(m.create_user("not an address", Role::Viewer, "h").is_err());
        assert_eq!(m.user_by_email("ADA@example.com").unwrap().unwrap().1, "h");
    }

    #[test]
    fn sessions_expire_end_and_follow_role_changes_and_deletion() {
        let (_d, m) = meta();
        let admin = m.create_user("a@x.org", Role::Admin, "h").unwrap();
        let bob = m.create_user("b@x.org", Role::Editor, "h").unwrap();
        let s = m.create_session(bob.id, 1_000).unwrap();
        assert_eq!(
            m.session(&s.secret, 999).unwrap().unwrap().user.role,
            Role::Editor
        );
        m.set_role("b@x.org", Role::Viewer).unwrap();
        assert_eq!(
            m.session(&s.secret, 999).unwrap().unwrap().user.role,
            Role::Viewer
        );
        assert_eq!(m.session(&s.secret, 1_000).unwrap(), None, "expired");
        assert_eq!(
            m.session(&s.secret, 0).unwrap(),
            None,
            "expired sessions are removed"
        );
        let s = m.create_session(bob.id, 1_000).unwrap();
        m.set_password("b@x.org", "h2").unwrap();
        assert_eq!(
            m.session(&s.secret, 0).unwrap(),
            None,
            "a new password ends sessions"
        );
        let s = m.create_session(bob.id, 1_000).unwrap();
        m.delete_user("b@x.org").unwrap();
        assert_eq!(m.session(&s.secret, 0).unwrap(), None);
        assert!(m.delete_user("a@x.org").is_err(), "the last admin stays");
        let s = m.create_session(admin.id, 1_000).unwrap();
        m.end_session(&s.secret).unwrap();
        assert_eq!(m.session(&s.secret, 0).unwrap(), None, "logged out");
    }
}
