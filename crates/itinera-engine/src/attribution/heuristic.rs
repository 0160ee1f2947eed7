//! The rule-based models: how one conversion's credit is split over the touches before it.

use serde::{Deserialize, Serialize};

/// An attribution model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributionModel {
    FirstTouch,
    LastTouch,
    /// The last touch whose key is not the direct one; the last touch when all are direct.
    LastNonDirect,
    /// Equal shares per touch (a key touched twice gets two shares).
    Linear,
    /// Weight `2^(−Δt / half-life)`, Δt the time from the touch to the conversion.
    TimeDecay,
    /// First and last touch get fixed shares, the middle touches split the rest evenly.
    PositionBased,
    /// Removal effects of an order-k Markov chain, solved exactly.
    Markov,
    /// The Shapley value of the literature (Dalessandro et al. 2012, Zhao et al. 2018, `mta`'s
    /// `shapley`): a coalition S is worth the conversions of the journeys whose keys all lie in
    /// S; each conversion is then split equally over its journey's distinct keys, exactly, at
    /// any number of keys.
    Shapley,
    /// Shapley values of the Markov chain's conversion probability with the keys outside a
    /// coalition removed.
    ShapleyMarkov,
}

impl AttributionModel {
    pub const ALL: [AttributionModel; 9] = [
        AttributionModel::FirstTouch,
        AttributionModel::LastTouch,
        AttributionModel::LastNonDirect,
        AttributionModel::Linear,
        AttributionModel::TimeDecay,
        AttributionModel::PositionBased,
        AttributionModel::Markov,
        AttributionModel::Shapley,
        AttributionModel::ShapleyMarkov,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttributionModel::FirstTouch => "first_touch",
            AttributionModel::LastTouch => "last_touch",
            AttributionModel::LastNonDirect => "last_non_direct",
            AttributionModel::Linear => "linear",
            AttributionModel::TimeDecay => "time_decay",
            AttributionModel::PositionBased => "position_based",
            AttributionModel::Markov => "markov",
            AttributionModel::Shapley => "shapley",
            AttributionModel::ShapleyMarkov => "shapley_markov",
        }
    }

    pub fn parse(s: &str) -> Option<AttributionModel> {
        AttributionModel::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The definition printed next to the model's numbers.
    pub fn definition(self) -> &'static str {
        match self {
            AttributionModel::FirstTouch => "all credit to the first touch of the path",
            AttributionModel::LastTouch => "all credit to the last touch before the conversion",
            AttributionModel::LastNonDirect => {
                "all credit to the last touch that is not direct (the last touch if all are direct)"
            }
            AttributionModel::Linear => "credit split equally over the touches of the path",
            AttributionModel::TimeDecay => {
                "touch weight 2^(-dt/half_life), dt = time from the touch to the conversion; weights normalized per conversion"
            }
            AttributionModel::PositionBased => {
                "first and last touch get fixed shares (default 40% each), middle touches split the rest; one touch gets all, two split evenly"
            }
            AttributionModel::Markov => {
                "order-k Markov chain over the paths as ChannelAttribution builds it (states: windows of k consecutive keys, identical consecutive states collapsed, so repeats collapse at order 1; start, conversion and null states); removal effect = 1 - P(conversion without the key)/P(conversion), solved exactly; credit = total x removal effect / sum of removal effects"
            }
            AttributionModel::Shapley => {
                "Shapley value of the game v(S) = conversions (value) of the journeys whose distinct keys all lie in S (Dalessandro et al. 2012; mta's shapley): each conversion is split equally over the distinct keys of its path; exact at any number of keys"
            }
            AttributionModel::ShapleyMarkov => {
                "Shapley value of v(S) = the order-k Markov chain's conversion probability (expected value) with the keys outside S removed; exact up to 15 keys, sampled beyond (with a standard error); credit = total x value / the probability with every key"
            }
        }
    }

    /// Whether the model splits each conversion by rule (and runs per conversion in the scan).
    pub fn is_heuristic(self) -> bool {
        !matches!(
            self,
            AttributionModel::Markov | AttributionModel::ShapleyMarkov
        )
    }
}

