//! Trigger rules: *when* a person enters a stage of a model, or does a touchpoint matching a
//! selector, *for* an optional segment or persona, *do* actions. The engine decides whether a
//! rule is due for one person, and when, from that person's journey; the application keeps who
//! was triggered (durably) and sends the actions.
//!
//! A rule acts only on what happens after it was switched on (`since_ms`): a person who entered
//! the stage before is not triggered when they come back, and history is not back-filled unless
//! the rule asks for it. Semantics: `docs/triggers.md`.

use crate::duration::Span;
use crate::error::{EngineError, Result};
use crate::journey::{Journey, JourneySource, ScanOptions};
use crate::selector::{EventSelector, Matcher};
use crate::stages::{CompiledModel, PersonStages, StageModel};
use serde::{Deserialize, Serialize};

/// What makes a rule due for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerWhen {
    /// The person's first entry into `stage` of `model` (a built-in or saved model's name).
    EntersStage { model: String, stage: String },
    /// A touchpoint matching `event` (a selector). A survey answer at or below a score is one:
    /// `{"event": "Survey Responded", "where": {"properties.score": {"lte": 6}}}`.
    Event { event: EventSelector },
    /// In `stage` of `model` for `after` without entering a later stage: due `after` past the
    /// first entry. Found by a sweep at least every minute, not by an arrival.
    StalledInStage {
        model: String,
        stage: String,
        after: Span,
    },
}

impl TriggerWhen {
    /// The model and stage a stage rule names.
    pub fn stage(&self) -> Option<(&str, &str)> {
        match self {
            TriggerWhen::EntersStage { model, stage }
            | TriggerWhen::StalledInStage { model, stage, .. } => Some((model, stage)),
            TriggerWhen::Event { .. } => None,
        }
    }

    /// Whether the rule is found by sweeps (time passing) rather than by arrivals.
    pub fn is_sweep(&self) -> bool {
        matches!(self, TriggerWhen::StalledInStage { .. })
    }
}

/// A trigger rule as saved in a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub when: TriggerWhen,
    /// Only persons in this saved segment (judged on their whole history when due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Only persons of this saved persona.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    /// What to do, in order, for each person triggered.
    pub actions: Vec<TriggerAction>,
    /// Without it a rule triggers each person once. With it, an `event` rule triggers a person
    /// again on a matching touchpoint at least this long after the previous one it acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reentry_after: Option<Span>,
    /// Actions sent per minute at most; beyond it they wait their turn (default 60).
    #[serde(default = "default_rate")]
    pub max_per_minute: u32,
    /// Share of triggered persons (0–90 %) held out: recorded, no action sent, so that acting
    /// can be compared with not acting.
    #[serde(default)]
    pub holdout_percent: f64,
    /// About B2B accounts instead of persons (`enters_stage` only): an account enters the stage
    /// when its buying group does, as the stage funnel by account counts it (`min_share` of its
    /// members reached it, with a member in `required_role` among them). Found by the sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<crate::stages::AccountStageRule>,
    /// Switched off by default: dry-run it first.
    #[serde(default)]
    pub enabled: bool,
    /// Touchpoints from this time on can trigger it: when it was last switched on (set by the
    /// server), or `backfill_from_ms` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Act on history from this time too (back-filling), when asked; otherwise only on what
    /// happens after the rule is switched on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_from_ms: Option<i64>,
}

fn default_rate() -> u32 {
    60
}

