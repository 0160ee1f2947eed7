//! The embedded backend: analyses run by the engine's kernels over the journey store's
//! per-person sequences, in this process.

use crate::analysis::AnalysisRequest;
use crate::backend::{
    AppendDone, Appended, BackendSize, EventSink, JourneyBackend, PreparedTrigger, Prior,
    TriggerDue, TriggerLook,
};
use crate::error::{AppError, Result};
use crate::population::PopulationDef;
use itinera_core::Touchpoint;
use itinera_engine::alerts::{AggregateCheck, AlertRule};
use itinera_engine::journey::Field;
use itinera_engine::scores::{Answer, ScoresQuery};
use itinera_engine::segments::{CompiledRule, Filtered, SegmentDef, SegmentRule, SegmentsReport};
use itinera_engine::triggers::{CompiledWhen, DryRun};
use itinera_engine::{EngineError, JourneySource, ModelRef, PersonJourney, ScanOptions};
use itinera_store::Store;
use serde::Serialize;
use serde_json::Value;

/// A project's embedded journey store as a backend.
pub struct Embedded(pub Store);

fn json<T: Serialize>(r: std::result::Result<T, EngineError>) -> Result<Value> {
    Ok(serde_json::to_value(r?).expect("results serialize"))
}

/// Runs `request` on any journey source: the embedded executor of every analysis.
pub fn run_on<S: JourneySource>(
    source: &S,
    request: &AnalysisRequest,
    as_of_ms: i64,
    opts: &ScanOptions,
) -> Result<Value> {
    use itinera_engine as e;
    match request {
        AnalysisRequest::Funnel(q) => json(e::run_funnel(source, q, opts)),
        AnalysisRequest::Retention(q) => json(e::run_retention(source, q, opts)),
        AnalysisRequest::Paths(q) => json(e::run_paths(source, q, opts)),
        AnalysisRequest::Stages(q) => json(e::run_stage_funnel(source, q, opts)),
        AnalysisRequest::Attribution(q) => json(e::run_attribution(source, q, opts)),
        AnalysisRequest::Clv(q) => json(e::run_clv(source, q, opts)),
        AnalysisRequest::Accounts(q) => json(e::run_accounts(source, q, opts)),
        AnalysisRequest::Advocacy(q) => json(e::run_advocacy(source, q, opts)),
        AnalysisRequest::Revenue(q) => json(e::run_revenue(source, q, opts)),
        AnalysisRequest::Scores(q) => json(e::run_scores(source, q, opts)),
        AnalysisRequest::Promoters(q) => json(e::scores::find_promoters(source, q, opts)),
        AnalysisRequest::Comments(q) => json(e::scores::find_comments(source, q, opts)),
        AnalysisRequest::Handoff(q) => json(e::handoff::run_handoff(source, q, as_of_ms, opts)),
    }
}

impl JourneyBackend for Embedded {
    fn run(
        &self,
        analysis: &AnalysisRequest,
        population: &PopulationDef,
        as_of_ms: i64,
        opts: &ScanOptions,
    ) -> Result<Value> {
        let view = self.0.view();
        let filter = view.with_vocabulary(|v| population.compile(v))?;
        let filtered = Filtered {
            inner: &view,
            filter,
            as_of_ms,
        };
        run_on(&filtered, analysis, as_of_ms, opts)
    }

