//! Triggers: act at the moment a journey moves. Rules (`DefinitionKind::Trigger`) are
//! evaluated as touchpoints arrive: every acknowledged append hands its distinct ids to one
//! evaluator thread, which looks up each person's journey (a person-index lookup, not a scan),
//! asks the engine whether a rule became due, and records the firing with its actions in one
//! SQLite transaction (an outbox). A delivery task sends the outbox: signed webhooks with an
//! idempotency key that stays the same on every retry, at each rule's rate.
//!
//! Durability: the firing and its actions are written before anything is sent; a crash before
//! a send sends it after the restart (same key), a crash after a send before it is marked done
//! sends it again (same key): at-least-once. Arrivals not yet evaluated when the process died
//! are found again from the store's receive times after the last evaluated watermark, and the
//! unique firing (rule, person, touchpoint time) keeps them from firing twice.
//! Semantics for users: `docs/triggers.md`.

use crate::backend::{PreparedTrigger, Prior};
use crate::definitions;
use crate::error::{AppError, Result};
use crate::outbound::{self, Posted};
use crate::{App, Population};
use itinera_core::clock::now_ms;
use itinera_engine::stages::ModelRef;
use itinera_engine::triggers::{DryRun, TriggerAction, TriggerRule};
use itinera_meta::{ActionOutcome, DefinitionKind, Firing, NewAction};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

/// Arrivals are gathered this long before an evaluation round (a round per append would
/// rebuild the store's snapshot for every batch).
const GATHER: Duration = Duration::from_millis(100);
/// The watermark trails the newest evaluated arrival by this much: appends acknowledged
/// concurrently may be handed over slightly out of order, and re-evaluating is harmless.
const WATERMARK_MARGIN_MS: i64 = 10_000;
/// What the API shows instead of a webhook secret.
const SECRET_SET: &str = "***";

/// A rule with its name, as listed (secrets left out).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamedTrigger {
    pub name: String,
    #[serde(flatten)]
    pub rule: TriggerRule,
}

/// Arrivals for the evaluator: a project's distinct ids, received up to `received_ms`.
struct Arrivals {
    project: String,
    ids: Vec<String>,
    received_ms: i64,
}

/// The process's trigger machinery: the evaluator's queue (set once the server starts it) and
/// a signal for the delivery task.
#[derive(Default)]
pub struct Triggers {
    queue: OnceLock<Mutex<mpsc::Sender<Arrivals>>>,
    deliver: tokio::sync::Notify,
    /// Per project, whether a rule acting on arrivals is on: without one, appends hand
    /// nothing over (collecting the ids cost the tracking API a few per cent for nothing).
    /// Forgotten when the project's rules change.
    watching: Mutex<HashMap<String, bool>>,
    /// (project, rule, person) that no later touchpoint can fire: their journeys are not read
    /// again at each arrival (a customer from before a welcome rule existed, who keeps
    /// shopping). Bounded; forgotten when rules change or after a restart.
    settled: Mutex<std::collections::HashSet<(String, String, String)>>,
}

/// At most this many settled (project, rule, person) are remembered; then the memory starts
/// over (only a cost: they are found settled again).
const SETTLED_CAP: usize = 1_000_000;

impl Triggers {
    /// Whether arrivals in `project` need evaluating: an evaluator runs and a rule acting on
    /// arrivals is on.
    pub fn watching(&self, app: &App, project: &str) -> bool {
        if self.queue.get().is_none() {
            return false;
        }
        if let Some(w) = self.watching.lock().get(project) {
            return *w;
        }
        let on = rules_on(app, project, false).is_ok_and(|r| !r.is_empty());
        self.watching.lock().insert(project.to_string(), on);
        on
    }

    fn changed(&self, project: &str) {
        self.watching.lock().remove(project);
        self.settled.lock().retain(|(p, _, _)| p != project);
    }

    /// Hands acknowledged arrivals to the evaluator (a no-op when none runs, as in the CLI).
    pub fn arrived(&self, project: &str, ids: Vec<String>, received_ms: i64) {
        if let Some(q) = self.queue.get() {
            let _ = q.lock().send(Arrivals {
                project: project.to_string(),
                ids,
                received_ms,
            });
        }
    }
}