/// Something a rule does for a triggered person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerAction {
    /// POST a JSON body signed like alert webhooks (`X-Itinera-Signature: sha256=HMAC(secret,
    /// body)`), with an `Idempotency-Key` that stays the same on every retry.
    Webhook {
        url: String,
        #[serde(default)]
        secret: String,
    },
    /// A plain-text e-mail through the configured SMTP relay to the person's address (the
    /// latest value of `to`, default `traits.email`). In `subject` and `body`, `{{person}}`,
    /// `{{rule}}`, `{{because}}` and `{{traits.NAME}}` / `{{properties.NAME}}` (the person's
    /// latest value) are filled in.
    Email {
        #[serde(default = "email_trait")]
        to: String,
        subject: String,
        body: String,
    },
    /// Opens a case for the person (the cases of `docs/surveys.md`), titled from a template as
    /// an e-mail's subject.
    Case { title: String },
    /// Gives the person a trait (an `identify` message written into their journey, its message
    /// id the action's idempotency key, so a repeat is stored once): a saved segment whose rule
    /// asks for the trait (`{"trait": {"key": "traits.NAME", "is": VALUE}}`) then holds them.
    SetTrait { name: String, value: String },
}

fn email_trait() -> String {
    "traits.email".into()
}

impl TriggerAction {
    /// The action's kind, as recorded: `webhook`, `email` or `case`.
    pub fn kind(&self) -> &'static str {
        match self {
            TriggerAction::Webhook { .. } => "webhook",
            TriggerAction::Email { .. } => "email",
            TriggerAction::Case { .. } => "case",
            TriggerAction::SetTrait { .. } => "set_trait",
        }
    }
}

/// Fills `{{NAME}}` in `template`: `person`, `rule`, `because` from `fixed`, anything else
/// (`traits.NAME`, `properties.NAME`) from `lookup`; unknown or missing names become empty.
pub fn render(
    template: &str,
    fixed: &[(&str, &str)],
    lookup: impl Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        match fixed.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => out.push_str(v),
            None if crate::selector::is_prop_key(name) => {
                out.push_str(&lookup(name).unwrap_or_default())
            }
            None => {}
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

impl TriggerRule {
    /// Checks what needs no data: settings within their bounds.
    pub fn validate(&self) -> Result<()> {
        if self.actions.is_empty() {
            return Err(EngineError::invalid(
                "actions",
                "a rule needs at least one action",
            ));
        }
        if self.actions.len() > 10 {
            return Err(EngineError::invalid(
                "actions",
                "at most 10 actions per rule",
            ));
        }
        for (k, a) in self.actions.iter().enumerate() {
            match a {
                TriggerAction::Email { to, subject, .. } => {
                    if !crate::selector::is_prop_key(to) {
                        return Err(EngineError::invalid(
                            format!("actions[{k}].email.to"),
                            "the trait holding the address: traits.NAME or properties.NAME",
                        ));
                    }
                    if subject.trim().is_empty() {
                        return Err(EngineError::invalid(
                            format!("actions[{k}].email.subject"),
                            "an e-mail needs a subject",
                        ));
                    }
                }
                TriggerAction::SetTrait { name, .. }
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    return Err(EngineError::invalid(
                        format!("actions[{k}].set_trait.name"),
                        "letters, digits, _ and - (the trait is traits.NAME)",
                    ))
                }
                TriggerAction::Case { title } if title.trim().is_empty() => {
                    return Err(EngineError::invalid(
                        format!("actions[{k}].case.title"),
                        "a case needs a title",
                    ))
                }
                _ => {}
            }
        }
        if !(0.0..=90.0).contains(&self.holdout_percent) {
            return Err(EngineError::invalid(
                "holdout_percent",
                "must be between 0 and 90",
            ));
        }
        if !(1..=100_000).contains(&self.max_per_minute) {
            return Err(EngineError::invalid(
                "max_per_minute",
                "must be between 1 and 100000",
            ));
        }
        if self.reentry_after.is_some() && self.when.stage().is_some() {
            return Err(EngineError::invalid(
                "reentry_after",
                "a stage is entered once per person: re-entry applies to event rules",
            ));
        }
        if self.reentry_after.is_some_and(|s| s.ms() < 60_000) {
            return Err(EngineError::invalid(
                "reentry_after",
                "must be at least 1 min",
            ));
        }
        if let TriggerWhen::StalledInStage { after, .. } = &self.when {
            if after.ms() < 60_000 {
                return Err(EngineError::invalid(
                    "when.stalled_in_stage.after",
                    "must be at least 1 min (stalls are looked for every minute)",
                ));
            }
        }
        if self.account.is_some() {
            if !matches!(self.when, TriggerWhen::EntersStage { .. }) {
                return Err(EngineError::invalid(
                    "account",
                    "account rules are about entering a stage (enters_stage)",
                ));
            }
            if let Some(k) = self.actions.iter().position(|a| {
                !matches!(
                    a,
                    TriggerAction::Webhook { .. } | TriggerAction::Case { .. }
                )
            }) {
                return Err(EngineError::invalid(
                    format!("actions[{k}]"),
                    "an account has no address or traits of its own: webhooks and cases only",
                ));
            }
            if self.segment.is_some() || self.persona.is_some() {
                return Err(EngineError::invalid(
                    "account",
                    "segments and personas select persons, not accounts",
                ));
            }
        }
        if self.segment.is_some() && self.persona.is_some() {
            return Err(EngineError::invalid(
                "persona",
                "give a segment or a persona, not both",
            ));
        }
        Ok(())
    }

    /// Whether the rule is found by sweeps (time passing, or accounts) rather than by arrivals.
    pub fn is_sweep(&self) -> bool {
        self.when.is_sweep() || self.account.is_some()
    }

    /// Whether `person` is in the rule's hold-out: a stable draw per rule and person.
    pub fn holds_out(&self, rule: &str, person: &str) -> bool {
        if self.holdout_percent <= 0.0 {
            return false;
        }
        use std::hash::{Hash, Hasher};
        // FxHasher is stable across runs and platforms (no random seed)
        let mut h = rustc_hash::FxHasher::default();
        (rule, person).hash(&mut h);
        (h.finish() % 10_000) as f64 / 100.0 < self.holdout_percent
    }
}

