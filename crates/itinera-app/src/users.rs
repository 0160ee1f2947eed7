//! Users of the web app: creating them with argon2id password hashes, logging in, and the
//! sessions a login starts. Shared by the CLI (`itinera users …`) and the server. Hashing runs
//! outside the metadata lock: it is slow on purpose.

use crate::{App, AppError, Result};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use itinera_meta::{NewSession, Role, Session, User};

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longer ones are refused too: hashing is the expensive step, bounded here.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Password hashes computed at once, at most: each takes 19 MiB and a core for tens of
/// milliseconds, so a burst of logins from many addresses must wait, not exhaust memory.
const MAX_HASHING: usize = 4;

/// Runs `f` once fewer than [`MAX_HASHING`] hashes are being computed.
fn hashing<T>(f: impl FnOnce() -> T) -> T {
    use std::sync::{Condvar, Mutex};
    static RUNNING: Mutex<usize> = Mutex::new(0);
    static FREED: Condvar = Condvar::new();
    let mut n = FREED
        .wait_while(RUNNING.lock().unwrap_or_else(|e| e.into_inner()), |n| {
            *n >= MAX_HASHING
        })
        .unwrap_or_else(|e| e.into_inner());
    *n += 1;
    drop(n);
    let out = f();
    *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
    FREED.notify_one();
    out
}

/// The argon2id PHC string of a password (OWASP's parameters: 19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    hashing(|| {
        Argon2::default()
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
            .map_err(|e| AppError::Internal(format!("password hashing: {e}")))
    })
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AppError::invalid(
            "password",
            format!("use at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::invalid(
            "password",
            format!("use at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of nothing anyone knows, verified when the e-mail is unknown so that a login takes
/// as long whether or not the user exists.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(
                b"no user has this password",
                &SaltString::generate(&mut OsRng),
            )
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

impl App {
    pub fn create_user(&self, email: &str, role: Role, password: &str) -> Result<User> {
        let phc = hash_password(password)?;
        Ok(self.meta().create_user(email, role, &phc)?)
    }

    pub fn set_password(&self, email: &str, password: &str) -> Result<()> {
        let phc = hash_password(password)?;
        Ok(self.meta().set_password(email, &phc)?)
    }

    pub fn users(&self) -> Result<Vec<User>> {
        Ok(self.meta().users()?)
    }

    pub fn set_role(&self, email: &str, role: Role) -> Result<User> {
        Ok(self.meta().set_role(email, role)?)
    }

    pub fn delete_user(&self, email: &str) -> Result<()> {
        Ok(self.meta().delete_user(email)?)
    }

    /// Checks the password and starts a session; one error for an unknown e-mail and a wrong
    /// password, so the answer does not tell which addresses have accounts.
    pub fn login(&self, email: &str, password: &str) -> Result<(User, NewSession)> {
        let found = if password.len() > MAX_PASSWORD_BYTES {
            None
        } else {
            self.meta().user_by_email(email)?
        };
        let ok = match &found {
            Some((_, phc)) => verify(password, phc),
            None => {
                verify(password, decoy_hash());
                false
            }
        };
        let user = match (found, ok) {
            (Some((user, _)), true) => user,
            _ => {
                tracing::info!(email, "failed login");
                return Err(AppError::Unauthorized("wrong e-mail or password".into()));
            }
        };
        let expires = crate::now_ms() + (self.config.session_hours.max(1) as i64) * 3_600_000;
        let session = self.meta().create_session(user.id, expires)?;
        tracing::info!(email = user.email, role = user.role.as_str(), "login");
        Ok((user, session))
    }

    /// The live session of a cookie secret.
    pub fn session(&self, secret: &str) -> Result<Option<Session>> {
        Ok(self.meta().session(secret, crate::now_ms())?)
    }

    pub fn logout(&self, secret: &str) -> Result<()> {
        Ok(self.meta().end_session(secret)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert!(
            matches!(hash_password("short"), Err(AppError::Invalid { field, .. }) if field == "password")
        );
        assert!(!verify("x", "not a hash"));
    }
}