/// The rules of a project, by name.
pub fn rules(app: &App, project: &str) -> Result<Vec<NamedTrigger>> {
    let meta = app.meta();
    let defs = meta.definitions(project, DefinitionKind::Trigger)?;
    defs.into_iter()
        .map(|d| {
            serde_json::from_str(&d.body)
                .map(|rule| NamedTrigger { name: d.name, rule })
                .map_err(|e| AppError::Internal(format!("saved trigger rule: {e}")))
        })
        .collect()
}

/// The rules as the API shows them: webhook secrets replaced by `***`.
pub fn redacted(mut rules: Vec<NamedTrigger>) -> Vec<NamedTrigger> {
    for r in &mut rules {
        for a in &mut r.rule.actions {
            if let TriggerAction::Webhook { secret, .. } = a {
                if !secret.is_empty() {
                    *secret = SECRET_SET.into();
                }
            }
        }
    }
    rules
}

fn find(app: &App, project: &str, name: &str) -> Result<Option<TriggerRule>> {
    Ok(rules(app, project)?
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| r.rule))
}

/// Resolves a rule for the backend: its model and population loaded, its start time set.
fn prepare(app: &App, project: &str, rule: &TriggerRule, since_ms: i64) -> Result<PreparedTrigger> {
    let meta = app.meta();
    let model = match rule.when.stage() {
        Some((model, _)) => {
            let resolved =
                definitions::resolve_model(&meta, project, &ModelRef::Builtin(model.to_string()))
                    .map_err(|e| match e {
                    AppError::Invalid { reason, .. } => AppError::invalid("when.model", reason),
                    other => other,
                })?;
            Some(resolved.resolve()?)
        }
        None => None,
    };
    let population = Population {
        segment: rule.segment.clone(),
        persona: rule.persona.clone(),
    }
    .resolve(&meta, project)?;
    Ok(PreparedTrigger {
        when: rule.when.clone(),
        model,
        population,
        since_ms,
        reentry_after: rule.reentry_after,
        account: rule.account.clone(),
        as_of_ms: now_ms(),
    })
}

/// Validates and saves rule `name`. Switching a rule on sets `since_ms` to now (or to
/// `backfill_from_ms`): it acts on what happens from then on. Switching it off or deleting it
/// cancels its actions not sent yet. A webhook secret given as `***` keeps the saved one.
pub fn save(app: &App, project: &str, name: &str, mut rule: TriggerRule) -> Result<TriggerRule> {
    definitions::valid_name(name)?;
    rule.validate()?;
    let previous = find(app, project, name)?;
    for (k, a) in rule.actions.iter_mut().enumerate() {
        match a {
            TriggerAction::Webhook { url, secret } => {
                crate::destinations::check(
                    &format!("actions[{k}].webhook.url"),
                    url,
                    &app.config.outbound,
                )?;
                if secret == SECRET_SET {
                    let kept =
                        previous
                            .as_ref()
                            .and_then(|p| p.actions.get(k))
                            .and_then(|p| match p {
                                TriggerAction::Webhook { secret, .. } => Some(secret.clone()),
                                _ => None,
                            });
                    *secret = kept.ok_or_else(|| {
                        AppError::invalid(
                            format!("actions[{k}].webhook.secret"),
                            "`***` keeps a saved secret, and this action has none",
                        )
                    })?;
                }
            }
            TriggerAction::Email { .. } if app.config.smtp.host.is_empty() => {
                return Err(AppError::invalid(
                    format!("actions[{k}].email"),
                    "e-mail actions need an SMTP relay: set [smtp] host (ITINERA_SMTP_HOST)",
                ));
            }
            TriggerAction::Email { .. }
            | TriggerAction::Case { .. }
            | TriggerAction::SetTrait { .. } => {}
        }
    }
    let was_on = previous.as_ref().is_some_and(|p| p.enabled);
    let any_on = rules(app, project)?.iter().any(|r| r.rule.enabled);
    rule.since_ms = match (rule.enabled, was_on) {
        (false, _) => None,
        (true, true)
            if rule.backfill_from_ms == previous.as_ref().and_then(|p| p.backfill_from_ms) =>
        {
            previous.as_ref().and_then(|p| p.since_ms)
        }
        (true, _) => Some(rule.backfill_from_ms.unwrap_or_else(now_ms)),
    };
    // the condition and population must compile against the project's data (no scan)
    let prepared = prepare(app, project, &rule, rule.since_ms.unwrap_or(0))?;
    app.backend(project)?
        .trigger_dry_run(&prepared, 0, 1, &Default::default())?;
    if rule.enabled && !any_on {
        // nothing watched this project's arrivals before: none of them can concern a rule
        // that starts now, so a restart need not look at them again
        app.meta()
            .set_trigger_watermark(project, now_ms() - WATERMARK_MARGIN_MS)?;
    }
    definitions::save(
        &app.meta(),
        project,
        DefinitionKind::Trigger,
        name,
        &rule,
        0,
    )?;
    app.triggers.changed(project);
    if was_on && !rule.enabled {
        app.meta().cancel_actions(
            project,
            name,
            "the rule was switched off before it was sent",
        )?;
    }
    Ok(rule)
}