/// A rule's effect on one person: first due at `at_ms` (the touchpoint's time), because of
/// `because` (the stage entered or the event done).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Due {
    pub at_ms: i64,
    pub because: String,
}

/// A rule's condition compiled against one vocabulary.
pub enum CompiledWhen {
    Stage {
        model: Box<CompiledModel>,
        stage: usize,
        /// Stalled this long (a `stalled_in_stage` rule); None: on entry.
        stalled: Option<Span>,
    },
    Event {
        matcher: Box<Matcher>,
        name: String,
    },
}

impl CompiledWhen {
    /// Compiles `when`; `model` is the resolved model of an `enters_stage` rule.
    pub fn compile(
        when: &TriggerWhen,
        model: Option<StageModel>,
        vocab: &dyn crate::journey::Vocabulary,
    ) -> Result<CompiledWhen> {
        match when {
            TriggerWhen::EntersStage { stage, .. } | TriggerWhen::StalledInStage { stage, .. } => {
                let field = match when {
                    TriggerWhen::EntersStage { .. } => "when.enters_stage",
                    _ => "when.stalled_in_stage",
                };
                let model = model.ok_or_else(|| {
                    EngineError::invalid(format!("{field}.model"), "the model is not resolved")
                })?;
                let index = model.index_of(stage).ok_or_else(|| {
                    let names: Vec<&str> = model.stages.iter().map(|s| s.name.as_str()).collect();
                    EngineError::invalid(
                        format!("{field}.stage"),
                        format!(
                            "model {} has no stage `{stage}`{}",
                            model.name,
                            crate::selector::did_you_mean(stage, &names)
                        ),
                    )
                })?;
                let stalled = match when {
                    TriggerWhen::StalledInStage { after, .. } => Some(*after),
                    _ => None,
                };
                Ok(CompiledWhen::Stage {
                    model: Box::new(CompiledModel::compile(model, vocab)?),
                    stage: index,
                    stalled,
                })
            }
            TriggerWhen::Event { event } => Ok(CompiledWhen::Event {
                matcher: Box::new(Matcher::compile(std::slice::from_ref(event), vocab)?),
                name: serde_json::to_string(event).unwrap_or_default(),
            }),
        }
    }

