//! Shapley-value attribution over the Markov chain of the paths. The players are the keys; a
//! coalition S is worth the chain's probability of conversion (and expected value) when every
//! key outside S is removed, exactly as the Markov removal effect removes one key. Removing keys
//! never raises the conversion probability, so every Shapley value is ≥ 0, and they add up to
//! the probability with all keys present: credit = total × value / that probability. Exact over
//! all 2^n coalitions up to [`MAX_EXACT`] players; beyond, estimated from random orders of the
//! players, with a standard error.

use super::markov::Chain;
use super::PathRow;
use crate::error::{EngineError, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rustc_hash::FxHashMap;

/// Largest number of players computed exactly (2^15 coalitions).
pub const MAX_EXACT: usize = 15;
/// Largest number of players at all (coalitions are 128-bit masks).
pub const MAX_PLAYERS: usize = 128;

#[derive(Debug, Clone)]
pub struct ShapleySolution {
    pub keys: Vec<u32>,
    /// Shapley values of the conversion probability and of the expected value per journey.
    pub phi_conversions: Vec<f64>,
    pub phi_value: Vec<f64>,
    /// The worth of the grand coalition: what the values add up to.
    pub conversion_probability: f64,
    pub value_per_journey: f64,
    /// Standard errors of the two values when sampled.
    pub std_error: Option<(Vec<f64>, Vec<f64>)>,
    /// Random orders drawn when sampled; `None` when exact.
    pub samples: Option<usize>,
}

/// Coalition worth: the chain solved with the keys outside the coalition removed.
struct Game {
    chain: Chain,
    /// Keys of each state's window, as a mask over the players.
    state_masks: Vec<u128>,
}

impl Game {
    fn worth(&self, coalition: u128) -> (f64, f64) {
        let removed: Vec<bool> = self
            .state_masks
            .iter()
            .enumerate()
            .map(|(s, m)| s > 0 && m & !coalition != 0)
            .collect();
        self.chain.solve(&removed)
    }
}

pub fn solve(
    paths: &[PathRow],
    order: usize,
    samples: usize,
    seed: u64,
    stop: &dyn Fn() -> bool,
) -> Result<ShapleySolution> {
    let chain = Chain::build(paths, order);
    let keys = chain.keys();
    let n = keys.len();
    if n > MAX_PLAYERS {
        return Err(EngineError::invalid(
            "models",
            format!("shapley supports at most {MAX_PLAYERS} keys; the paths have {n}"),
        ));
    }
    let index: FxHashMap<u32, usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let state_masks = chain
        .windows
        .iter()
        .map(|w| w.iter().fold(0u128, |m, k| m | 1 << index[k]))
        .collect();
    let game = Game { chain, state_masks };
    let all = if n == 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    };
    let (p, v) = game.worth(all);
    let (phi_c, phi_v, std_error, drawn) = if n <= MAX_EXACT {
        let (c, v) = exact(n, &game, stop)?;
        (c, v, None, None)
    } else {
        let m = samples.max(2);
        let (c, v, se) = sampled(n, &game, m, seed, stop)?;
        (c, v, Some(se), Some(m))
    };
    Ok(ShapleySolution {
        keys,
        phi_conversions: phi_c,
        phi_value: phi_v,
        conversion_probability: p,
        value_per_journey: v,
        std_error,
        samples: drawn,
    })
}

/// Exact Shapley values: every coalition's worth, then the weighted marginal contributions.
fn exact(n: usize, game: &Game, stop: &dyn Fn() -> bool) -> Result<(Vec<f64>, Vec<f64>)> {
    let size = 1usize << n;
    let mut worth: Vec<(f64, f64)> = Vec::with_capacity(size);
    for s in 0..size {
        if s % 256 == 0 && stop() {
            return Err(EngineError::Cancelled);
        }
        worth.push(game.worth(s as u128));
    }
    // weight of a coalition of s players not containing i: s!(n−s−1)!/n!
    let weight: Vec<f64> = (0..n)
        .map(|s| {
            let fact = |k: usize| (1..=k).map(|x| x as f64).product::<f64>();
            fact(s) * fact(n - s - 1) / fact(n)
        })
        .collect();
    let (mut pc, mut pv) = (vec![0.0; n], vec![0.0; n]);
    for s in 0..size {
        let k = s.count_ones() as usize;
        if k == n {
            continue;
        }
        for i in 0..n {
            if s & (1 << i) == 0 {
                let with = s | (1 << i);
                pc[i] += weight[k] * (worth[with].0 - worth[s].0);
                pv[i] += weight[k] * (worth[with].1 - worth[s].1);
            }
        }
    }
    Ok((pc, pv))
}