/// Deletes rule `name`, cancelling its actions not sent yet (its firings stay, for the record).
pub fn delete(app: &App, project: &str, name: &str) -> Result<()> {
    definitions::delete(&app.meta(), project, DefinitionKind::Trigger, name)?;
    app.triggers.changed(project);
    app.meta()
        .cancel_actions(project, name, "the rule was deleted before it was sent")?;
    Ok(())
}

/// What a rule — saved, or given whole — would have triggered in `[from_ms, to_ms)`. Blocking.
pub fn dry_run(
    app: &App,
    project: &str,
    rule: &TriggerRule,
    from_ms: i64,
    to_ms: i64,
    opts: &itinera_engine::ScanOptions,
) -> Result<DryRun> {
    rule.validate()?;
    let prepared = prepare(app, project, rule, from_ms)?;
    app.backend(project)?
        .trigger_dry_run(&prepared, from_ms, to_ms, opts)
}

/// What to compare a rule's firings on.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EffectRequest {
    /// The outcome: e.g. `"Order Completed"` for a repeat purchase, or a stage's touchpoints.
    pub outcome: itinera_engine::EventSelector,
    /// Counted when it follows the firing within this (default 30d).
    #[serde(default = "thirty_days")]
    pub within: itinera_engine::Span,
    #[serde(default = "ninety_five")]
    pub confidence: f64,
}

fn thirty_days() -> itinera_engine::Span {
    itinera_engine::Span(30 * 86_400_000)
}
fn ninety_five() -> f64 {
    0.95
}

/// Did acting help? The share of persons acted on who then did the outcome, against the share
/// of those held out. Blocking; runs under the query's budgets (`opts`).
pub fn effect(
    app: &App,
    project: &str,
    name: &str,
    req: &EffectRequest,
    opts: &itinera_engine::ScanOptions,
) -> Result<itinera_engine::triggers::TriggerEffect> {
    if find(app, project, name)?.is_none() {
        return Err(AppError::NotFound(format!("no trigger rule named {name}")));
    }
    if !(0.5..1.0).contains(&req.confidence) {
        return Err(AppError::invalid("confidence", "must be in [0.5, 1)"));
    }
    let firings = app.meta().firing_times(project, name)?;
    app.backend(project)?.trigger_effect(
        &firings,
        &req.outcome,
        req.within,
        now_ms(),
        req.confidence,
        opts,
    )
}

/// The latest firings of rule `name`, newest first.
pub fn firings(app: &App, project: &str, name: &str, limit: usize) -> Result<Vec<Firing>> {
    if find(app, project, name)?.is_none() {
        return Err(AppError::NotFound(format!("no trigger rule named {name}")));
    }
    Ok(app.meta().firings(project, name, limit.clamp(1, 1000))?)
}

