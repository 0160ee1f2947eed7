//! Event selectors: which touchpoints a funnel step, a stage entry rule or a return event means.
//!
//! A selector is an OR of conjunctions over the coded fields (event name, channel, touchpoint,
//! message type). Each field condition is a name, a list of names or a regular expression. Before
//! a scan, selectors are compiled against the backend's dictionaries into lookup tables, so that
//! matching a row costs one table load per constrained field, whatever the number of selectors.

use crate::error::{EngineError, Result};
use crate::journey::{Field, Journey, JourneyColumns, Vocabulary};
use serde::{Deserialize, Serialize};

/// Names of the Segment message types, indexed by their code in [`Journey::kind`].
pub const KIND_NAMES: [&str; 6] = ["track", "identify", "page", "screen", "group", "alias"];

/// A condition on one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Pattern {
    One(String),
    AnyOf(Vec<String>),
    Regex { regex: String },
}

/// Whether `key` names a typed property: `properties.NAME`, `traits.NAME` or `campaign.NAME`
/// (the UTM campaign of `context.campaign`).
pub fn is_prop_key(key: &str) -> bool {
    ["properties.", "traits.", "campaign."]
        .iter()
        .any(|p| key.len() > p.len() && key.starts_with(p))
}

/// A condition on a typed property: text (a name, a list, a regex), a number, or a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PropPattern {
    Text(Pattern),
    Number(f64),
    Range(Range),
}

/// Numeric bounds; every bound given must hold, and the value must be a number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

impl PropPattern {
    /// Whether a stored value (as text) satisfies the condition.
    pub(crate) fn accepts(&self, value: &str, regex: Option<&regex::Regex>) -> bool {
        match self {
            PropPattern::Text(Pattern::One(n)) => value == n,
            PropPattern::Text(Pattern::AnyOf(l)) => l.iter().any(|n| n == value),
            PropPattern::Text(Pattern::Regex { .. }) => regex.is_some_and(|r| r.is_match(value)),
            PropPattern::Number(x) => value.parse::<f64>().is_ok_and(|v| v == *x),
            PropPattern::Range(r) => value.parse::<f64>().is_ok_and(|v| {
                r.gt.is_none_or(|b| v > b)
                    && r.gte.is_none_or(|b| v >= b)
                    && r.lt.is_none_or(|b| v < b)
                    && r.lte.is_none_or(|b| v <= b)
            }),
        }
    }
}