    /// When the rule is next due for the person of `j`, at or before `now_ms`: the first
    /// touchpoint at or after `since_ms` that makes it true, and, for events with re-entry, at
    /// least `gap` after the touchpoint of the previous firing (`last_ms`). A stage is entered
    /// once: its first entry counts, and only if it lies at or after `since_ms`. A stall is due
    /// `after` past that entry, if no later stage was entered by then.
    pub fn due(
        &self,
        j: &Journey<'_>,
        since_ms: i64,
        now_ms: i64,
        last_ms: Option<i64>,
        gap: Option<Span>,
    ) -> Option<Due> {
        match self {
            CompiledWhen::Stage {
                model,
                stage,
                stalled,
            } => {
                if last_ms.is_some() {
                    return None;
                }
                let mut p = PersonStages::default();
                model.person(j, &mut p);
                let entered = p.entered[*stage];
                if entered == i64::MIN {
                    return None;
                }
                let name = &model.model.stages[*stage].name;
                let (at, because) = match stalled {
                    None => (entered, name.clone()),
                    Some(after) => {
                        let at = entered.saturating_add(after.ms());
                        if p.exit_of(*stage).is_some_and(|exit| exit <= at) {
                            return None;
                        }
                        (at, format!("{name} for {after}"))
                    }
                };
                (at >= since_ms && at <= now_ms).then_some(Due { at_ms: at, because })
            }
            CompiledWhen::Event { matcher, name } => {
                let after = match (last_ms, gap) {
                    (None, _) => since_ms,
                    (Some(_), None) => return None,
                    (Some(last), Some(g)) => since_ms.max(last.saturating_add(g.ms().max(1))),
                };
                let start = j.ts.partition_point(|t| *t < after);
                (start..j.len())
                    .take_while(|&i| j.ts[i] <= now_ms)
                    .find(|&i| matcher.row_mask(j, i) != 0)
                    .map(|i| Due {
                        at_ms: j.ts[i],
                        because: name.clone(),
                    })
            }
        }
    }

    /// True when no later touchpoint can make the rule due for a person for whom `due` just
    /// answered None with no previous firing: a stage entered before `since_ms` (its first
    /// entry is past). Lets the caller stop looking at such persons.
    pub fn settled(&self, j: &Journey<'_>, since_ms: i64) -> bool {
        match self {
            CompiledWhen::Stage {
                model,
                stage,
                stalled: None,
            } => {
                let mut p = PersonStages::default();
                model.person(j, &mut p);
                p.entered[*stage] != i64::MIN && p.entered[*stage] < since_ms
            }
            CompiledWhen::Stage { .. } => false,
            CompiledWhen::Event { .. } => false,
        }
    }
}

/// Whether a rule's firings were followed by an outcome: those acted on against those held out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerEffect {
    /// Persons acted on whose firing is at least `within` old: how many did the outcome.
    pub acted: crate::handoff::Share,
    pub held_out: crate::handoff::Share,
    /// acted − held out, with Newcombe's interval.
    pub difference: crate::handoff::Difference,
    /// Firings too recent to judge (less than `within` old).
    pub not_yet_judged: u64,
    pub definitions: Vec<String>,
}

