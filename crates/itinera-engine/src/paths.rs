//! Paths and flows: what people did after a touchpoint, before one, or between two, as Sankey
//! nodes and links and as the most common complete paths.
//!
//! Each person (or each session, when a gap splits journeys) contributes one path of at most
//! `steps` nodes. A node is the touchpoint's event, grouped page path (`touchpoint`) or channel,
//! after cleaning (regex groups, e.g. every `/products/123` as `/products/:id`); repeats of the
//! same node in a row are collapsed by default.

use crate::duration::Span;
use crate::error::{EngineError, Result};
use crate::journey::{Field, Journey, JourneySource, ScanOptions};
use crate::selector::{EventSelector, Matcher};
use crate::stats::ratio;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// What a path node names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PathNode {
    #[default]
    Event,
    Touchpoint,
    Channel,
}

/// A cleaning rule: node names matching `regex` become `replace` (`$1` etc. allowed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleaningRule {
    pub regex: String,
    pub replace: String,
}

/// A paths analysis, independent of the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    /// Forward from the first touchpoint matching this (the path starts with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<EventSelector>,
    /// Backward from the last touchpoint matching this (or, with `start`, up to the first one
    /// after the start: paths between two touchpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<EventSelector>,
    /// Nodes per path, including the start or end.
    #[serde(default = "default_steps")]
    pub steps: usize,
    #[serde(default)]
    pub node: PathNode,
    /// Split journeys into sessions at gaps this long; each session gives its own path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_gap: Option<Span>,
    #[serde(default = "yes")]
    pub collapse_repeats: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clean: Vec<CleaningRule>,
    /// Sankey links lighter than this are left out.
    #[serde(default = "one")]
    pub min_weight: u64,
    /// Most common complete paths to list.
    #[serde(default = "default_top")]
    pub top: usize,
    /// Share of each listed path's persons who did this later (at or after the path's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<EventSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