impl std::fmt::Display for PropPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PropPattern::Text(p) => write!(f, "{p}"),
            PropPattern::Number(x) => write!(f, "={x}"),
            PropPattern::Range(r) => {
                let mut first = true;
                for (op, b) in [(">", r.gt), (">=", r.gte), ("<", r.lt), ("<=", r.lte)] {
                    if let Some(b) = b {
                        if !first {
                            f.write_str(",")?;
                        }
                        write!(f, "{op}{b}")?;
                        first = false;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Field conditions that must all hold. A missing field matches anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Conjunction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touchpoint: Option<Pattern>,
    /// Segment message type: `track`, `page`, `screen`, `identify`, `group`, `alias`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Pattern>,
    /// Typed properties of the touchpoint: `properties.NAME` or `traits.NAME` → condition.
    #[serde(
        default,
        rename = "where",
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub props: std::collections::BTreeMap<String, PropPattern>,
}

/// Which touchpoints match: an event name, one conjunction, or any of several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventSelector {
    /// Shorthand for `{"event": NAME}`.
    Event(String),
    Any {
        any: Vec<Conjunction>,
    },
    All(Conjunction),
}

impl EventSelector {
    pub fn event(name: &str) -> Self {
        EventSelector::Event(name.to_string())
    }

    /// The alternatives of this selector.
    pub fn alternatives(&self) -> Vec<Conjunction> {
        match self {
            EventSelector::Event(e) => vec![Conjunction {
                event: Some(Pattern::One(e.clone())),
                ..Default::default()
            }],
            EventSelector::Any { any } => any.clone(),
            EventSelector::All(c) => vec![c.clone()],
        }
    }

    /// Parses the command-line form: alternatives separated by `|`, conditions by `&`, each
    /// condition `field=value` or `field~regex` (field: event, channel, touchpoint, kind); a bare
    /// text is an event name. `Order Completed|channel=email&kind=track`.
    pub fn parse(text: &str) -> Result<EventSelector> {
        let text = text.trim();
        if text.starts_with('{') {
            return serde_json::from_str(text)
                .map_err(|e| EngineError::invalid("selector", e.to_string()));
        }
        let mut any = Vec::new();
        for alt in text.split('|') {
            let mut c = Conjunction::default();
            for cond in alt.split('&') {
                let cond = cond.trim();
                if is_prop_key(cond.split(['=', '~', '<', '>']).next().unwrap_or("")) {
                    let (key, pattern) = parse_prop_condition(cond)?;
                    if c.props.insert(key.clone(), pattern).is_some() {
                        return Err(EngineError::invalid(
                            "selector",
                            format!("property `{key}` given twice in `{alt}`"),
                        ));
                    }
                    continue;
                }
                let (field, pattern) = match cond.find(['=', '~']) {
                    Some(i) => {
                        let value = cond[i + 1..].trim().to_string();
                        let p = if cond.as_bytes()[i] == b'~' {
                            Pattern::Regex { regex: value }
                        } else {
                            Pattern::One(value)
                        };
                        (cond[..i].trim(), p)
                    }
                    None => ("event", Pattern::One(cond.to_string())),
                };
                if matches!(&pattern, Pattern::One(v) if v.is_empty()) {
                    return Err(EngineError::invalid(
                        "selector",
                        format!("empty value in condition `{cond}`"),
                    ));
                }
                let slot = match field {
                    "event" => &mut c.event,
                    "channel" => &mut c.channel,
                    "touchpoint" => &mut c.touchpoint,
                    "kind" | "type" => &mut c.kind,
                    other => {
                        return Err(EngineError::invalid(
                            "selector",
                            format!(
                            "unknown field `{other}` (expected event, channel, touchpoint or kind)"
                        ),
                        ))
                    }
                };
                if slot.is_some() {
                    return Err(EngineError::invalid(
                        "selector",
                        format!("field `{field}` given twice in `{alt}`"),
                    ));
                }
                *slot = Some(pattern);
            }
            any.push(c);
        }
        Ok(if any.len() == 1 {
            let c = any.pop().unwrap();
            match c {
                Conjunction {
                    event: Some(Pattern::One(name)),
                    channel: None,
                    touchpoint: None,
                    kind: None,
                    props,
                } if props.is_empty() => EventSelector::Event(name),
                c => EventSelector::All(c),
            }
        } else {
            EventSelector::Any { any }
        })
    }
}

/// `properties.score>=9`, `traits.role=champion`, `properties.plan~^pro`.
fn parse_prop_condition(cond: &str) -> Result<(String, PropPattern)> {
    let bad = |why: &str| EngineError::invalid("selector", format!("`{cond}`: {why}"));
    let i = cond
        .find(['=', '~', '<', '>'])
        .ok_or_else(|| bad("expected KEY=VALUE, KEY~REGEX or KEY>=NUMBER (also >, <, <=)"))?;
    let key = cond[..i].trim().to_string();
    let rest = &cond[i..];
    let (op, value) = [">=", "<=", ">", "<", "=", "~"]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
        .expect("starts with an operator");
    if value.is_empty() {
        return Err(bad("empty value"));
    }
    let number = || {
        value
            .parse::<f64>()
            .map_err(|_| bad(&format!("`{value}` is not a number")))
    };
    let pattern = match op {
        "=" => PropPattern::Text(Pattern::One(value.to_string())),
        "~" => PropPattern::Text(Pattern::Regex {
            regex: value.to_string(),
        }),
        ">=" => PropPattern::Range(Range {
            gte: Some(number()?),
            ..Default::default()
        }),
        "<=" => PropPattern::Range(Range {
            lte: Some(number()?),
            ..Default::default()
        }),
        ">" => PropPattern::Range(Range {
            gt: Some(number()?),
            ..Default::default()
        }),
        _ => PropPattern::Range(Range {
            lt: Some(number()?),
            ..Default::default()
        }),
    };
    Ok((key, pattern))
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::One(n) => write!(f, "={n}"),
            Pattern::AnyOf(l) => write!(f, " in [{}]", l.join(", ")),
            Pattern::Regex { regex } => write!(f, "~{regex}"),
        }
    }
}