type Sampled = (Vec<f64>, Vec<f64>, (Vec<f64>, Vec<f64>));

/// Mean marginal contributions over random orders of the players, with standard errors.
fn sampled(
    n: usize,
    game: &Game,
    samples: usize,
    seed: u64,
    stop: &dyn Fn() -> bool,
) -> Result<Sampled> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut cache: FxHashMap<u128, (f64, f64)> = FxHashMap::default();
    let mut sum = vec![[0.0f64; 4]; n]; // Σc, Σc², Σv, Σv²
    for drawn in 0..samples {
        if drawn % 64 == 0 && stop() {
            return Err(EngineError::Cancelled);
        }
        order.shuffle(&mut rng);
        let mut coalition = 0u128;
        let mut before = (0.0, 0.0);
        for &i in &order {
            coalition |= 1 << i;
            let after = *cache
                .entry(coalition)
                .or_insert_with(|| game.worth(coalition));
            let (dc, dv) = (after.0 - before.0, after.1 - before.1);
            sum[i][0] += dc;
            sum[i][1] += dc * dc;
            sum[i][2] += dv;
            sum[i][3] += dv * dv;
            before = after;
        }
        if cache.len() > 1 << 20 {
            cache.clear();
        }
    }
    let m = samples as f64;
    let se = |s: f64, s2: f64| ((s2 / m - (s / m).powi(2)).max(0.0) / (m - 1.0)).sqrt();
    Ok((
        sum.iter().map(|s| s[0] / m).collect(),
        sum.iter().map(|s| s[2] / m).collect(),
        (
            sum.iter().map(|s| se(s[0], s[1])).collect(),
            sum.iter().map(|s| se(s[2], s[3])).collect(),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(keys: &[u32], conversions: f64, nulls: f64) -> PathRow {
        PathRow {
            keys: keys.to_vec(),
            conversions,
            value: conversions * 10.0,
            nulls,
        }
    }

    #[test]
    fn two_players_by_hand() {
        // a converts 1 of 2; a > b converts 2 of 2: start→a 1; a→b 1/2, a→conv 1/4, a→null 1/4;
        // b→conv 1. v(ab) = 3/4, v(a) = 1/4, v(b) = 0 (b is never entered first).
        let s = solve(
            &[row(&[0], 1.0, 1.0), row(&[0, 1], 2.0, 0.0)],
            1,
            0,
            0,
            &|| false,
        )
        .unwrap();
        assert!((s.conversion_probability - 0.75).abs() < 1e-15);
        // φa = ½(1/4) + ½(3/4 − 0) = 1/2, φb = ½(0) + ½(3/4 − 1/4) = 1/4
        assert!((s.phi_conversions[0] - 0.5).abs() < 1e-15);
        assert!((s.phi_conversions[1] - 0.25).abs() < 1e-15);
        assert!((s.phi_value[0] + s.phi_value[1] - s.value_per_journey).abs() < 1e-12);
    }

    #[test]
    fn sampling_agrees_with_exact() {
        let paths = vec![
            row(&[0], 1.0, 9.0),
            row(&[1], 2.0, 8.0),
            row(&[0, 1], 6.0, 4.0),
            row(&[2, 0], 1.0, 1.0),
            row(&[3, 2, 1], 3.0, 1.0),
        ];
        let exact = solve(&paths, 1, 0, 0, &|| false).unwrap();
        assert!(exact.samples.is_none());
        let chain = Chain::build(&paths, 1);
        let index: Vec<u32> = chain.keys();
        let state_masks = chain
            .windows
            .iter()
            .map(|w| {
                w.iter().fold(0u128, |m, k| {
                    m | 1 << index.iter().position(|x| x == k).unwrap()
                })
            })
            .collect();
        let game = Game { chain, state_masks };
        let (c, _, (se, _)) = sampled(4, &game, 5_000, 7, &|| false).unwrap();
        for i in 0..4 {
            assert!(
                (c[i] - exact.phi_conversions[i]).abs() <= 4.0 * se[i] + 1e-12,
                "player {i}: {} vs {} ± {}",
                c[i],
                exact.phi_conversions[i],
                se[i]
            );
            assert!(exact.phi_conversions[i] >= 0.0);
        }
        let sum: f64 = exact.phi_conversions.iter().sum();
        assert!(
            (sum - exact.conversion_probability).abs() < 1e-12,
            "efficiency"
        );
    }
}
