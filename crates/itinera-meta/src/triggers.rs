//! Trigger state: firings (who each rule triggered, and when), the outbox of actions written in
//! the same transaction as their firing, and how far each project's arrivals were evaluated.
//! The outbox is what makes actions durable: an action is written before anything is sent and
//! marked done after, so a crash in between sends it again with the same idempotency key.

use crate::{Meta, Result};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// An action to write with its firing.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAction {
    pub kind: String,
    /// What the action needs to run (e.g. the webhook's URL and secret), as JSON.
    pub target: String,
    pub payload: String,
    pub idempotency_key: String,
    pub rate_per_minute: u32,
}

/// An action waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAction {
    pub id: i64,
    pub project: String,
    pub rule: String,
    pub kind: String,
    pub target: String,
    pub payload: String,
    pub idempotency_key: String,
    pub rate_per_minute: u32,
    pub attempts: i64,
}

/// What one attempt at an action gave.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionOutcome {
    Delivered {
        status: Option<i64>,
    },
    /// Failed; tried again at `next_at_ms`.
    Retry {
        status: Option<i64>,
        error: String,
        next_at_ms: i64,
    },
    Failed {
        status: Option<i64>,
        error: String,
    },
}

/// One firing of a rule, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Firing {
    pub person: String,
    /// The touchpoint that made the rule due.
    pub at_ms: i64,
    pub fired_at_ms: i64,
    pub because: String,
    /// In the rule's hold-out: recorded, no action sent.
    pub held_out: bool,
    /// Each action's state: `pending`, `delivered` or `failed`, with its last error.
    pub actions: Vec<FiringAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FiringAction {
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub idempotency_key: String,
}

impl Meta {
    /// The touchpoint time of `rule`'s latest firing for `person`, if any.
    pub fn last_firing(&self, project: &str, rule: &str, person: &str) -> Result<Option<i64>> {
        let p = self.project(project)?;
        Ok(self.conn.query_row(
            "SELECT MAX(at_ms) FROM trigger_firings WHERE project_id = ?1 AND rule = ?2 AND person = ?3",
            params![p.id, rule, person],
            |r| r.get::<_, Option<i64>>(0),
        )?)
    }