impl std::fmt::Display for Conjunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (name, p) in [
            ("event", &self.event),
            ("channel", &self.channel),
            ("touchpoint", &self.touchpoint),
            ("kind", &self.kind),
        ] {
            if let Some(p) = p {
                if !first {
                    f.write_str(" & ")?;
                }
                write!(f, "{name}{p}")?;
                first = false;
            }
        }
        for (key, p) in &self.props {
            if !first {
                f.write_str(" & ")?;
            }
            write!(f, "{key}{p}")?;
            first = false;
        }
        if first {
            f.write_str("any touchpoint")?;
        }
        Ok(())
    }
}

/// The readable form used as a default label: `Order Completed`, `channel=email & kind=track`.
impl std::fmt::Display for EventSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventSelector::Event(e) => f.write_str(e),
            EventSelector::All(c) => write!(f, "{c}"),
            EventSelector::Any { any } => {
                for (i, c) in any.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// A code table: bit `a` of `table[code]` is set when alternative `a` accepts the code.
#[derive(Debug, Clone, Default)]
struct FieldTable {
    table: Vec<u64>,
}

impl FieldTable {
    #[inline(always)]
    fn get(&self, code: u32) -> u64 {
        self.table.get(code as usize).copied().unwrap_or(0)
    }
}

/// Selectors compiled against one vocabulary. Each selector becomes one output bit: a row's
/// mask has bit `s` set when selector `s` matches it. At most 64 selectors and 64 alternatives.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    selectors: usize,
    /// Alternatives with no condition at all on a field pass that field.
    free: [u64; 4],
    fields: [Option<FieldTable>; 4],
    /// Output bit of each alternative.
    owner: Vec<u8>,
    /// Bits of the alternatives in use.
    valid: u64,
    /// True when every selector has exactly one alternative (alternative bit = selector bit).
    identity: bool,
    /// True when only the event field is constrained: one table load per row.
    event_only: bool,
    /// When only the event name and the message type are constrained: the selector mask of
    /// every (event code × 6 + type code), so that a row costs one table load.
    event_kind: Option<Vec<u64>>,
    /// Property conditions, each of one alternative.
    props: Vec<PropCheck>,
    /// Alternatives with property conditions.
    prop_alts: u64,
}

/// One property condition of one alternative: the row must hold `key` with an accepted value.
#[derive(Debug, Clone, Default)]
struct PropCheck {
    /// `None` when no touchpoint ever had the key: the alternative cannot match.
    key: Option<u32>,
    accepted: Vec<bool>,
    bit: u64,
}

const F_EVENT: usize = 0;
const F_CHANNEL: usize = 1;
const F_TOUCHPOINT: usize = 2;
const F_KIND: usize = 3;

fn compile_pattern(
    what: &str,
    pattern: &Pattern,
    names: &[&str],
    bit: u64,
    table: &mut Vec<u64>,
) -> Result<()> {
    if table.len() < names.len() {
        table.resize(names.len(), 0);
    }
    match pattern {
        Pattern::One(n) => {
            if let Some(i) = names.iter().position(|s| *s == n) {
                table[i] |= bit;
            }
        }
        Pattern::AnyOf(list) => {
            for n in list {
                if let Some(i) = names.iter().position(|s| *s == n) {
                    table[i] |= bit;
                }
            }
        }
        Pattern::Regex { regex } => {
            let re = regex::Regex::new(regex)
                .map_err(|e| EngineError::invalid(what, format!("bad regex `{regex}`: {e}")))?;
            for (i, n) in names.iter().enumerate() {
                if !n.is_empty() && re.is_match(n) {
                    table[i] |= bit;
                }
            }
        }
    }
    Ok(())
}

