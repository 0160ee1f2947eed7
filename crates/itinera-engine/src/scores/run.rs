use super::answers::{AnswerScan, GroupState};
use super::*;
use crate::error::{EngineError, Result};
use crate::journey::{JourneySource, ScanOptions};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

pub(super) use crate::stats::z_for;

#[derive(Default, Clone)]
pub(super) struct Acc {
    /// Score (×1000, to key exactly) → answers.
    counts: BTreeMap<i64, u64>,
}

impl Acc {
    fn add(&mut self, s: f64) {
        *self.counts.entry((s * 1000.0).round() as i64).or_default() += 1;
    }

    fn merge(&mut self, o: &Acc) {
        for (k, n) in &o.counts {
            *self.counts.entry(*k).or_default() += n;
        }
    }

    fn row(&self, q: &ScoresQuery, key: Option<String>, z: f64) -> ScoreRow {
        let n: u64 = self.counts.values().sum();
        let nf = n as f64;
        let sum: f64 = self
            .counts
            .iter()
            .map(|(k, c)| *k as f64 / 1000.0 * *c as f64)
            .sum();
        let mean = if n > 0 { sum / nf } else { 0.0 };
        let good: u64 = self
            .counts
            .iter()
            .filter(|(k, _)| q.good(**k as f64 / 1000.0))
            .map(|(_, c)| c)
            .sum();
        let [min, max] = q.scale();
        let nps = (q.kind == ScoreKind::Nps && n > 0).then(|| {
            let detractors: u64 = self
                .counts
                .iter()
                .filter(|(k, _)| (**k as f64 / 1000.0) <= 6.0)
                .map(|(_, c)| c)
                .sum();
            let (pp, pd) = (good as f64 / nf, detractors as f64 / nf);
            let score = pp - pd;
            // the per-answer value (+1, 0, −1) has variance pp + pd − score²; its mean's standard
            // error uses the sample variance (n − 1), as statsmodels' `zconfint_mean` does; one
            // answer says nothing about the spread: the interval is the whole scale
            let se = if n > 1 {
                ((pp + pd - score * score) / (nf - 1.0)).sqrt()
            } else {
                f64::INFINITY
            };
            NpsFigures {
                nps: 100.0 * score,
                promoters: good,
                passives: n - good - detractors,
                detractors,
                ci_low: 100.0 * (score - z * se).max(-1.0),
                ci_high: 100.0 * (score + z * se).min(1.0),
            }
        });
        let good_share = crate::stats::wilson(good, n, z)
            .filter(|_| q.kind != ScoreKind::Nps)
            .map(|(ci_low, ci_high)| ShareFigures {
                share: good as f64 / nf,
                ci_low,
                ci_high,
            });
        let to_emotion = |v: f64| {
            let position = if max > min {
                (v - min) / (max - min)
            } else {
                0.5
            };
            let position = if q.kind == ScoreKind::Ces && q.low_is_good {
                1.0 - position
            } else {
                position
            };
            (4.0 * position - 2.0).clamp(-2.0, 2.0)
        };
        // the mean's interval (sample variance, as for NPS), carried onto the emotion scale
        let mean_se = if n > 1 {
            let ss: f64 = self
                .counts
                .iter()
                .map(|(k, c)| (*k as f64 / 1000.0 - mean).powi(2) * *c as f64)
                .sum();
            (ss / (nf - 1.0) / nf).sqrt()
        } else {
            f64::INFINITY
        };
        let band = (n > 0).then(|| {
            let (a, b) = (
                to_emotion(mean - z * mean_se),
                to_emotion(mean + z * mean_se),
            );
            [a.min(b), a.max(b)]
        });
        ScoreRow {
            key,
            n,
            mean,
            distribution: self
                .counts
                .iter()
                .map(|(k, c)| {
                    let v = *k as f64 / 1000.0;
                    (
                        if v.fract() == 0.0 {
                            format!("{v:.0}")
                        } else {
                            v.to_string()
                        },
                        *c,
                    )
                })
                .collect(),
            nps,
            good_share,
            emotion: if n > 0 { to_emotion(mean) } else { 0.0 },
            emotion_band: band,
        }
    }
}

/// Checks a scores query against a source's vocabulary (kind, scale, selectors, personas, model)
/// without scanning anything.
pub fn check_scores<S: JourneySource>(source: &S, q: &ScoresQuery) -> Result<()> {
    AnswerScan::compile(source, q).map(|_| ())
}