/// Which of `firings` (person code, firing's touchpoint time, held out) were followed by a
/// touchpoint matching `outcome` within `within` (after the firing, up to and including
/// `within` later); firings not `within` old at `now_ms` are not judged.
pub fn run_effect<S: JourneySource>(
    source: &S,
    firings: &[(u32, i64, bool)],
    outcome: &EventSelector,
    within: Span,
    now_ms: i64,
    confidence: f64,
    opts: &ScanOptions,
) -> Result<TriggerEffect> {
    let matcher = source.with_vocabulary(|v| Matcher::compile(std::slice::from_ref(outcome), v))?;
    // (judged, did) for [acted, held out]
    let mut groups = [(0u64, 0u64); 2];
    let mut not_yet = 0;
    for (n, &(person, at, held_out)) in firings.iter().enumerate() {
        // one person-index lookup each: a rule with millions of firings must stay stoppable
        if n % 4096 == 0 && opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(EngineError::Cancelled);
        }
        if at.saturating_add(within.ms()) > now_ms {
            not_yet += 1;
            continue;
        }
        let did = source
            .journey_of(person, |j| {
                let start = j.ts.partition_point(|t| *t <= at);
                (start..j.len())
                    .take_while(|&i| j.ts[i] <= at + within.ms())
                    .any(|i| matcher.row_mask(j, i) != 0)
            })
            .unwrap_or(false);
        let g = &mut groups[usize::from(held_out)];
        g.0 += 1;
        g.1 += u64::from(did);
    }
    let z = crate::stats::z_for(confidence);
    let acted = crate::handoff::Share::of(groups[0].1, groups[0].0, z);
    let held_out = crate::handoff::Share::of(groups[1].1, groups[1].0, z);
    Ok(TriggerEffect {
        difference: crate::handoff::Difference::of(&acted, &held_out, z),
        acted,
        held_out,
        not_yet_judged: not_yet,
        definitions: vec![
            format!("outcome: a touchpoint matching the outcome within {within} after the touchpoint that fired the rule"),
            "acted: persons the rule's actions were sent for; held out: persons in its hold-out (a stable random draw), recorded and not acted on".into(),
            format!("intervals: Wilson at {:.0} %, the difference with Newcombe's hybrid score interval", confidence * 100.0),
        ],
    })
}