impl Matcher {
    /// Compiles `selectors` (output bit `i` for selector `i`).
    pub fn compile(selectors: &[EventSelector], vocab: &dyn Vocabulary) -> Result<Matcher> {
        if selectors.len() > 64 {
            return Err(EngineError::invalid(
                "steps",
                "at most 64 selectors in one query",
            ));
        }
        let event_names: Vec<&str> = vocab
            .names(Field::Event)
            .iter()
            .map(|s| s.as_str())
            .collect();
        let channel_names: Vec<&str> = vocab
            .names(Field::Channel)
            .iter()
            .map(|s| s.as_str())
            .collect();
        let tp_names: Vec<&str> = vocab
            .names(Field::Touchpoint)
            .iter()
            .map(|s| s.as_str())
            .collect();
        let mut m = Matcher {
            selectors: selectors.len(),
            ..Default::default()
        };
        let mut tables: [Option<Vec<u64>>; 4] = Default::default();
        let mut alt = 0usize;
        for (s, sel) in selectors.iter().enumerate() {
            let alts = sel.alternatives();
            if alts.is_empty() {
                return Err(EngineError::invalid(
                    "selector",
                    format!("selector {} has no alternatives", s + 1),
                ));
            }
            for c in alts {
                if alt >= 64 {
                    return Err(EngineError::invalid(
                        "selector",
                        "at most 64 alternatives over all selectors of one query",
                    ));
                }
                let bit = 1u64 << alt;
                m.owner.push(s as u8);
                let conds: [(&str, &Option<Pattern>, &[&str]); 4] = [
                    ("event", &c.event, &event_names),
                    ("channel", &c.channel, &channel_names),
                    ("touchpoint", &c.touchpoint, &tp_names),
                    ("kind", &c.kind, &KIND_NAMES),
                ];
                for (key, p) in &c.props {
                    m.props.push(compile_prop(key, p, vocab, bit)?);
                    m.prop_alts |= bit;
                }
                for (f, (what, p, names)) in conds.into_iter().enumerate() {
                    match p {
                        None => m.free[f] |= bit,
                        Some(p) => {
                            if f == F_KIND {
                                check_kind(p)?;
                            }
                            compile_pattern(
                                what,
                                p,
                                names,
                                bit,
                                tables[f].get_or_insert_with(Vec::new),
                            )?
                        }
                    }
                }
                alt += 1;
            }
        }
        m.valid = if alt == 64 {
            u64::MAX
        } else {
            (1u64 << alt) - 1
        };
        m.identity = m.owner.iter().enumerate().all(|(a, s)| a == *s as usize);
        for (f, t) in tables.into_iter().enumerate() {
            m.fields[f] = t.map(|mut table| {
                for v in table.iter_mut() {
                    *v |= m.free[f];
                }
                FieldTable { table }
            });
        }
        m.event_only = m.identity
            && m.props.is_empty()
            && m.fields[F_CHANNEL].is_none()
            && m.fields[F_TOUCHPOINT].is_none()
            && m.fields[F_KIND].is_none();
        if !m.event_only
            && m.props.is_empty()
            && m.fields[F_CHANNEL].is_none()
            && m.fields[F_TOUCHPOINT].is_none()
        {
            let events = event_names.len();
            let mut table = vec![0u64; events * KIND_NAMES.len()];
            for e in 0..events {
                for k in 0..KIND_NAMES.len() {
                    let get = |f: usize, code: usize| match &m.fields[f] {
                        Some(t) => t.get(code as u32),
                        None => u64::MAX,
                    };
                    let alts = get(F_EVENT, e) & get(F_KIND, k) & m.valid;
                    table[e * KIND_NAMES.len() + k] = m.owners_of(alts);
                }
            }
            m.event_kind = Some(table);
        }
        if m.event_only && m.fields[F_EVENT].is_none() {
            // every selector matches everything
            m.fields[F_EVENT] = Some(FieldTable {
                table: vec![m.free[F_EVENT]; event_names.len()],
            });
        }
        Ok(m)
    }

    pub fn selectors(&self) -> usize {
        self.selectors
    }