pub fn run_scores<S: JourneySource>(
    source: &S,
    q: &ScoresQuery,
    opts: &ScanOptions,
) -> Result<ScoresResult> {
    if !(0.5..1.0).contains(&q.confidence) {
        return Err(EngineError::invalid(
            "confidence",
            "must be in 0.5…1 (e.g. 0.95)",
        ));
    }
    let [min, max] = q.scale();
    let a = AnswerScan::compile(source, q)?;
    let mut scan = opts.clone();
    scan.from_ms = q.from_ms.or(opts.from_ms);
    scan.to_ms = q.to_ms.or(opts.to_ms);
    type Part = (FxHashMap<u64, Acc>, Acc, u64, GroupState);
    let parts = source.scan(
        &scan,
        Part::default,
        |(groups, overall, rejected, state): &mut Part, j| {
            state.begin();
            for i in 0..j.len() {
                match a.answer(j, i) {
                    None => {}
                    Some(None) => *rejected += 1,
                    Some(Some(score)) => {
                        overall.add(score);
                        if q.by.is_some() {
                            groups.entry(a.group(j, i, state)).or_default().add(score);
                        }
                    }
                }
            }
        },
    );
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let (mut groups, mut overall, mut rejected) =
        (FxHashMap::<u64, Acc>::default(), Acc::default(), 0);
    for (g, o, r, _) in parts {
        overall.merge(&o);
        rejected += r;
        for (k, a) in g {
            groups.entry(k).or_default().merge(&a);
        }
    }
    let z = z_for(q.confidence);
    let name = |k: u64| source.with_vocabulary(|v| a.name(v, k));
    let mut keys: Vec<u64> = groups.keys().copied().collect();
    keys.sort_unstable();
    let groups = keys
        .into_iter()
        .map(|k| groups[&k].row(q, Some(name(k)), z))
        .collect();
    Ok(ScoresResult {
        kind: q.kind,
        scale: [min, max],
        confidence: q.confidence,
        overall: overall.row(q, None, z),
        groups,
        rejected,
        definition: match q.kind {
            ScoreKind::Nps => "NPS = % promoters (9-10) - % detractors (0-6); passives (7-8) count in n; interval: normal approximation of the mean of +1/0/-1 per answer, sample variance",
            ScoreKind::Csat => "CSAT: top-2-box share (the two highest points of the scale) with a Wilson interval, and the mean",
            ScoreKind::Ces => "CES: share of 5-7 on 1-7 (easy; with low_is_good, of 1-3) with a Wilson interval, and the mean",
        }
        .to_string()
            + "; emotion = 4 x (mean - min)/(max - min) - 2, in -2..+2 (CES direction-adjusted), its band the mean's interval on that scale",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemorySource, Row};

    fn answer(p: &str, ts: i64, kind: &str, score: &str) -> Row {
        Row {
            props: vec![
                ("properties.survey_kind".into(), kind.into()),
                ("properties.score".into(), score.into()),
                ("properties.survey_id".into(), format!("{kind}-1")),
            ],
            ..Row::new(p, ts, "Survey Responded")
        }
    }

    #[test]
    fn nps_with_interval_and_groups() {
        let mut rows = Vec::new();
        // 6 promoters, 2 passives, 2 detractors: NPS 40
        for (i, s) in ["10", "9", "9", "10", "9", "10", "7", "8", "3", "6"]
            .iter()
            .enumerate()
        {
            let p = format!("p{i}");
            let mut tp = Row::new(&p, 0, "Product Viewed");
            tp.channel = if i < 5 {
                "email".into()
            } else {
                "social".into()
            };
            rows.push(tp);
            rows.push(answer(&p, 1, "nps", s));
        }
        rows.push(answer("x", 1, "csat", "5"));
        rows.push(answer("y", 1, "nps", "11"));
        let mut q = ScoresQuery::new(ScoreKind::Nps);
        q.by = Some(ScoreBy::Channel);
        let r = run_scores(&MemorySource::new(&rows), &q, &Default::default()).unwrap();
        let nps = r.overall.nps.clone().unwrap();
        assert_eq!(r.overall.n, 10);
        assert_eq!(r.rejected, 1, "11 is outside 0-10");
        assert!((nps.nps - 40.0).abs() < 1e-9);
        // statsmodels 0.14.5: DescrStatsW([1]*6 + [0]*2 + [-1]*2).zconfint_mean(0.05)
        // = (-0.12265706254401443, 0.9226570625440145)
        assert!((nps.ci_low - -12.265706254401443).abs() < 1e-9, "{nps:?}");
        assert!((nps.ci_high - 92.26570625440145).abs() < 1e-9, "{nps:?}");
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].key.as_deref(), Some("email"));
        assert!((r.groups[0].nps.as_ref().unwrap().nps - 100.0).abs() < 1e-9);
        assert_eq!(r.overall.distribution["9"], 3);
        assert!((r.overall.emotion - (4.0 * 8.1 / 10.0 - 2.0)).abs() < 1e-9);
    }

    #[test]
    fn by_step_is_the_step_done_last_before_answering() {
        let step = |p: &str, ts: i64, e: &str| Row::new(p, ts, e);
        let rows = vec![
            // a: answers after the cart (9), then again after checking out (3)
            step("a", 0, "Product Viewed"),
            step("a", 1, "Cart Viewed"),
            step("a", 2, "Page Viewed"), // no step: the cart stays the last step
            answer("a", 3, "nps", "9"),
            step("a", 4, "Order Completed"),
            answer("a", 5, "nps", "3"),
            // b: answers after viewing a product, then answers again without a new step
            step("b", 0, "Product Viewed"),
            answer("b", 1, "nps", "10"),
            answer("b", 2, "nps", "7"),
            // c: answers before any step
            answer("c", 0, "nps", "0"),
            step("c", 1, "Order Completed"),
        ];
        let mut q = ScoresQuery::new(ScoreKind::Nps);
        q.by = Some(ScoreBy::Step);
        q.steps = ["Product Viewed", "Cart Viewed", "Order Completed"]
            .iter()
            .map(|e| ScoreStep {
                selector: crate::selector::EventSelector::event(e),
                name: (*e == "Cart Viewed").then(|| "cart".to_string()),
            })
            .collect();
        let r = run_scores(&MemorySource::new(&rows), &q, &Default::default()).unwrap();
        let groups: Vec<(String, u64, f64)> = r
            .groups
            .iter()
            .map(|g| (g.key.clone().unwrap(), g.n, g.mean))
            .collect();
        assert_eq!(
            groups,
            vec![
                ("Product Viewed".to_string(), 2, 8.5),
                ("cart".to_string(), 1, 9.0),
                ("Order Completed".to_string(), 1, 3.0),
                ("(none)".to_string(), 1, 0.0),
            ]
        );
        q.steps.clear();
        let e = run_scores(&MemorySource::new(&rows), &q, &Default::default()).unwrap_err();
        assert!(e.to_string().contains("steps"), "{e}");
    }

    #[test]
    fn csat_top_two_box_and_ces_direction() {
        let rows: Vec<Row> = ["5", "4", "4", "2", "1"]
            .iter()
            .enumerate()
            .map(|(i, s)| answer(&format!("p{i}"), 0, "csat", s))
            .collect();
        let r = run_scores(
            &MemorySource::new(&rows),
            &ScoresQuery::new(ScoreKind::Csat),
            &Default::default(),
        )
        .unwrap();
        let g = r.overall.good_share.unwrap();
        assert!((g.share - 0.6).abs() < 1e-12);
        assert!(g.ci_low < 0.6 && g.ci_high > 0.6 && g.ci_low > 0.0);
        assert!((r.overall.mean - 3.2).abs() < 1e-12);
        let rows: Vec<Row> = ["1", "2", "7"]
            .iter()
            .enumerate()
            .map(|(i, s)| answer(&format!("p{i}"), 0, "ces", s))
            .collect();
        let mut q = ScoresQuery::new(ScoreKind::Ces);
        q.low_is_good = true;
        let r = run_scores(&MemorySource::new(&rows), &q, &Default::default()).unwrap();
        assert!((r.overall.good_share.unwrap().share - 2.0 / 3.0).abs() < 1e-12);
        assert!(
            r.overall.emotion > 0.0,
            "mostly easy on a low-is-good scale"
        );
    }

    #[test]
    fn normal_quantiles() {
        assert!((z_for(0.95) - 1.959964).abs() < 1e-5);
        assert!((z_for(0.99) - 2.575829).abs() < 1e-5);
        assert!((z_for(0.9) - 1.644854).abs() < 1e-5);
    }
}