/// When each account entered stage `stage` of `model` by `rule` (its buying group's entry):
/// the time the `k`-th of its members reached the stage (reached: entered it or a later one),
/// k the share `min_share` of its members (at least one), and, with `required_role`, no earlier
/// than a member holding the role reached it. Accounts due in `[since_ms, now_ms]`.
pub fn account_entries<S: JourneySource>(
    source: &S,
    model: &CompiledModel,
    stage: usize,
    rule: &crate::stages::AccountStageRule,
    since_ms: i64,
    now_ms: i64,
    opts: &ScanOptions,
) -> Result<Vec<(String, Due)>> {
    let role = source.with_vocabulary(|v| rule.role_codes(v));
    let parts = source.scan(
        opts,
        rustc_hash::FxHashMap::<u32, Vec<(i64, bool)>>::default,
        |acc, j| {
            let a = j.account();
            if a == crate::NO_ACCOUNT {
                return;
            }
            let mut p = PersonStages::default();
            model.person(j, &mut p);
            let reached = p.entered[stage..]
                .iter()
                .copied()
                .filter(|t| *t != i64::MIN)
                .min()
                .unwrap_or(i64::MIN);
            let holds_role = role
                .flatten()
                .is_some_and(|(k, v)| j.latest_prop(k) == Some(v));
            acc.entry(a).or_default().push((reached, holds_role));
        },
    );
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let mut members: rustc_hash::FxHashMap<u32, Vec<(i64, bool)>> = Default::default();
    for part in parts {
        for (a, m) in part {
            members.entry(a).or_default().extend(m);
        }
    }
    let name = &model.model.stages[stage].name;
    let mut out = Vec::new();
    for (a, m) in members {
        let k = ((rule.min_share * m.len() as f64).ceil() as usize).max(1);
        let mut times: Vec<i64> = m.iter().map(|x| x.0).filter(|t| *t != i64::MIN).collect();
        times.sort_unstable();
        let Some(&kth) = times.get(k - 1) else {
            continue;
        };
        let at = match rule.required_role {
            None => kth,
            Some(_) => match m
                .iter()
                .filter(|x| x.1 && x.0 != i64::MIN)
                .map(|x| x.0)
                .min()
            {
                Some(role_at) => kth.max(role_at),
                None => continue,
            },
        };
        if at >= since_ms && at <= now_ms {
            let account =
                source.with_vocabulary(|v| v.name(crate::journey::Field::Account, a).to_string());
            out.push((
                account,
                Due {
                    at_ms: at,
                    because: format!("{name} (account)"),
                },
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Who a rule would have triggered over a past period, had it been on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DryRun {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Persons the rule would have triggered once each (re-entries not counted).
    pub persons: u64,
    /// Per day (UTC) of the triggering touchpoint: `[day start ms, persons]`.
    pub by_day: Vec<(i64, u64)>,
    /// Some of them (up to 20), with when and why.
    pub sample: Vec<DryRunPerson>,
}

impl DryRun {
    /// The dry run of entries found otherwise (accounts), each `(who, due)`.
    pub fn of(entries: Vec<(String, Due)>, from_ms: i64, to_ms: i64) -> DryRun {
        let mut by_day = std::collections::BTreeMap::<i64, u64>::new();
        for (_, d) in &entries {
            *by_day
                .entry(d.at_ms.div_euclid(86_400_000) * 86_400_000)
                .or_default() += 1;
        }
        let mut sample: Vec<DryRunPerson> = entries
            .iter()
            .map(|(who, d)| DryRunPerson {
                person: who.clone(),
                at_ms: d.at_ms,
                because: d.because.clone(),
            })
            .collect();
        sample.sort_by_key(|p| p.at_ms);
        sample.truncate(20);
        DryRun {
            from_ms,
            to_ms,
            persons: entries.len() as u64,
            by_day: by_day.into_iter().collect(),
            sample,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DryRunPerson {
    pub person: String,
    pub at_ms: i64,
    pub because: String,
}

/// The persons `when` would have triggered in `[from_ms, to_ms)`: the first time each became
/// due on or after `from_ms`, if before `to_ms`. Pass a filtered source for a population.
pub fn dry_run<S: JourneySource>(
    source: &S,
    when: &CompiledWhen,
    from_ms: i64,
    to_ms: i64,
    opts: &ScanOptions,
) -> Result<DryRun> {
    if to_ms <= from_ms {
        return Err(EngineError::invalid("to_ms", "must be after from_ms"));
    }
    const SAMPLE: usize = 20;
    let parts = source.scan(
        &ScanOptions {
            from_ms: None,
            to_ms: Some(to_ms),
            ..opts.clone()
        },
        || {
            (
                0u64,
                std::collections::BTreeMap::<i64, u64>::new(),
                Vec::new(),
            )
        },
        |(n, days, sample), j| {
            if let Some(d) = when.due(j, from_ms, to_ms - 1, None, None) {
                if d.at_ms < to_ms {
                    *n += 1;
                    *days
                        .entry(d.at_ms.div_euclid(86_400_000) * 86_400_000)
                        .or_default() += 1;
                    if sample.len() < SAMPLE {
                        sample.push((j.person, d));
                    }
                }
            }
        },
    );
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let mut persons = 0;
    let mut by_day = std::collections::BTreeMap::new();
    let mut sample = Vec::new();
    for (n, days, s) in parts {
        persons += n;
        for (d, k) in days {
            *by_day.entry(d).or_insert(0) += k;
        }
        sample.extend(s);
    }
    sample.sort_by_key(|(_, d)| d.at_ms);
    sample.truncate(SAMPLE);
    let sample = source.with_vocabulary(|v| {
        sample
            .into_iter()
            .map(|(p, d)| DryRunPerson {
                person: v.name(crate::journey::Field::DistinctId, p).to_string(),
                at_ms: d.at_ms,
                because: d.because,
            })
            .collect()
    });
    Ok(DryRun {
        from_ms,
        to_ms,
        persons,
        by_day: by_day.into_iter().collect(),
        sample,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, Row};

    fn compiled(src: &MemorySource, when: TriggerWhen) -> CompiledWhen {
        let model = when
            .stage()
            .and_then(|(model, _)| StageModel::builtin(model));
        src.with_vocabulary(|v| CompiledWhen::compile(&when, model, v))
            .unwrap()
    }

    /// A stage fires on its first entry only, and only when that entry is after the rule was
    /// switched on; an event fires again after the re-entry gap.
    #[test]
    fn templates_fill_names_and_leave_unknown_ones_empty() {
        let out = render(
            "Hi {{ traits.first_name }}, {{because}} ({{rule}}) {{nope}} {{traits.missing}}!",
            &[("rule", "welcome"), ("because", "Decision")],
            |k| (k == "traits.first_name").then(|| "Ada".to_string()),
        );
        assert_eq!(out, "Hi Ada, Decision (welcome)  !");
        assert_eq!(render("no end {{x", &[], |_| None), "no end {{x");
    }

    #[test]
    fn due_follows_first_entry_and_reentry() {
        let rows = vec![
            Row::new("early", 1_000, "Order Completed"),
            Row::new("early", 9_000, "Order Completed"),
            Row::new("late", 5_000, "Product Viewed"),
            Row::new("late", 6_000, "Order Completed"),
            Row::new("late", 7_000, "Order Completed"),
            Row::new("late", 20_000, "Order Completed"),
        ];
        let src = MemorySource::new(&rows);
        let stage = compiled(
            &src,
            TriggerWhen::EntersStage {
                model: "customer-journey".into(),
                stage: "Decision".into(),
            },
        );
        let event = compiled(
            &src,
            TriggerWhen::Event {
                event: EventSelector::event("Order Completed"),
            },
        );
        type Seen = (Option<i64>, bool, Option<i64>, Option<i64>, Option<i64>);
        let parts = src.scan(
            &ScanOptions::default(),
            Vec::new,
            |acc: &mut Vec<(u32, Seen)>, j| {
                acc.push((
                    j.person,
                    (
                        stage.due(j, 4_000, i64::MAX, None, None).map(|d| d.at_ms),
                        stage.settled(j, 4_000),
                        event.due(j, 4_000, i64::MAX, None, None).map(|d| d.at_ms),
                        event
                            .due(j, 4_000, i64::MAX, Some(6_000), None)
                            .map(|d| d.at_ms),
                        event
                            .due(j, 4_000, i64::MAX, Some(6_000), Some(Span(5_000)))
                            .map(|d| d.at_ms),
                    ),
                ))
            },
        );
        let seen: std::collections::BTreeMap<String, Seen> = parts
            .into_iter()
            .flatten()
            .map(|(p, s)| {
                let name = src
                    .with_vocabulary(|v| v.name(crate::journey::Field::DistinctId, p).to_string());
                (name, s)
            })
            .collect();
        // stalled in Consideration: `late` moved on to Decision 1 s after entering it
        let stalled = |after: i64| {
            compiled(
                &src,
                TriggerWhen::StalledInStage {
                    model: "customer-journey".into(),
                    stage: "Consideration".into(),
                    after: Span(after),
                },
            )
        };
        let late = |when: &CompiledWhen, now: i64| {
            src.scan(&ScanOptions::default(), Vec::new, |acc, j| {
                if j.len() == 4 {
                    acc.push(when.due(j, 0, now, None, None).map(|d| d.at_ms));
                }
            })
            .concat()
        };
        assert_eq!(
            late(&stalled(500), i64::MAX),
            [Some(5_500)],
            "stalled before moving on"
        );
        assert_eq!(late(&stalled(500), 5_400), [None], "not yet due at 5.4 s");
        assert_eq!(
            late(&stalled(2_000), i64::MAX),
            [None],
            "moved on before the stall"
        );
        // entered Decision at 1 s, before the rule: never due, and settled
        assert_eq!(seen["early"], (None, true, Some(9_000), None, None));
        assert_eq!(
            seen["late"],
            (Some(6_000), false, Some(6_000), None, Some(20_000))
        );
    }
}