/// The idempotency key of action `k` of a firing: the same whenever the same firing is
/// evaluated again, so that a receiver can drop repeats.
fn idempotency_key(project: &str, rule: &str, person: &str, at_ms: i64, k: usize) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{project}\u{0}{rule}\u{0}{person}\u{0}{at_ms}\u{0}{k}"
    ));
    format!("itk_{}", &hex::encode(h.finalize())[..32])
}

/// The rules of `project` that are on, arrival rules or sweep rules.
fn rules_on(app: &App, project: &str, sweep: bool) -> Result<Vec<NamedTrigger>> {
    Ok(rules(app, project)?
        .into_iter()
        .filter(|r| r.rule.enabled && r.rule.since_ms.is_some() && r.rule.is_sweep() == sweep)
        .collect())
}

/// Evaluates arrivals for `project`: records each due rule's firing and its actions. Returns
/// how many fired. Blocking.
fn evaluate(app: &App, project: &str, ids: &[String]) -> Result<usize> {
    let on = rules_on(app, project, false)?;
    if on.is_empty() || ids.is_empty() {
        return Ok(0);
    }
    let prepared = on
        .iter()
        .map(|r| prepare(app, project, &r.rule, r.rule.since_ms.unwrap_or(i64::MAX)))
        .collect::<Result<Vec<_>>>()?;
    let backend = app.backend(project)?;
    let prior = |k: usize, person: &str| {
        let key = (project.to_string(), on[k].name.clone(), person.to_string());
        if app.triggers.settled.lock().contains(&key) {
            return Prior::Settled;
        }
        match app.meta().last_firing(project, &on[k].name, person) {
            Ok(Some(t)) => Prior::FiredAt(t),
            _ => Prior::Never,
        }
    };
    let (due, settled) = backend.triggers_due(&prepared, ids, &prior)?;
    {
        let mut known = app.triggers.settled.lock();
        if known.len() + settled.len() > SETTLED_CAP {
            known.clear();
        }
        known.extend(
            settled
                .into_iter()
                .map(|(k, person)| (project.to_string(), on[k].name.clone(), person)),
        );
    }
    let mut fired = 0;
    for d in due {
        fired += usize::from(record(app, project, &on[d.rule], &d)?);
    }
    Ok(fired)
}

/// Persons each sweep rule already triggered, per (project, rule): loaded from the firings
/// once, so that a sweep records only new stalls (a stall whose entry arrives late is still
/// found, since every sweep looks from the rule's start).
type Swept = HashMap<(String, String), std::collections::HashSet<String>>;

/// Looks for stalls in `project`: each sweep rule's persons due since the rule's start and not
/// triggered yet. Blocking (a scan per rule).
fn sweep(app: &App, project: &str, swept: &mut Swept) -> Result<usize> {
    let mut fired = 0;
    for r in rules_on(app, project, true)? {
        let key = (project.to_string(), r.name.clone());
        if !swept.contains_key(&key) {
            let known = app.meta().fired_persons(project, &r.name)?;
            swept.insert(key.clone(), known.into_iter().collect());
        }
        let prepared = prepare(app, project, &r.rule, r.rule.since_ms.unwrap_or(i64::MAX))?;
        let due = app
            .backend(project)?
            .triggers_sweep(&prepared, &Default::default())?;
        let known = swept.get_mut(&key).expect("loaded above");
        for d in due {
            if known.contains(&d.person) {
                continue;
            }
            fired += usize::from(record(app, project, &r, &d)?);
            known.insert(d.person);
        }
    }
    Ok(fired)
}