    fn triggers_due(
        &self,
        rules: &[PreparedTrigger],
        ids: &[String],
        prior: &dyn Fn(usize, &str) -> Prior,
    ) -> Result<TriggerLook> {
        let view = self.0.view();
        let compiled = rules
            .iter()
            .map(|r| Embedded::compile_trigger(&view, r))
            .collect::<Result<Vec<_>>>()?;
        let persons: Vec<(u32, String)> = view.with_vocabulary(|v| {
            let mut seen = std::collections::HashSet::new();
            ids.iter()
                .filter_map(|id| v.code(Field::DistinctId, id))
                .map(|code| view.snapshot.person_of(code))
                .filter(|root| seen.insert(*root))
                .map(|root| (root, v.name(Field::DistinctId, root).to_string()))
                .collect()
        });
        let (mut out, mut settled) = (Vec::new(), Vec::new());
        for (root, person) in persons {
            for (k, (when, source)) in compiled.iter().enumerate() {
                let rule = &rules[k];
                let previous = match prior(k, &person) {
                    Prior::Settled => continue,
                    Prior::Never => None,
                    // once per person (stages, events without re-entry): nothing more to look at
                    Prior::FiredAt(_) if rule.reentry_after.is_none() => {
                        settled.push((k, person.clone()));
                        continue;
                    }
                    Prior::FiredAt(t) => Some(t),
                };
                let looked = source.journey_of(root, |j| {
                    let due = when.due(
                        j,
                        rule.since_ms,
                        rule.as_of_ms,
                        previous,
                        rule.reentry_after,
                    );
                    let done =
                        due.is_none() && previous.is_none() && when.settled(j, rule.since_ms);
                    (due, done)
                });
                match looked {
                    Some((Some(due), _)) => out.push(TriggerDue {
                        rule: k,
                        person: person.clone(),
                        due,
                    }),
                    Some((None, true)) => settled.push((k, person.clone())),
                    _ => {}
                }
            }
        }
        Ok((out, settled))
    }

    fn trigger_dry_run(
        &self,
        rule: &PreparedTrigger,
        from_ms: i64,
        to_ms: i64,
        opts: &ScanOptions,
    ) -> Result<DryRun> {
        let view = self.0.view();
        let (when, source) = Embedded::compile_trigger(&view, rule)?;
        if let Some(account) = &rule.account {
            let entries = account_entries(&view, &when, account, from_ms, to_ms - 1, opts)?;
            return Ok(DryRun::of(entries, from_ms, to_ms));
        }
        Ok(itinera_engine::triggers::dry_run(
            &source, &when, from_ms, to_ms, opts,
        )?)
    }