    /// Records a firing and its actions in one transaction; false when this firing (rule,
    /// person, touchpoint time) was already recorded, and nothing is written.
    #[allow(clippy::too_many_arguments)]
    pub fn record_firing(
        &self,
        project: &str,
        rule: &str,
        person: &str,
        at_ms: i64,
        because: &str,
        held_out: bool,
        now_ms: i64,
        actions: &[NewAction],
    ) -> Result<bool> {
        let p = self.project(project)?;
        let tx = self.conn.unchecked_transaction()?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO trigger_firings (project_id, rule, person, at_ms, fired_at_ms, because, held_out)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![p.id, rule, person, at_ms, now_ms, because, held_out],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        let firing = tx.last_insert_rowid();
        for a in actions {
            tx.execute(
                "INSERT OR IGNORE INTO trigger_actions (firing_id, kind, target, payload, idempotency_key, rate_per_minute, status, next_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
                params![firing, a.kind, a.target, a.payload, a.idempotency_key, a.rate_per_minute, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Every person `rule` ever triggered (held out or not).
    pub fn fired_persons(&self, project: &str, rule: &str) -> Result<Vec<String>> {
        let p = self.project(project)?;
        let mut st = self.conn.prepare(
            "SELECT DISTINCT person FROM trigger_firings WHERE project_id = ?1 AND rule = ?2",
        )?;
        let rows = st.query_map(params![p.id, rule], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every firing of `rule`: (person, touchpoint time, held out).
    pub fn firing_times(&self, project: &str, rule: &str) -> Result<Vec<(String, i64, bool)>> {
        let p = self.project(project)?;
        let mut st = self.conn.prepare(
            "SELECT person, at_ms, held_out FROM trigger_firings WHERE project_id = ?1 AND rule = ?2",
        )?;
        let rows = st.query_map(params![p.id, rule], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Persons `rule` triggered (not held out) since `since_ms`.
    pub fn firings_since(&self, project: &str, rule: &str, since_ms: i64) -> Result<u64> {
        let p = self.project(project)?;
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM trigger_firings WHERE project_id = ?1 AND rule = ?2 AND fired_at_ms >= ?3 AND held_out = 0",
            params![p.id, rule, since_ms],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Actions due at `now_ms`, oldest first, in every project.
    pub fn due_actions(&self, now_ms: i64, limit: usize) -> Result<Vec<PendingAction>> {
        let mut st = self.conn.prepare(
            "SELECT a.id, p.name, f.rule, a.kind, a.target, a.payload, a.idempotency_key, a.rate_per_minute, a.attempts
             FROM trigger_actions a JOIN trigger_firings f ON f.id = a.firing_id JOIN projects p ON p.id = f.project_id
             WHERE a.status = 'pending' AND a.next_at_ms <= ?1 ORDER BY a.next_at_ms, a.id LIMIT ?2",
        )?;
        let rows = st.query_map(params![now_ms, limit as i64], |r| {
            Ok(PendingAction {
                id: r.get(0)?,
                project: r.get(1)?,
                rule: r.get(2)?,
                kind: r.get(3)?,
                target: r.get(4)?,
                payload: r.get(5)?,
                idempotency_key: r.get(6)?,
                rate_per_minute: r.get::<_, i64>(7)? as u32,
                attempts: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records one attempt at action `id`.
    pub fn action_attempted(&self, id: i64, outcome: &ActionOutcome, now_ms: i64) -> Result<()> {
        let (status, last_status, error, next, done) = match outcome {
            ActionOutcome::Delivered { status } => ("delivered", *status, None, None, Some(now_ms)),
            ActionOutcome::Retry {
                status,
                error,
                next_at_ms,
            } => (
                "pending",
                *status,
                Some(error.as_str()),
                Some(*next_at_ms),
                None,
            ),
            ActionOutcome::Failed { status, error } => {
                ("failed", *status, Some(error.as_str()), None, Some(now_ms))
            }
        };
        self.conn.execute(
            "UPDATE trigger_actions SET status = ?2, attempts = attempts + 1, last_status = ?3,
             last_error = ?4, next_at_ms = COALESCE(?5, next_at_ms), done_at_ms = ?6 WHERE id = ?1",
            params![id, status, last_status, error, next, done],
        )?;
        Ok(())
    }

    /// Opens a case for a trigger's action and marks the action delivered, in one transaction:
    /// a crash cannot open the case twice. Returns the case's id.
    pub fn open_case_for_action(
        &self,
        action: i64,
        project: &str,
        person: &str,
        title: &str,
        now_ms: i64,
    ) -> Result<i64> {
        let tx = self.conn.unchecked_transaction()?;
        let case = self.open_case(project, None, Some(person), title)?;
        tx.execute(
            "UPDATE trigger_actions SET status = 'delivered', attempts = attempts + 1,
             last_error = NULL, done_at_ms = ?2 WHERE id = ?1",
            params![action, now_ms],
        )?;
        tx.commit()?;
        Ok(case)
    }

    /// Puts off action `id` (its rule is over its rate) without counting an attempt.
    pub fn postpone_action(&self, id: i64, next_at_ms: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE trigger_actions SET next_at_ms = ?2 WHERE id = ?1",
            params![id, next_at_ms],
        )?;
        Ok(())
    }

    /// Cancels the pending actions of a rule (switched off or deleted): marked failed, saying so.
    pub fn cancel_actions(&self, project: &str, rule: &str, reason: &str) -> Result<usize> {
        let p = self.project(project)?;
        Ok(self.conn.execute(
            "UPDATE trigger_actions SET status = 'failed', last_error = ?3
             WHERE status = 'pending' AND firing_id IN (SELECT id FROM trigger_firings WHERE project_id = ?1 AND rule = ?2)",
            params![p.id, rule, reason],
        )?)
    }

    /// The latest firings of a rule, newest first, with their actions.
    pub fn firings(&self, project: &str, rule: &str, limit: usize) -> Result<Vec<Firing>> {
        let p = self.project(project)?;
        let mut st = self.conn.prepare(
            "SELECT id, person, at_ms, fired_at_ms, because, held_out FROM trigger_firings
             WHERE project_id = ?1 AND rule = ?2 ORDER BY fired_at_ms DESC, id DESC LIMIT ?3",
        )?;
        let rows: Vec<(i64, Firing)> = st
            .query_map(params![p.id, rule, limit as i64], |r| {
                Ok((
                    r.get(0)?,
                    Firing {
                        person: r.get(1)?,
                        at_ms: r.get(2)?,
                        fired_at_ms: r.get(3)?,
                        because: r.get(4)?,
                        held_out: r.get(5)?,
                        actions: vec![],
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut st = self.conn.prepare(
            "SELECT kind, status, attempts, last_status, last_error, idempotency_key FROM trigger_actions
             WHERE firing_id = ?1 ORDER BY id",
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, mut f) in rows {
            f.actions = st
                .query_map([id], |r| {
                    Ok(FiringAction {
                        kind: r.get(0)?,
                        status: r.get(1)?,
                        attempts: r.get(2)?,
                        last_status: r.get(3)?,
                        last_error: r.get(4)?,
                        idempotency_key: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            out.push(f);
        }
        Ok(out)
    }

    /// Arrivals received before this were evaluated, in `project`.
    pub fn trigger_watermark(&self, project: &str) -> Result<Option<i64>> {
        let p = self.project(project)?;
        Ok(self
            .conn
            .query_row(
                "SELECT received_ms FROM trigger_watermarks WHERE project_id = ?1",
                [p.id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_trigger_watermark(&self, project: &str, received_ms: i64) -> Result<()> {
        let p = self.project(project)?;
        self.conn.execute(
            "INSERT INTO trigger_watermarks (project_id, received_ms) VALUES (?1, ?2)
             ON CONFLICT(project_id) DO UPDATE SET received_ms = MAX(received_ms, excluded.received_ms)",
            params![p.id, received_ms],
        )?;
        Ok(())
    }

    /// Deletes the firings and actions naming any of `ids` (erasure); how many firings.
    pub(crate) fn erase_trigger_state(
        tx: &rusqlite::Transaction<'_>,
        project_id: i64,
        ids: &[String],
    ) -> Result<usize> {
        let mut n = 0;
        for person in ids {
            tx.execute(
                "DELETE FROM trigger_actions WHERE firing_id IN
                 (SELECT id FROM trigger_firings WHERE project_id = ?1 AND person = ?2)",
                params![project_id, person],
            )?;
            n += tx.execute(
                "DELETE FROM trigger_firings WHERE project_id = ?1 AND person = ?2",
                params![project_id, person],
            )?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(key: &str) -> NewAction {
        NewAction {
            kind: "webhook".into(),
            target: "{}".into(),
            payload: "{}".into(),
            idempotency_key: key.into(),
            rate_per_minute: 60,
        }
    }

    /// A firing is recorded once with its actions; the outbox hands them out until done; an
    /// erasure takes the person's firings and actions with it.
    #[test]
    fn firings_are_unique_and_their_actions_leave_the_outbox_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("meta.sqlite")).unwrap();
        m.create_keys("p", "").unwrap();
        assert!(m
            .record_firing("p", "r", "ann", 10, "Decision", false, 100, &[action("k1")])
            .unwrap());
        assert!(
            !m.record_firing("p", "r", "ann", 10, "Decision", false, 200, &[action("k1")])
                .unwrap(),
            "the same firing twice"
        );
        assert!(m
            .record_firing("p", "r", "bob", 11, "Decision", true, 100, &[])
            .unwrap());
        assert_eq!(m.last_firing("p", "r", "ann").unwrap(), Some(10));
        assert_eq!(
            m.firings_since("p", "r", 0).unwrap(),
            1,
            "held-out firings do not count"
        );
        let due = m.due_actions(1_000, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].idempotency_key, "k1");
        m.action_attempted(
            due[0].id,
            &ActionOutcome::Retry {
                status: Some(500),
                error: "HTTP 500".into(),
                next_at_ms: 2_000,
            },
            1_000,
        )
        .unwrap();
        assert!(
            m.due_actions(1_500, 10).unwrap().is_empty(),
            "waits for its retry"
        );
        assert_eq!(m.due_actions(2_000, 10).unwrap()[0].attempts, 1);
        m.action_attempted(
            due[0].id,
            &ActionOutcome::Delivered { status: Some(200) },
            2_000,
        )
        .unwrap();
        assert!(m.due_actions(i64::MAX, 10).unwrap().is_empty());
        let log = m.firings("p", "r", 10).unwrap();
        assert_eq!(log.len(), 2);
        let ann = log.iter().find(|f| f.person == "ann").unwrap();
        assert_eq!(ann.actions[0].status, "delivered");
        assert_eq!(ann.actions[0].attempts, 2);
        m.erase_person("p", &["ann".into()]).unwrap();
        assert_eq!(m.firings("p", "r", 10).unwrap().len(), 1);
        assert_eq!(m.fired_persons("p", "r").unwrap(), ["bob"]);
    }
}
