//! Segments and personas: saved rules that pick persons by their traits, properties and
//! behaviour ("did X at least N times in the last D days"), or a fixed list of persons (a cohort
//! or a CLV tier saved as a segment). Any analysis runs on a segment or a persona through
//! [`Filtered`], a source that passes on only the matching journeys — so every analysis is
//! filtered the same way without knowing about segments.
//!
//! A rule is evaluated on the person's **whole** history up to the as-of time; the analysis then
//! sees the journey restricted to its own date range.

use crate::duration::Span;
use crate::error::{EngineError, Result};
use crate::journey::{
    Field, Journey, JourneyBatch, JourneySource, PieceBatch, ScanOptions, Vocabulary,
};
use crate::selector::{EventSelector, Matcher, PropPattern};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

/// Which persons a segment or persona holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SegmentRule {
    /// Every rule holds.
    #[schema(no_recursion)]
    All(Vec<SegmentRule>),
    /// At least one rule holds.
    #[schema(no_recursion)]
    Any(Vec<SegmentRule>),
    /// The rule does not hold.
    #[schema(no_recursion)]
    Not(Box<SegmentRule>),
    /// The person's latest value of a trait or property matches (`{"key": "traits.plan",
    /// "is": "pro"}`).
    Trait {
        key: String,
        #[serde(rename = "is")]
        pattern: PropPattern,
    },
    /// Touchpoints matching `match`, counted over the last `within` before the as-of time (all
    /// history when absent): at least `at_least` (default 1) and at most `at_most`.
    Did {
        #[serde(rename = "match")]
        selector: EventSelector,
        #[serde(default = "one")]
        at_least: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_most: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within: Option<Span>,
    },
    /// These persons (any of their ids).
    Persons(Vec<String>),
}

fn one() -> u32 {
    1
}

/// A named rule: a segment, or a persona when kept in an ordered list of personas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub rule: SegmentRule,
}

enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Trait {
        key: Option<u32>,
        accepted: Vec<bool>,
    },
    Did {
        bit: usize,
        at_least: u32,
        at_most: Option<u32>,
        within: Option<i64>,
    },
    Persons(FxHashSet<u32>),
}

/// A rule compiled against one vocabulary.
pub struct CompiledRule {
    root: Node,
    matcher: Matcher,
}

struct Compiler<'v> {
    vocab: &'v dyn Vocabulary,
    selectors: Vec<EventSelector>,
}

impl Compiler<'_> {
    fn node(&mut self, r: &SegmentRule) -> Result<Node> {
        Ok(match r {
            SegmentRule::All(v) => {
                Node::All(v.iter().map(|r| self.node(r)).collect::<Result<_>>()?)
            }
            SegmentRule::Any(v) => {
                Node::Any(v.iter().map(|r| self.node(r)).collect::<Result<_>>()?)
            }
            SegmentRule::Not(r) => Node::Not(Box::new(self.node(r)?)),
            SegmentRule::Trait { key, pattern } => {
                if !(key.starts_with("traits.") || key.starts_with("properties.")) {
                    return Err(EngineError::invalid(
                        "rule",
                        format!(
                            "`{key}` is not a property (expected traits.NAME or properties.NAME)"
                        ),
                    ));
                }
                let regex = match pattern {
                    PropPattern::Text(crate::selector::Pattern::Regex { regex }) => {
                        Some(regex::Regex::new(regex).map_err(|e| {
                            EngineError::invalid("rule", format!("bad regex `{regex}`: {e}"))
                        })?)
                    }
                    _ => None,
                };
                Node::Trait {
                    key: self.vocab.code(Field::PropKey, key),
                    accepted: self
                        .vocab
                        .names(Field::PropValue)
                        .iter()
                        .map(|v| !v.is_empty() && pattern.accepts(v, regex.as_ref()))
                        .collect(),
                }
            }
            SegmentRule::Did {
                selector,
                at_least,
                at_most,
                within,
            } => {
                if at_most.is_some_and(|m| m < *at_least) {
                    return Err(EngineError::invalid("rule", "at_most is below at_least"));
                }
                self.selectors.push(selector.clone());
                if self.selectors.len() > 64 {
                    return Err(EngineError::invalid("rule", "at most 64 `did` conditions"));
                }
                Node::Did {
                    bit: self.selectors.len() - 1,
                    at_least: *at_least,
                    at_most: *at_most,
                    within: within.map(Span::ms),
                }
            }
            SegmentRule::Persons(ids) => Node::Persons(
                ids.iter()
                    .filter_map(|id| self.vocab.code(Field::DistinctId, id))
                    .collect(),
            ),
        })
    }
}

impl CompiledRule {
    pub fn compile(rule: &SegmentRule, vocab: &dyn Vocabulary) -> Result<CompiledRule> {
        let mut c = Compiler {
            vocab,
            selectors: Vec::new(),
        };
        let root = c.node(rule)?;
        let matcher = Matcher::compile(&c.selectors, vocab)?;
        Ok(CompiledRule { root, matcher })
    }