/// Records one firing of rule `r` with its actions (none when the person is held out); false
/// when it was recorded before.
fn record(
    app: &App,
    project: &str,
    r: &NamedTrigger,
    d: &crate::backend::TriggerDue,
) -> Result<bool> {
    let now = now_ms();
    let held_out = r.rule.holds_out(&r.name, &d.person);
    let actions: Vec<NewAction> = if held_out {
        vec![]
    } else {
        r.rule
            .actions
            .iter()
            .enumerate()
            .map(|(k, a)| {
                let key = idempotency_key(project, &r.name, &d.person, d.due.at_ms, k);
                NewAction {
                    kind: a.kind().into(),
                    target: serde_json::to_string(a).expect("actions serialize"),
                    payload: json!({
                        "project": project,
                        "rule": r.name,
                        "about": if r.rule.account.is_some() { "account" } else { "person" },
                        "person": d.person,
                        "because": d.due.because,
                        "at_ms": d.due.at_ms,
                        "fired_at_ms": now,
                        "idempotency_key": key,
                    })
                    .to_string(),
                    idempotency_key: key,
                    rate_per_minute: r.rule.max_per_minute,
                }
            })
            .collect()
    };
    let recorded = app.meta().record_firing(
        project,
        &r.name,
        &d.person,
        d.due.at_ms,
        &d.due.because,
        held_out,
        now,
        &actions,
    )?;
    if recorded {
        tracing::info!(project, rule = %r.name, person = %d.person, held_out, "trigger fired");
    }
    Ok(recorded)
}

/// Starts the evaluator thread and the delivery task; re-evaluates arrivals after each
/// project's watermark first (what a crash left unevaluated).
pub fn spawn(app: Arc<App>) {
    let (tx, rx) = mpsc::channel::<Arrivals>();
    if app.triggers.queue.set(Mutex::new(tx)).is_err() {
        return;
    }
    let evaluator = app.clone();
    std::thread::Builder::new()
        .name("itinera-triggers".into())
        .spawn(move || {
            recover(&evaluator);
            run_evaluator(&evaluator, rx)
        })
        .expect("trigger thread");
    tokio::spawn(run_delivery(app));
}

/// Re-evaluates, in every project with a rule on, the persons whose touchpoints arrived after
/// the project's watermark.
fn recover(app: &App) {
    let projects = match app.data.meta.lock().projects() {
        Ok(p) => p,
        Err(e) => return tracing::warn!(error = %e, "trigger recovery: cannot list projects"),
    };
    for p in projects {
        let on = rules(app, &p.name)
            .map(|r| {
                r.into_iter()
                    .filter_map(|r| r.rule.since_ms.filter(|_| r.rule.enabled))
                    .min()
            })
            .unwrap_or(None);
        let Some(first_since) = on else { continue };
        let from = app
            .meta()
            .trigger_watermark(&p.name)
            .ok()
            .flatten()
            .unwrap_or(first_since);
        let ids = app
            .backend(&p.name)
            .and_then(|b| b.ids_received_since(from));
        match ids.and_then(|ids| evaluate(app, &p.name, &ids).map(|n| (ids.len(), n))) {
            Ok((ids, fired)) => {
                tracing::info!(project = %p.name, ids, fired, from, "trigger recovery evaluated")
            }
            Err(e) => tracing::warn!(project = %p.name, error = %e, "trigger recovery failed"),
        }
    }
    app.triggers.deliver.notify_one();
}

