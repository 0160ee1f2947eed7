use super::*;
use crate::calendar::Period;
use crate::error::{EngineError, Result};
use crate::journey::{Field, Journey, JourneySource, ScanOptions, NO_ACCOUNT};
use crate::segments::CompiledRule;
use crate::selector::Matcher;
use crate::stages::{CompiledModel, PersonStages};
use serde::{Deserialize, Serialize};

/// A scores query compiled against one vocabulary: which rows are answers of the kind, their
/// score, and the group they fall in.
pub(super) struct AnswerScan<'q> {
    q: &'q ScoresQuery,
    matcher: Matcher,
    compiled: Option<CompiledModel>,
    /// `by: step`: the steps' selectors, bit k for step k.
    steps: Option<Matcher>,
    personas: Vec<CompiledRule>,
    score_key: Option<u32>,
    kind_key: Option<u32>,
    survey_key: Option<u32>,
    kind_code: Option<u32>,
    survey_code: Option<Option<u32>>,
    /// The numeric value of every property value code.
    numbers: Vec<Option<f64>>,
    zone: crate::timezone::Zone,
}

impl<'q> AnswerScan<'q> {
    pub(super) fn compile<S: JourneySource>(
        source: &S,
        q: &'q ScoresQuery,
    ) -> Result<AnswerScan<'q>> {
        let [min, max] = q.scale();
        if max.partial_cmp(&min) != Some(std::cmp::Ordering::Greater) {
            return Err(EngineError::invalid("scale", "max must be above min"));
        }
        if q.by == Some(ScoreBy::Persona) && q.personas.is_empty() {
            return Err(EngineError::invalid(
                "personas",
                "by persona needs personas (none are defined)",
            ));
        }
        if q.by == Some(ScoreBy::Step) && q.steps.is_empty() {
            return Err(EngineError::invalid("steps", "by step needs steps"));
        }
        let model = q.model.resolve()?;
        let zone = crate::timezone::Zone::new(q.time_zone.as_deref(), q.utc_offset_minutes)?;
        source.with_vocabulary(|v| {
            let key = |k: &str| v.code(Field::PropKey, k);
            Ok(AnswerScan {
                q,
                matcher: Matcher::compile(std::slice::from_ref(&q.response), v)?,
                compiled: (q.by == Some(ScoreBy::Stage))
                    .then(|| CompiledModel::compile(model, v))
                    .transpose()?,
                steps: (q.by == Some(ScoreBy::Step))
                    .then(|| {
                        let selectors: Vec<_> =
                            q.steps.iter().map(|s| s.selector.clone()).collect();
                        Matcher::compile(&selectors, v)
                    })
                    .transpose()?,
                personas: q
                    .personas
                    .iter()
                    .map(|p| CompiledRule::compile(&p.rule, v))
                    .collect::<Result<_>>()?,
                score_key: key(&q.score_property),
                kind_key: key(&q.kind_property),
                survey_key: key(&q.survey_property),
                kind_code: v.code(Field::PropValue, q.kind.name()),
                survey_code: q.survey_id.as_deref().map(|s| v.code(Field::PropValue, s)),
                numbers: v
                    .names(Field::PropValue)
                    .iter()
                    .map(|s| s.parse::<f64>().ok())
                    .collect(),
                zone,
            })
        })
    }

    /// `None`: row `i` is not an answer of this kind (and survey); `Some(None)`: it is, but has
    /// no score on the scale; `Some(Some(score))`.
    pub(super) fn answer(&self, j: &Journey<'_>, i: usize) -> Option<Option<f64>> {
        if self.matcher.row_mask(j, i) == 0 {
            return None;
        }
        // the answer's kind: from its kind property when it has one
        if let Some(k) = self.kind_key {
            if let Some(v) = j.props.get(i, k) {
                if Some(v) != self.kind_code {
                    return None;
                }
            }
        }
        if let Some(wanted) = self.survey_code {
            if wanted.is_none() || self.survey_key.and_then(|k| j.props.get(i, k)) != wanted {
                return None;
            }
        }
        let [min, max] = self.q.scale();
        Some(
            self.score_key
                .and_then(|k| j.props.get(i, k))
                .and_then(|v| self.numbers.get(v as usize).copied().flatten())
                .filter(|s| (min..=max).contains(s)),
        )
    }

    /// The group of the answer on row `i` (`u64::MAX`: none). Answers of one journey are asked
    /// for in order, after `state.begin()`.
    pub(super) fn group(&self, j: &Journey<'_>, i: usize, state: &mut GroupState) -> u64 {
        let last_touch = (0..i)
            .rev()
            .find(|&k| j.kind[k] != 1 && j.kind[k] < 4 && self.matcher.row_mask(j, k) == 0);
        match self.q.by {
            None => 0,
            Some(ScoreBy::Stage) => {
                let c = self.compiled.as_ref().expect("compiled for stage");
                c.person(&j.slice(0, i + 1), &mut state.stages);
                state.stages.furthest().map_or(u64::MAX, |s| s as u64)
            }
            Some(ScoreBy::Step) => {
                // one pass over the journey however many answers it has: the cursor moves on
                // from where the previous answer left it
                let steps = self.steps.as_ref().expect("compiled for step");
                for k in state.step_rows..i {
                    let mask = steps.row_mask(j, k);
                    if mask != 0 && self.matcher.row_mask(j, k) == 0 {
                        state.last_step = mask.trailing_zeros() as u64;
                    }
                }
                state.step_rows = state.step_rows.max(i);
                state.last_step
            }
            Some(ScoreBy::Touchpoint) => last_touch.map_or(u64::MAX, |k| j.touchpoint[k] as u64),
            Some(ScoreBy::Channel) => last_touch.map_or(u64::MAX, |k| j.channel[k] as u64),
            Some(ScoreBy::Account) => match j.account() {
                NO_ACCOUNT => u64::MAX,
                a => a as u64,
            },
            Some(ScoreBy::Persona) => self
                .personas
                .iter()
                .position(|r| r.matches(j, i64::MAX))
                .map_or(u64::MAX, |p| p as u64),
            Some(ScoreBy::Survey) => self
                .survey_key
                .and_then(|k| j.props.get(i, k))
                .map_or(u64::MAX, |v| v as u64),
            Some(p @ (ScoreBy::Day | ScoreBy::Week | ScoreBy::Month)) => {
                (period_of(p).index(self.zone.local_ms(j.ts[i])) as u64) ^ (1 << 63)
            }
        }
    }

    /// The label of group key `k` (a stage, touchpoint, survey or period).
    pub(super) fn name(&self, v: &dyn crate::journey::Vocabulary, k: u64) -> String {
        if k == u64::MAX {
            return "(none)".into();
        }
        match self.q.by {
            Some(ScoreBy::Stage) => self.compiled.as_ref().expect("compiled").model.stages
                [k as usize]
                .name
                .clone(),
            Some(ScoreBy::Touchpoint) => v.name(Field::Touchpoint, k as u32).to_string(),
            Some(ScoreBy::Channel) => v.name(Field::Channel, k as u32).to_string(),
            Some(ScoreBy::Account) => v.name(Field::Account, k as u32).to_string(),
            Some(ScoreBy::Persona) => self.q.personas[k as usize].name.clone(),
            Some(ScoreBy::Step) => self.q.steps[k as usize].label(),
            Some(ScoreBy::Survey) => v.name(Field::PropValue, k as u32).to_string(),
            Some(p @ (ScoreBy::Day | ScoreBy::Week | ScoreBy::Month)) => {
                period_of(p).label((k ^ (1 << 63)) as i64)
            }
            None => String::new(),
        }
    }
}