/// Parameters of the rule-based models.
#[derive(Debug, Clone, Copy)]
pub struct HeuristicParams {
    pub half_life_ms: f64,
    pub first_share: f64,
    pub last_share: f64,
    /// The key code that counts as direct, if the vocabulary has one.
    pub direct: Option<u32>,
}

/// One touch of a path: the key (channel, touchpoint or event code) and, when known, its time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Touch {
    pub key: u32,
    pub ts: Option<i64>,
}

/// Adds `weight` split by `model` over `path` (non-empty) to `credit[key]`; `conversion_ts` is
/// needed by time decay only.
pub fn split(
    model: AttributionModel,
    params: &HeuristicParams,
    path: &[Touch],
    conversion_ts: Option<i64>,
    weight: f64,
    mut credit: impl FnMut(u32, f64),
) {
    let n = path.len();
    debug_assert!(n > 0);
    match model {
        AttributionModel::FirstTouch => credit(path[0].key, weight),
        AttributionModel::LastTouch => credit(path[n - 1].key, weight),
        AttributionModel::LastNonDirect => {
            let t = path
                .iter()
                .rev()
                .find(|t| Some(t.key) != params.direct)
                .unwrap_or(&path[n - 1]);
            credit(t.key, weight)
        }
        AttributionModel::Linear => {
            let share = weight / n as f64;
            for t in path {
                credit(t.key, share);
            }
        }
        AttributionModel::TimeDecay => {
            let end = conversion_ts.unwrap_or(0);
            let w = |t: &Touch| {
                let dt = (end - t.ts.unwrap_or(end)).max(0) as f64;
                (-dt / params.half_life_ms).exp2()
            };
            let total: f64 = path.iter().map(w).sum();
            for t in path {
                credit(t.key, weight * w(t) / total);
            }
        }
        AttributionModel::PositionBased => match n {
            1 => credit(path[0].key, weight),
            2 => {
                credit(path[0].key, weight / 2.0);
                credit(path[1].key, weight / 2.0);
            }
            _ => {
                let middle = (1.0 - params.first_share - params.last_share) / (n - 2) as f64;
                credit(path[0].key, weight * params.first_share);
                for t in &path[1..n - 1] {
                    credit(t.key, weight * middle);
                }
                credit(path[n - 1].key, weight * params.last_share);
            }
        },
        AttributionModel::Shapley => {
            // the journey is a unanimity game on its distinct keys: each holds an equal share
            let mut keys: Vec<u32> = path.iter().map(|t| t.key).collect();
            keys.sort_unstable();
            keys.dedup();
            let share = weight / keys.len() as f64;
            for k in keys {
                credit(k, share);
            }
        }
        AttributionModel::Markov | AttributionModel::ShapleyMarkov => {
            unreachable!("not a per-conversion model")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(model: AttributionModel, keys: &[u32], times: &[i64], at: i64) -> Vec<f64> {
        let params = HeuristicParams {
            half_life_ms: 7.0 * 86_400_000.0,
            first_share: 0.4,
            last_share: 0.4,
            direct: Some(9),
        };
        let path: Vec<Touch> = keys
            .iter()
            .zip(times)
            .map(|(&key, &ts)| Touch { key, ts: Some(ts) })
            .collect();
        let mut out = vec![0.0; 10];
        split(model, &params, &path, Some(at), 1.0, |k, c| {
            out[k as usize] += c
        });
        out
    }

    #[test]
    fn rules() {
        let day = 86_400_000;
        let keys = [1, 2, 2, 3, 9];
        let times = [0, day, 2 * day, 7 * day, 14 * day];
        let at = 14 * day;
        assert_eq!(run(AttributionModel::FirstTouch, &keys, &times, at)[1], 1.0);
        assert_eq!(run(AttributionModel::LastTouch, &keys, &times, at)[9], 1.0);
        assert_eq!(
            run(AttributionModel::LastNonDirect, &keys, &times, at)[3],
            1.0
        );
        let lin = run(AttributionModel::Linear, &keys, &times, at);
        assert!((lin[2] - 0.4).abs() < 1e-12);
        let pos = run(AttributionModel::PositionBased, &keys, &times, at);
        assert!((pos[1] - 0.4).abs() < 1e-12 && (pos[9] - 0.4).abs() < 1e-12);
        assert!((pos[2] - 0.2 / 3.0 * 2.0).abs() < 1e-12);
        // weights 1/4, 2^(-13/7), 2^(-12/7), 1/2... relative: touch at 14d has weight 1, 7d has 1/2
        let td = run(AttributionModel::TimeDecay, &keys, &times, at);
        assert!((td[9] / td[3] - 2.0).abs() < 1e-12);
        assert!((td.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(
            run(AttributionModel::PositionBased, &[4, 5], &[0, 1], 1)[4],
            0.5
        );
        assert_eq!(
            run(AttributionModel::LastNonDirect, &[9, 9], &[0, 1], 1)[9],
            1.0
        );
    }

    /// The subset game's Shapley value, computed as its definition says (the average marginal
    /// contribution over every order of the players), equals the equal split over distinct keys.
    #[test]
    fn shapley_is_the_average_marginal_contribution_over_every_order() {
        // journeys: (distinct keys as a mask, conversions)
        let journeys: [(u32, f64); 5] = [
            (0b0011, 3.0),
            (0b0110, 2.0),
            (0b0001, 1.0),
            (0b1111, 4.0),
            (0b1010, 0.5),
        ];
        let v = |s: u32| -> f64 {
            journeys
                .iter()
                .filter(|(m, _)| m & !s == 0)
                .map(|(_, c)| c)
                .sum()
        };
        let players = 4usize;
        let mut brute = [0.0f64; 4];
        let mut orders = 0.0;
        // every permutation of 4 players (Heap's algorithm would do; 24 are few)
        let mut perm = [0usize, 1, 2, 3];
        fn permutations(k: usize, a: &mut [usize; 4], out: &mut Vec<[usize; 4]>) {
            if k == 1 {
                out.push(*a);
                return;
            }
            for i in 0..k {
                permutations(k - 1, a, out);
                if k.is_multiple_of(2) {
                    a.swap(i, k - 1)
                } else {
                    a.swap(0, k - 1)
                }
            }
        }
        let mut all = Vec::new();
        permutations(players, &mut perm, &mut all);
        for order in &all {
            let mut s = 0u32;
            for &p in order {
                brute[p] += v(s | 1 << p) - v(s);
                s |= 1 << p;
            }
            orders += 1.0;
        }
        assert_eq!(orders, 24.0);
        let params = HeuristicParams {
            half_life_ms: 1.0,
            first_share: 0.4,
            last_share: 0.4,
            direct: None,
        };
        let mut split_credit = [0.0f64; 4];
        for (mask, conversions) in journeys {
            // a path with repeats and the keys in any order: only the set matters
            let path: Vec<Touch> = (0..players as u32)
                .rev()
                .filter(|k| mask & (1 << k) != 0)
                .flat_map(|k| [Touch { key: k, ts: None }, Touch { key: k, ts: None }])
                .collect();
            split(
                AttributionModel::Shapley,
                &params,
                &path,
                None,
                conversions,
                |k, c| split_credit[k as usize] += c,
            );
        }
        for p in 0..players {
            assert!(
                (brute[p] / orders - split_credit[p]).abs() < 1e-12,
                "player {p}: {brute:?} vs {split_credit:?}"
            );
        }
    }
}