    /// When only event names are constrained and each selector has one alternative: the mask of
    /// every event code (codes beyond the table match nothing).
    pub fn event_masks(&self) -> Option<&[u64]> {
        if self.event_only {
            self.fields[F_EVENT].as_ref().map(|t| t.table.as_slice())
        } else {
            None
        }
    }

    /// The selectors (output bits) of a set of alternatives.
    #[inline(always)]
    fn owners_of(&self, mut alts: u64) -> u64 {
        if self.identity || alts == 0 {
            return alts;
        }
        let mut out = 0u64;
        while alts != 0 {
            let a = alts.trailing_zeros() as usize;
            out |= 1u64 << self.owner[a];
            alts &= alts - 1;
        }
        out
    }

    /// The columns [`Matcher::row_mask`] reads besides the event.
    pub fn columns(&self) -> JourneyColumns {
        if self.event_only {
            JourneyColumns::NONE
        } else if self.event_kind.is_some() {
            JourneyColumns::KIND
        } else {
            JourneyColumns::CHANNEL
                .with(JourneyColumns::TOUCHPOINT)
                .with(JourneyColumns::KIND)
                .with(JourneyColumns::PROPS)
        }
    }

    /// The mask of selectors matching row `i` of `j`.
    #[inline(always)]
    pub fn row_mask(&self, j: &Journey<'_>, i: usize) -> u64 {
        if self.event_only {
            return self.fields[F_EVENT].as_ref().unwrap().get(j.event[i]);
        }
        if let Some(t) = &self.event_kind {
            let k = j.event[i] as usize * KIND_NAMES.len() + j.kind[i] as usize;
            return t.get(k).copied().unwrap_or(0);
        }
        let mut alts = u64::MAX;
        let fetch = |f: usize, code: u32| match &self.fields[f] {
            Some(t) => t.get(code),
            None => u64::MAX,
        };
        alts &= fetch(F_EVENT, j.event[i]);
        alts &= fetch(F_CHANNEL, j.channel[i]);
        alts &= fetch(F_TOUCHPOINT, j.touchpoint[i]);
        alts &= fetch(F_KIND, j.kind[i] as u32);
        alts &= self.valid;
        if alts & self.prop_alts != 0 {
            for c in &self.props {
                if alts & c.bit != 0 {
                    let ok = c.key.is_some_and(|k| {
                        j.props
                            .get(i, k)
                            .is_some_and(|v| c.accepted.get(v as usize).copied().unwrap_or(false))
                    });
                    if !ok {
                        alts &= !c.bit;
                    }
                }
            }
        }
        self.owners_of(alts)
    }
}

fn compile_prop(key: &str, p: &PropPattern, vocab: &dyn Vocabulary, bit: u64) -> Result<PropCheck> {
    if !is_prop_key(key) {
        return Err(EngineError::invalid(
            "where",
            format!("`{key}` is not a property (expected properties.NAME, traits.NAME or campaign.NAME)"),
        ));
    }
    let regex = match p {
        PropPattern::Text(Pattern::Regex { regex }) => Some(
            regex::Regex::new(regex)
                .map_err(|e| EngineError::invalid("where", format!("bad regex `{regex}`: {e}")))?,
        ),
        _ => None,
    };
    let values = vocab.names(Field::PropValue);
    Ok(PropCheck {
        key: vocab.code(Field::PropKey, key),
        accepted: values
            .iter()
            .map(|v| !v.is_empty() && p.accepts(v, regex.as_ref()))
            .collect(),
        bit,
    })
}