    /// Whether the person of `j` (their whole history) is in the segment at `as_of_ms`.
    pub fn matches(&self, j: &Journey<'_>, as_of_ms: i64) -> bool {
        self.eval(&self.root, j, as_of_ms)
    }

    fn eval(&self, n: &Node, j: &Journey<'_>, as_of: i64) -> bool {
        match n {
            Node::All(v) => v.iter().all(|n| self.eval(n, j, as_of)),
            Node::Any(v) => v.iter().any(|n| self.eval(n, j, as_of)),
            Node::Not(n) => !self.eval(n, j, as_of),
            Node::Trait { key, accepted } => key
                .and_then(|k| {
                    (0..j.len())
                        .rev()
                        .filter(|i| j.ts[*i] < as_of)
                        .find_map(|i| j.props.get(i, k))
                })
                .is_some_and(|v| accepted.get(v as usize).copied().unwrap_or(false)),
            Node::Did {
                bit,
                at_least,
                at_most,
                within,
            } => {
                let from = within.map_or(i64::MIN, |w| as_of.saturating_sub(w));
                let lo = j.ts.partition_point(|t| *t < from);
                let hi = j.ts.partition_point(|t| *t < as_of);
                let mut n = 0u32;
                for i in lo..hi {
                    n += u32::from(self.matcher.row_mask(j, i) & (1 << bit) != 0);
                }
                n >= *at_least && at_most.is_none_or(|m| n <= m)
            }
            Node::Persons(set) => j.did.iter().any(|d| set.contains(d)),
        }
    }
}

/// What a [`Filtered`] source lets through.
pub enum Filter {
    All,
    Segment(Box<CompiledRule>),
    /// Personas in order: a person is the first persona whose rule matches; `which` picks the
    /// persons of one persona (`None`: persons without any).
    Persona {
        rules: Vec<CompiledRule>,
        which: Option<usize>,
    },
    /// Persons every one of these filters keeps (a segment within a persona).
    And(Vec<Filter>),
}

impl Filter {
    /// Compiles a segment filter.
    pub fn segment(def: &SegmentDef, vocab: &dyn Vocabulary) -> Result<Filter> {
        Ok(Filter::Segment(Box::new(CompiledRule::compile(
            &def.rule, vocab,
        )?)))
    }

    /// Compiles a filter for persona `name` among the ordered `personas`.
    pub fn persona(personas: &[SegmentDef], name: &str, vocab: &dyn Vocabulary) -> Result<Filter> {
        let which = personas.iter().position(|p| p.name == name);
        if which.is_none() && name != "(none)" {
            return Err(EngineError::invalid(
                "persona",
                format!(
                    "no persona named `{name}`{}",
                    crate::selector::did_you_mean(
                        name,
                        &personas.iter().map(|p| p.name.as_str()).collect::<Vec<_>>()
                    )
                ),
            ));
        }
        Ok(Filter::Persona {
            rules: personas
                .iter()
                .map(|p| CompiledRule::compile(&p.rule, vocab))
                .collect::<Result<_>>()?,
            which,
        })
    }

    fn keeps(&self, j: &Journey<'_>, as_of: i64) -> bool {
        match self {
            Filter::All => true,
            Filter::Segment(r) => r.matches(j, as_of),
            Filter::Persona { rules, which } => {
                rules.iter().position(|r| r.matches(j, as_of)) == *which
            }
            Filter::And(all) => all.iter().all(|f| f.keeps(j, as_of)),
        }
    }
}

/// A source that passes on only the journeys a [`Filter`] keeps, evaluated on each person's
/// whole history up to `as_of_ms`, then restricted to the scan's date range.
pub struct Filtered<'s, S> {
    pub inner: &'s S,
    pub filter: Filter,
    pub as_of_ms: i64,
}

/// The scan options without their date range: filters judge a person on the whole history,
/// and on any of its columns.
fn whole_history(opts: &ScanOptions) -> ScanOptions {
    ScanOptions {
        from_ms: None,
        to_ms: None,
        columns: crate::journey::JourneyColumns::ALL,
        ..opts.clone()
    }
}