fn run_evaluator(app: &App, rx: mpsc::Receiver<Arrivals>) {
    let every = Duration::from_secs(app.config.trigger_sweep_seconds.max(1));
    let mut next_sweep = Instant::now();
    let mut swept = HashMap::new();
    // arrivals of a round that failed (the store or the metadata could not be read): carried
    // into the next round of their project, so that a later success cannot move the watermark
    // past them
    let mut carried: HashMap<String, (BTreeSet<String>, i64)> = HashMap::new();
    loop {
        if Instant::now() >= next_sweep {
            sweep_all(app, &mut swept);
            next_sweep = Instant::now() + every;
        }
        let first = match rx.recv_timeout(next_sweep.saturating_duration_since(Instant::now())) {
            Ok(a) => a,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        // gather what arrives meanwhile, per project
        let mut pending = std::mem::take(&mut carried);
        let mut add = |a: Arrivals| {
            let e = pending
                .entry(a.project)
                .or_insert((BTreeSet::new(), i64::MIN));
            e.0.extend(a.ids);
            e.1 = e.1.max(a.received_ms);
        };
        add(first);
        let until = Instant::now() + GATHER;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(a) => add(a),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        let mut fired = 0;
        for (project, (ids, received_ms)) in pending {
            let list: Vec<String> = ids.iter().cloned().collect();
            match evaluate(app, &project, &list) {
                Ok(n) => {
                    fired += n;
                    let mark = received_ms - WATERMARK_MARGIN_MS;
                    if let Err(e) = app.meta().set_trigger_watermark(&project, mark) {
                        tracing::warn!(project, error = %e, "cannot record the trigger watermark");
                    }
                }
                Err(e) => {
                    tracing::warn!(project, error = %e, "trigger evaluation failed; tried again with the next arrivals");
                    carried.insert(project, (ids, received_ms));
                }
            }
        }
        if fired > 0 {
            app.triggers.deliver.notify_one();
        }
    }
}

/// One sweep of every project's stall rules.
fn sweep_all(app: &App, swept: &mut Swept) {
    let projects = match app.data.meta.lock().projects() {
        Ok(p) => p,
        Err(e) => return tracing::warn!(error = %e, "trigger sweep: cannot list projects"),
    };
    let mut fired = 0;
    for p in projects {
        match sweep(app, &p.name, swept) {
            Ok(n) => fired += n,
            Err(e) => tracing::warn!(project = %p.name, error = %e, "trigger sweep failed"),
        }
    }
    if fired > 0 {
        app.triggers.deliver.notify_one();
    }
}

/// Sends due actions, oldest first, each rule at most `max_per_minute` a minute; failed sends
/// are retried with the webhooks' backoff, up to `webhook_attempts`.
async fn run_delivery(app: Arc<App>) {
    let mut sent: HashMap<(String, String), VecDeque<Instant>> = HashMap::new();
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), app.triggers.deliver.notified()).await;
        loop {
            let app2 = app.clone();
            let due = tokio::task::spawn_blocking(move || app2.meta().due_actions(now_ms(), 64))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let due = match due {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the trigger outbox");
                    break;
                }
            };
            if due.is_empty() {
                break;
            }
            let mut progressed = false;
            for a in due {
                let window = sent.entry((a.project.clone(), a.rule.clone())).or_default();
                while window
                    .front()
                    .is_some_and(|t| t.elapsed() >= Duration::from_secs(60))
                {
                    window.pop_front();
                }
                if window.len() >= a.rate_per_minute as usize {
                    // over the rule's rate: waits until a minute after the oldest send
                    let wait = window
                        .front()
                        .map_or(1_000, |t| 60_000 - t.elapsed().as_millis() as i64);
                    let _ = app.meta().postpone_action(a.id, now_ms() + wait.max(100));
                    continue;
                }
                window.push_back(Instant::now());
                progressed = true;
                // None: the action recorded its own outcome (a case, in its transaction)
                let Some(outcome) = send(&app, &a).await else {
                    continue;
                };
                if let ActionOutcome::Failed { error, .. } | ActionOutcome::Retry { error, .. } =
                    &outcome
                {
                    tracing::warn!(project = %a.project, rule = %a.rule, %error, "trigger action failed");
                }
                if let Err(e) = app.meta().action_attempted(a.id, &outcome, now_ms()) {
                    tracing::warn!(error = %e, "cannot record a trigger action");
                }
            }
            if !progressed {
                break;
            }
        }
    }
}