/// What grouping carries from one answer of a journey to the next.
pub(super) struct GroupState {
    stages: PersonStages,
    /// `by: step`: rows before this one were looked at, and the last step among them.
    step_rows: usize,
    last_step: u64,
}

impl Default for GroupState {
    fn default() -> Self {
        GroupState {
            stages: PersonStages::default(),
            step_rows: 0,
            last_step: u64::MAX,
        }
    }
}

impl GroupState {
    /// Called before the first answer of each journey.
    pub(super) fn begin(&mut self) {
        self.step_rows = 0;
        self.last_step = u64::MAX;
    }
}

/// One answer, for alerts and listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Answer {
    pub person: String,
    pub ts_ms: i64,
    pub score: f64,
    /// The answer's group under `by` (the stage, touchpoint… it falls in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The answers of a scores query (its kind, survey, range and scale), with their group.
pub fn find_answers<S: JourneySource>(
    source: &S,
    q: &ScoresQuery,
    opts: &ScanOptions,
) -> Result<Vec<Answer>> {
    let a = AnswerScan::compile(source, q)?;
    let mut scan = opts.clone();
    scan.from_ms = q.from_ms.or(opts.from_ms);
    scan.to_ms = q.to_ms.or(opts.to_ms);
    let parts = source.scan(
        &scan,
        || (Vec::new(), GroupState::default()),
        |(out, state): &mut (Vec<(u32, i64, f64, u64)>, GroupState), j| {
            state.begin();
            for i in 0..j.len() {
                if let Some(Some(score)) = a.answer(j, i) {
                    let g = if q.by.is_some() {
                        a.group(j, i, state)
                    } else {
                        0
                    };
                    out.push((j.person, j.ts[i], score, g));
                }
            }
        },
    );
    let mut answers: Vec<Answer> = source.with_vocabulary(|v| {
        parts
            .into_iter()
            .flat_map(|p| p.0)
            .map(|(person, ts, score, g)| Answer {
                person: v.name(Field::DistinctId, person).to_string(),
                ts_ms: ts,
                score,
                group: q.by.map(|_| a.name(v, g)),
            })
            .collect()
    });
    answers.sort_by(|x, y| x.ts_ms.cmp(&y.ts_ms).then(x.person.cmp(&y.person)));
    Ok(answers)
}

/// The calendar period a trend by `by` is bucketed in.
pub(super) fn period_of(by: ScoreBy) -> Period {
    match by {
        ScoreBy::Day => Period::Day,
        ScoreBy::Week => Period::Week,
        _ => Period::Month,
    }
}