impl<S: JourneySource> JourneySource for Filtered<'_, S> {
    fn journey_of<R: Send>(&self, did: u32, f: impl Fn(&Journey<'_>) -> R + Sync) -> Option<R> {
        self.inner
            .journey_of(did, |j| self.filter.keeps(j, self.as_of_ms).then(|| f(j)))
            .flatten()
    }

    fn scan<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &Journey<'_>) + Sync,
    ) -> Vec<A> {
        if matches!(self.filter, Filter::All) {
            return self.inner.scan(opts, init, f);
        }
        let whole = whole_history(opts);
        self.inner.scan(&whole, init, |acc, j| {
            if self.filter.keeps(j, self.as_of_ms) {
                if let Some(part) = j.within(opts.from_ms, opts.to_ms) {
                    f(acc, &part);
                }
            }
        })
    }

    fn scan_batches<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
    ) -> Vec<A> {
        if matches!(self.filter, Filter::All) {
            return self.inner.scan_batches(opts, init, f);
        }
        let whole = whole_history(opts);
        self.inner.scan_batches(&whole, init, |acc, b| {
            let (mut persons, mut ranges) = (Vec::new(), Vec::new());
            for k in 0..b.persons.len() {
                let j = b.journey(k);
                if !self.filter.keeps(&j, self.as_of_ms) {
                    continue;
                }
                let r = crate::journey::rows_within(j.ts, opts.from_ms, opts.to_ms);
                if !r.is_empty() {
                    let start = b.ranges[k].0;
                    persons.push(b.persons[k]);
                    ranges.push((start + r.start as u32, start + r.end as u32));
                }
            }
            if !persons.is_empty() {
                f(
                    acc,
                    &JourneyBatch {
                        rows: b.rows,
                        persons: &persons,
                        ranges: &ranges,
                        distinct_times: b.distinct_times,
                    },
                );
            }
        })
    }

    fn scan_pieces<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
        g: impl Fn(&mut A, &PieceBatch<'_>) + Sync,
    ) -> Vec<A> {
        match self.filter {
            Filter::All => self.inner.scan_pieces(opts, init, f, g),
            // a person is judged on a whole journey: the filtered batches
            _ => self.scan_batches(opts, init, f),
        }
    }

    fn with_vocabulary<R>(&self, f: impl FnOnce(&dyn Vocabulary) -> R) -> R {
        self.inner.with_vocabulary(f)
    }
}

/// Sizes of segments and personas, from one scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentsReport {
    pub persons: u64,
    pub segments: Vec<(String, u64)>,
    /// Persons per persona (first matching persona), then `(none)`.
    pub personas: Vec<(String, u64)>,
}

pub fn run_segments_report<S: JourneySource>(
    source: &S,
    segments: &[SegmentDef],
    personas: &[SegmentDef],
    as_of_ms: i64,
    opts: &ScanOptions,
) -> Result<SegmentsReport> {
    let (seg_rules, persona_rules) = source.with_vocabulary(|v| -> Result<_> {
        let c = |d: &SegmentDef| {
            CompiledRule::compile(&d.rule, v).map_err(|e| match e {
                EngineError::Invalid { field, reason } => {
                    EngineError::invalid(field, format!("{}: {reason}", d.name))
                }
                e => e,
            })
        };
        Ok((
            segments.iter().map(c).collect::<Result<Vec<_>>>()?,
            personas.iter().map(c).collect::<Result<Vec<_>>>()?,
        ))
    })?;
    let whole = whole_history(opts);
    let parts = source.scan(
        &whole,
        || {
            (
                0u64,
                vec![0u64; seg_rules.len()],
                vec![0u64; persona_rules.len() + 1],
            )
        },
        |(n, s, p), j| {
            *n += 1;
            for (k, r) in seg_rules.iter().enumerate() {
                s[k] += u64::from(r.matches(j, as_of_ms));
            }
            let which = persona_rules
                .iter()
                .position(|r| r.matches(j, as_of_ms))
                .unwrap_or(persona_rules.len());
            p[which] += 1;
        },
    );
    let mut persons = 0;
    let mut s = vec![0u64; seg_rules.len()];
    let mut p = vec![0u64; persona_rules.len() + 1];
    for (n, a, b) in parts {
        persons += n;
        s.iter_mut().zip(a).for_each(|(x, y)| *x += y);
        p.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    }
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    Ok(SegmentsReport {
        persons,
        segments: segments.iter().map(|d| d.name.clone()).zip(s).collect(),
        personas: personas
            .iter()
            .map(|d| d.name.clone())
            .chain(["(none)".to_string()])
            .zip(p)
            .collect(),
    })
}

/// The latest value of a trait or property of one person (by any of their ids), e.g. the e-mail
/// to send a follow-up survey to.
pub fn person_trait<S: JourneySource>(source: &S, person: &str, key: &str) -> Option<String> {
    let (did, key) = source.with_vocabulary(|v| {
        (
            v.code(Field::DistinctId, person),
            v.code(Field::PropKey, key),
        )
    });
    let (did, key) = (did?, key?);
    // rows are in time order: the last one carrying the key is the latest value
    let v = source
        .journey_of(did, |j| {
            (0..j.len()).rev().find_map(|i| j.props.get(i, key))
        })
        .flatten()?;
    Some(source.with_vocabulary(|voc| voc.name(Field::PropValue, v).to_string()))
}