/// One attempt at an action. A case is opened and marked done in one transaction; the others
/// are sent, then their outcome is recorded by the caller.
async fn send(app: &Arc<App>, a: &itinera_meta::PendingAction) -> Option<ActionOutcome> {
    let parsed = serde_json::from_str::<TriggerAction>(&a.target)
        .and_then(|t| serde_json::from_str::<FiredFor>(&a.payload).map(|f| (t, f)));
    let (action, fired) = match parsed {
        Ok(p) => p,
        Err(e) => {
            return Some(ActionOutcome::Failed {
                status: None,
                error: format!("unreadable action: {e}"),
            })
        }
    };
    let failed = |status: Option<i64>, error: String| {
        let attempts = a.attempts + 1;
        if attempts >= app.config.webhook_attempts.max(1) as i64 {
            ActionOutcome::Failed { status, error }
        } else {
            let delay = app
                .config
                .webhook_backoff_ms
                .saturating_mul(1 << (attempts - 1).min(20)) as i64;
            ActionOutcome::Retry {
                status,
                error,
                next_at_ms: now_ms() + delay,
            }
        }
    };
    match action {
        TriggerAction::Webhook { url, secret } => {
            let headers = [
                (
                    "x-itinera-signature",
                    outbound::signature(&secret, a.payload.as_bytes()),
                ),
                ("idempotency-key", a.idempotency_key.clone()),
            ];
            Some(
                match outbound::post_json(app, &url, &a.payload, &headers).await {
                    Posted::Refused(reason) => ActionOutcome::Failed {
                        status: None,
                        error: format!("refused: {reason}"),
                    },
                    Posted::Sent {
                        status,
                        error: None,
                    } => ActionOutcome::Delivered { status },
                    Posted::Sent {
                        status,
                        error: Some(error),
                    } => failed(status, error),
                },
            )
        }
        TriggerAction::Email { to, subject, body } => {
            let (app2, a2, f) = (app.clone(), a.clone(), fired.clone());
            // Err(true, …): permanent, a person without an address will not get one by retrying
            let sent = tokio::task::spawn_blocking(move || -> Result<u16, (bool, String)> {
                let backend = app2
                    .backend(&a2.project)
                    .map_err(|e| (false, e.to_string()))?;
                let address = backend
                    .person_trait(&f.person, &to)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| (true, format!("{} has no {to}", f.person)))?;
                let (subject, body) = (
                    f.fill(&backend, &a2.rule, &subject),
                    f.fill(&backend, &a2.rule, &body),
                );
                outbound::send_mail(&app2, &[address], &subject, &body).map_err(|e| (false, e))
            })
            .await
            .unwrap_or_else(|e| Err((false, e.to_string())));
            Some(match sent {
                Ok(code) => ActionOutcome::Delivered {
                    status: Some(i64::from(code)),
                },
                Err((true, error)) => ActionOutcome::Failed {
                    status: None,
                    error,
                },
                Err((false, e)) => failed(None, e),
            })
        }
        TriggerAction::SetTrait { name, value } => {
            let message = json!({
                "type": "identify", "userId": fired.person, "messageId": a.idempotency_key,
                "traits": { name: value },
                "context": {"library": {"name": "itinera-trigger"}},
            });
            Some(
                match app
                    .append_message(&a.project, &message, itinera_core::MessageType::Identify)
                    .await
                {
                    Ok(_) => ActionOutcome::Delivered { status: None },
                    Err(AppError::Invalid { field, reason }) => ActionOutcome::Failed {
                        status: None,
                        error: format!("{field}: {reason}"),
                    },
                    Err(e) => failed(None, e.to_string()),
                },
            )
        }
        TriggerAction::Case { title } => {
            let (app2, a2, f) = (app.clone(), a.clone(), fired.clone());
            let opened = tokio::task::spawn_blocking(move || -> Result<i64, String> {
                let backend = app2.backend(&a2.project).map_err(|e| e.to_string())?;
                let title = f.fill(&backend, &a2.rule, &title);
                app2.meta()
                    .open_case_for_action(a2.id, &a2.project, &f.person, &title, now_ms())
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match opened {
                Ok(_) => None,
                Err(e) => Some(failed(None, e)),
            }
        }
    }
}

/// Who a firing was for and why, as its payload says: what templates are filled with.
#[derive(Clone, Deserialize)]
struct FiredFor {
    person: String,
    because: String,
}

impl FiredFor {
    /// `template` with `{{person}}`, `{{rule}}`, `{{because}}` and the person's latest traits.
    fn fill(&self, backend: &crate::Backend, rule: &str, template: &str) -> String {
        let fixed = [
            ("person", self.person.as_str()),
            ("rule", rule),
            ("because", self.because.as_str()),
        ];
        itinera_engine::triggers::render(template, &fixed, |k| {
            backend.person_trait(&self.person, k)
        })
    }
}