fn default_steps() -> usize {
    5
}
fn yes() -> bool {
    true
}
fn one() -> u64 {
    1
}
fn default_top() -> usize {
    20
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SankeyNode {
    /// `"{step}:{name}"`.
    pub id: String,
    /// 0-based position in the path (counted backwards from the end in backward paths).
    pub step: usize,
    pub name: String,
    pub count: u64,
    /// Paths that end at this node (no next touchpoint within the steps).
    pub ended: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SankeyLink {
    pub source: String,
    pub target: String,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PathRow {
    pub path: Vec<String>,
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PathResult {
    /// Paths counted (persons, or sessions).
    pub paths_counted: u64,
    pub nodes: Vec<SankeyNode>,
    pub links: Vec<SankeyLink>,
    pub top_paths: Vec<PathRow>,
}

/// Runs a paths analysis on a backend.
pub fn run_paths<S: JourneySource>(
    source: &S,
    q: &PathQuery,
    opts: &ScanOptions,
) -> Result<PathResult> {
    if q.steps < 1 || q.steps > 20 {
        return Err(EngineError::invalid("steps", "between 1 and 20"));
    }
    let mut selectors = Vec::new();
    let start_bit = q.start.as_ref().map(|s| {
        selectors.push(s.clone());
        1u64 << (selectors.len() - 1)
    });
    let end_bit = q.end.as_ref().map(|s| {
        selectors.push(s.clone());
        1u64 << (selectors.len() - 1)
    });
    let conv_bit = q.conversion.as_ref().map(|s| {
        selectors.push(s.clone());
        1u64 << (selectors.len() - 1)
    });
    let field = match q.node {
        PathNode::Event => Field::Event,
        PathNode::Touchpoint => Field::Touchpoint,
        PathNode::Channel => Field::Channel,
    };
    let rules: Vec<(regex::Regex, &str)> = q
        .clean
        .iter()
        .enumerate()
        .map(|(i, r)| {
            regex::Regex::new(&r.regex)
                .map(|re| (re, r.replace.as_str()))
                .map_err(|e| EngineError::invalid(format!("clean[{i}].regex"), e.to_string()))
        })
        .collect::<Result<_>>()?;
    // code → cleaned group, and the group names
    let (matcher, group_of, group_names) = source.with_vocabulary(|v| {
        let matcher = Matcher::compile(&selectors, v)?;
        let mut names: Vec<String> = Vec::new();
        let mut index: FxHashMap<String, u32> = FxHashMap::default();
        let group_of: Vec<u32> = v
            .names(field)
            .iter()
            .map(|n| {
                let mut name = n.clone();
                if let Some((re, rep)) = rules.iter().find(|(re, _)| re.is_match(n)) {
                    name = re.replace_all(n, *rep).into_owned();
                }
                *index.entry(name.clone()).or_insert_with(|| {
                    names.push(name);
                    (names.len() - 1) as u32
                })
            })
            .collect();
        Ok::<_, EngineError>((matcher, group_of, names))
    })?;
    let node_code = |j: &Journey<'_>, i: usize| {
        let code = match q.node {
            PathNode::Event => j.event[i],
            PathNode::Touchpoint => j.touchpoint[i],
            PathNode::Channel => j.channel[i],
        };
        group_of.get(code as usize).copied().unwrap_or(u32::MAX)
    };
    let backward = q.end.is_some() && q.start.is_none();
    let mut scan_opts = opts.clone();
    scan_opts.from_ms = q.from_ms.or(opts.from_ms);
    scan_opts.to_ms = q.to_ms.or(opts.to_ms);
    let parts = source.scan(
        &scan_opts,
        || (FxHashMap::<Vec<u32>, (u64, u64)>::default(), Vec::new()),
        |(acc, path), j| {
            let n = j.len();
            // sessions: [lo, hi) ranges
            let mut lo = 0;
            while lo < n {
                let mut hi = lo + 1;
                if let Some(gap) = q.session_gap {
                    while hi < n && j.ts[hi] - j.ts[hi - 1] < gap.ms() {
                        hi += 1;
                    }
                } else {
                    hi = n;
                }
                let mask = |i: usize| matcher.row_mask(j, i);
                let anchor = if backward {
                    (lo..hi).rev().find(|&i| mask(i) & end_bit.unwrap() != 0)
                } else {
                    match start_bit {
                        Some(b) => (lo..hi).find(|&i| mask(i) & b != 0),
                        None => Some(lo),
                    }
                };
                if let Some(a) = anchor {
                    path.clear();
                    let push = |i: usize, path: &mut Vec<u32>| {
                        let c = node_code(j, i);
                        if !(q.collapse_repeats && path.last() == Some(&c)) {
                            path.push(c);
                        }
                    };
                    if backward {
                        for i in (lo..=a).rev() {
                            push(i, path);
                            if path.len() == q.steps {
                                break;
                            }
                        }
                    } else {
                        for i in a..hi {
                            push(i, path);
                            if path.len() == q.steps
                                || (i > a && end_bit.is_some_and(|b| mask(i) & b != 0))
                            {
                                break;
                            }
                        }
                    }
                    let converted = conv_bit.is_some_and(|b| (a..n).any(|i| mask(i) & b != 0));
                    // the path is copied only the first time it is seen
                    let e = match acc.get_mut(path.as_slice()) {
                        Some(e) => e,
                        None => acc.entry(path.clone()).or_insert((0, 0)),
                    };
                    e.0 += 1;
                    e.1 += u64::from(converted);
                }
                lo = hi;
            }
        },
    );
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let mut all: FxHashMap<Vec<u32>, (u64, u64)> = FxHashMap::default();
    for (p, _) in parts {
        for (k, v) in p {
            let e = all.entry(k).or_insert((0, 0));
            e.0 += v.0;
            e.1 += v.1;
        }
    }
    let name = |c: u32| {
        group_names
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| "(none)".into())
    };
    let mut node_counts: FxHashMap<(usize, u32), (u64, u64)> = FxHashMap::default();
    let mut link_counts: FxHashMap<((usize, u32), u32), u64> = FxHashMap::default();
    let mut total = 0u64;
    for (path, (count, _)) in &all {
        total += count;
        for (k, c) in path.iter().enumerate() {
            let e = node_counts.entry((k, *c)).or_insert((0, 0));
            e.0 += count;
            if k + 1 == path.len() {
                e.1 += count;
            }
            if let Some(next) = path.get(k + 1) {
                *link_counts.entry(((k, *c), *next)).or_insert(0) += count;
            }
        }
    }
    let id = |k: usize, c: u32| format!("{k}:{}", name(c));
    let mut links: Vec<SankeyLink> = link_counts
        .iter()
        .filter(|(_, v)| **v >= q.min_weight)
        .map(|(((k, a), b), v)| SankeyLink {
            source: id(*k, *a),
            target: id(*k + 1, *b),
            value: *v,
        })
        .collect();
    links.sort_by(|a, b| {
        b.value
            .cmp(&a.value)
            .then(a.source.cmp(&b.source))
            .then(a.target.cmp(&b.target))
    });
    let mut nodes: Vec<SankeyNode> = node_counts
        .iter()
        .filter(|(_, v)| v.0 >= q.min_weight)
        .map(|((k, c), (count, ended))| SankeyNode {
            id: id(*k, *c),
            step: *k,
            name: name(*c),
            count: *count,
            ended: *ended,
        })
        .collect();
    nodes.sort_by(|a, b| {
        a.step
            .cmp(&b.step)
            .then(b.count.cmp(&a.count))
            .then(a.name.cmp(&b.name))
    });
    let mut paths: Vec<(&Vec<u32>, &(u64, u64))> = all.iter().collect();
    paths.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    let top_paths = paths
        .into_iter()
        .take(q.top)
        .map(|(p, (count, conv))| {
            let mut names: Vec<String> = p.iter().map(|c| name(*c)).collect();
            if backward {
                names.reverse();
            }
            PathRow {
                path: names,
                count: *count,
                conversion: conv_bit.and_then(|_| ratio(*conv, *count)),
            }
        })
        .collect();
    Ok(PathResult {
        paths_counted: total,
        nodes,
        links,
        top_paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, Row};

    fn src() -> MemorySource {
        let spec = [
            ("a", 1, "home"),
            ("a", 2, "home"),
            ("a", 3, "/products/1"),
            ("a", 4, "cart"),
            ("a", 5, "buy"),
            ("b", 1, "home"),
            ("b", 2, "/products/2"),
            ("b", 3, "home"),
            ("c", 1, "blog"),
            ("c", 2, "home"),
            ("c", 3, "/products/3"),
            ("c", 9_000_000, "cart"),
        ];
        MemorySource::new(
            &spec
                .iter()
                .map(|(p, t, e)| Row::new(p, *t, e))
                .collect::<Vec<_>>(),
        )
    }

    fn top(r: &PathResult) -> Vec<(String, u64)> {
        r.top_paths
            .iter()
            .map(|p| (p.path.join(" > "), p.count))
            .collect()
    }

    fn query() -> PathQuery {
        serde_json::from_str(
            r#"{"start": "home", "steps": 3,
            "clean": [{"regex": "^/products/.*", "replace": "/products/:id"}],
            "conversion": "buy"}"#,
        )
        .unwrap()
    }

    #[test]
    fn forward_paths_collapse_repeats_and_clean_names() {
        let r = run_paths(&src(), &query(), &Default::default()).unwrap();
        assert_eq!(r.paths_counted, 3);
        assert_eq!(
            top(&r),
            vec![
                ("home > /products/:id > cart".to_string(), 2),
                ("home > /products/:id > home".to_string(), 1)
            ]
        );
        assert_eq!(r.top_paths[0].conversion, Some(0.5));
        let link = r
            .links
            .iter()
            .find(|l| l.source == "1:/products/:id" && l.target == "2:cart")
            .unwrap();
        assert_eq!(link.value, 2);
    }

    #[test]
    fn backward_and_sessions() {
        let mut q = query();
        q.start = None;
        q.end = Some(EventSelector::event("cart"));
        let r = run_paths(&src(), &q, &Default::default()).unwrap();
        assert_eq!(r.top_paths[0].path, vec!["home", "/products/:id", "cart"]);
        assert_eq!(r.top_paths[0].count, 2);
        // a one-hour session gap cuts c's late cart off its session
        q.session_gap = Some(Span(3_600_000));
        let r = run_paths(&src(), &q, &Default::default()).unwrap();
        assert_eq!(
            top(&r),
            vec![
                ("cart".to_string(), 1),
                ("home > /products/:id > cart".to_string(), 1)
            ]
        );
    }
}