    fn triggers_sweep(
        &self,
        rule: &PreparedTrigger,
        opts: &ScanOptions,
    ) -> Result<Vec<TriggerDue>> {
        let view = self.0.view();
        let (when, source) = Embedded::compile_trigger(&view, rule)?;
        if let Some(account) = &rule.account {
            return Ok(
                account_entries(&view, &when, account, rule.since_ms, rule.as_of_ms, opts)?
                    .into_iter()
                    .map(|(person, due)| TriggerDue {
                        rule: 0,
                        person,
                        due,
                    })
                    .collect(),
            );
        }
        let parts = source.scan(opts, Vec::new, |acc, j| {
            if let Some(due) = when.due(j, rule.since_ms, rule.as_of_ms, None, None) {
                acc.push((j.person, due));
            }
        });
        if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(AppError::Cancelled);
        }
        Ok(view.with_vocabulary(|v| {
            parts
                .into_iter()
                .flatten()
                .map(|(p, due)| TriggerDue {
                    rule: 0,
                    person: v.name(Field::DistinctId, p).to_string(),
                    due,
                })
                .collect()
        }))
    }

    fn trigger_effect(
        &self,
        firings: &[(String, i64, bool)],
        outcome: &itinera_engine::EventSelector,
        within: itinera_engine::Span,
        now_ms: i64,
        confidence: f64,
        opts: &ScanOptions,
    ) -> Result<itinera_engine::triggers::TriggerEffect> {
        let view = self.0.view();
        let coded: Vec<(u32, i64, bool)> = view.with_vocabulary(|v| {
            firings
                .iter()
                .filter_map(|(p, at, h)| v.code(Field::DistinctId, p).map(|c| (c, *at, *h)))
                .collect()
        });
        Ok(itinera_engine::triggers::run_effect(
            &view, &coded, outcome, within, now_ms, confidence, opts,
        )?)
    }

    fn ids_received_since(&self, received_ms: i64) -> Result<Vec<String>> {
        Ok(self.0.ids_received_since(received_ms))
    }

    fn unknown_names(
        &self,
        selectors: &[(String, &itinera_engine::EventSelector)],
    ) -> Vec<itinera_engine::selector::QueryWarning> {
        self.0.with_vocabulary(|v| {
            selectors
                .iter()
                .flat_map(|(field, s)| itinera_engine::selector::unknown_names(field, s, v))
                .collect()
        })
    }

    fn person_stages(&self, model: &ModelRef, person: &str) -> Result<PersonJourney> {
        Ok(itinera_engine::run_person_stages(
            &self.0.view(),
            model,
            person,
        )?)
    }

    fn segments_report(
        &self,
        segments: &[SegmentDef],
        personas: &[SegmentDef],
        as_of_ms: i64,
        opts: &ScanOptions,
    ) -> Result<SegmentsReport> {
        Ok(itinera_engine::segments::run_segments_report(
            &self.0.view(),
            segments,
            personas,
            as_of_ms,
            opts,
        )?)
    }

    fn check_rule(&self, rule: &SegmentRule) -> Result<()> {
        Ok(self
            .0
            .with_vocabulary(|v| CompiledRule::compile(rule, v).map(|_| ()))?)
    }

    fn check_scores(&self, query: &ScoresQuery) -> Result<()> {
        Ok(itinera_engine::scores::check_scores(&self.0.view(), query)?)
    }

    fn firing_answers(&self, rule: &AlertRule, from_ms: i64, to_ms: i64) -> Result<Vec<Answer>> {
        Ok(itinera_engine::alerts::firing_answers(
            &self.0.view(),
            rule,
            from_ms,
            to_ms,
            &Default::default(),
        )?)
    }

    fn check_aggregate(&self, rule: &AlertRule, now_ms: i64) -> Result<Option<AggregateCheck>> {
        Ok(itinera_engine::alerts::check_aggregate(
            &self.0.view(),
            rule,
            now_ms,
            &Default::default(),
        )?)
    }

    fn person_trait(&self, person: &str, path: &str) -> Option<String> {
        itinera_engine::segments::person_trait(&self.0.view(), person, path)
    }

    fn write_error(&self) -> Option<String> {
        self.0.write_error()
    }

    fn size(&self) -> Result<BackendSize> {
        let s = self.0.stats()?;
        Ok(BackendSize {
            events: s.events,
            bytes: s.bytes_on_disk,
            memory: self.0.memory().parts().to_vec(),
        })
    }
}

/// The accounts a stage rule about accounts is due for (see
/// [`itinera_engine::triggers::account_entries`]).
fn account_entries(
    view: &itinera_store::StoreView,
    when: &CompiledWhen,
    rule: &itinera_engine::stages::AccountStageRule,
    since_ms: i64,
    now_ms: i64,
    opts: &ScanOptions,
) -> Result<Vec<(String, itinera_engine::triggers::Due)>> {
    match when {
        CompiledWhen::Stage { model, stage, .. } => Ok(itinera_engine::triggers::account_entries(
            view, model, *stage, rule, since_ms, now_ms, opts,
        )?),
        CompiledWhen::Event { .. } => Err(AppError::invalid(
            "account",
            "account rules are about entering a stage (enters_stage)",
        )),
    }
}

impl Embedded {
    fn compile_trigger<'v>(
        view: &'v itinera_store::StoreView,
        rule: &PreparedTrigger,
    ) -> Result<(CompiledWhen, Filtered<'v, itinera_store::StoreView>)> {
        let (when, filter) = view.with_vocabulary(|v| {
            Ok::<_, AppError>((
                CompiledWhen::compile(&rule.when, rule.model.clone(), v)?,
                rule.population.compile(v)?,
            ))
        })?;
        Ok((
            when,
            Filtered {
                inner: view,
                filter,
                as_of_ms: rule.as_of_ms,
            },
        ))
    }
}

impl EventSink for Embedded {
    fn append(&self, batch: Vec<Touchpoint>, done: AppendDone) {
        self.0.append_async(batch, move |r| {
            done(
                r.map(|o| Appended {
                    stored: o.stored,
                    duplicates: o.duplicates,
                })
                .map_err(AppError::from),
            )
        });
    }
}