fn check_kind(p: &Pattern) -> Result<()> {
    let names: Vec<&String> = match p {
        Pattern::One(n) => vec![n],
        Pattern::AnyOf(l) => l.iter().collect(),
        Pattern::Regex { .. } => return Ok(()),
    };
    for n in names {
        if !KIND_NAMES.contains(&n.as_str()) {
            return Err(EngineError::invalid(
                "kind",
                format!(
                    "unknown message type `{n}` (expected one of {})",
                    KIND_NAMES.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Something a query asked for that the data does not have: the answer is still given (a name
/// nobody used matches no one), with this next to it so that a typo is not read as a drop-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryWarning {
    /// Where in the query (`steps[1].match`, `cohort`, …).
    pub field: String,
    pub message: String,
    /// The closest stored names, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
}

/// The stored names closest to `name`: the same name in another case first, then by Jaro-Winkler
/// similarity (at least 0.8), at most three.
pub fn closest_names(name: &str, stored: &[String]) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(f64, &String)> = stored
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let score = if s.to_lowercase() == lower {
                2.0
            } else {
                strsim::jaro_winkler(&lower, &s.to_lowercase())
            };
            (score, s)
        })
        .filter(|(score, _)| *score >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, s)| s.clone()).collect()
}

/// "; did you mean `x`?" for the closest of `known` to `name`, or nothing.
pub fn did_you_mean<S: AsRef<str>>(name: &str, known: &[S]) -> String {
    let known: Vec<String> = known.iter().map(|s| s.as_ref().to_string()).collect();
    match closest_names(name, &known).first() {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// The names `selector` (at `field` of a query) asks for that no stored touchpoint has: event
/// names, channels and touchpoints given literally (regular expressions are not judged).
pub fn unknown_names(
    field: &str,
    selector: &EventSelector,
    vocab: &dyn Vocabulary,
) -> Vec<QueryWarning> {
    let mut out = Vec::new();
    for c in selector.alternatives() {
        for key in c.props.keys() {
            if vocab.code(Field::PropKey, key).is_none() {
                let suggestions = closest_names(key, vocab.names(Field::PropKey));
                let hint = match suggestions.first() {
                    Some(s) => format!("; did you mean '{s}'?"),
                    None => String::new(),
                };
                out.push(QueryWarning {
                    field: field.to_string(),
                    message: format!("no stored touchpoint has the property '{key}', so the condition on it matches no one{hint}"),
                    suggestions,
                });
            }
        }
        for (what, f, pattern) in [
            ("event", Field::Event, &c.event),
            ("channel", Field::Channel, &c.channel),
            ("touchpoint", Field::Touchpoint, &c.touchpoint),
        ] {
            let names: Vec<&String> = match pattern {
                Some(Pattern::One(n)) => vec![n],
                Some(Pattern::AnyOf(ns)) => ns.iter().collect(),
                _ => vec![],
            };
            for name in names {
                if vocab.code(f, name).is_none() {
                    let suggestions = closest_names(name, vocab.names(f));
                    let hint = match suggestions.first() {
                        Some(s) => format!("; did you mean '{s}'?"),
                        None => String::new(),
                    };
                    out.push(QueryWarning {
                        field: field.to_string(),
                        message: format!("no stored touchpoint has the {what} '{name}', so it matches no one{hint}"),
                        suggestions,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod warning_tests {
    use super::*;
    use crate::journey::JourneySource;
    use crate::memory::{MemorySource, Row};

    #[test]
    fn unknown_names_are_named_with_the_closest_stored_ones() {
        let rows = vec![
            Row {
                channel: "email".into(),
                ..Row::new("a", 1, "Product Viewed")
            },
            Row {
                channel: "paid_search".into(),
                ..Row::new("a", 2, "Order Completed")
            },
        ];
        let src = MemorySource::new(&rows);
        let warn = |text: &str| {
            let sel = EventSelector::parse(text).unwrap();
            src.with_vocabulary(|v| unknown_names("steps[0].match", &sel, v))
        };
        assert!(
            warn("Product Viewed|channel=email").is_empty(),
            "known names say nothing"
        );
        let w = warn("Product Viewd");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].field, "steps[0].match");
        assert_eq!(w[0].suggestions, ["Product Viewed"]);
        assert!(
            w[0].message.contains("did you mean 'Product Viewed'?"),
            "{}",
            w[0].message
        );
        assert_eq!(
            warn("order completed")[0].suggestions[0],
            "Order Completed",
            "case first"
        );
        let w = warn("Order Completed&channel=emial");
        assert_eq!((w.len(), w[0].suggestions[0].as_str()), (1, "email"));
        assert!(
            warn("Zebra Crossing")[0].suggestions.is_empty(),
            "nothing close: no guess"
        );
        assert!(
            warn("event~^Prod").is_empty(),
            "regular expressions are not judged"
        );
    }
}
