//! Markov-chain attribution: the removal effect of each key in an order-k chain over the paths,
//! from absorption probabilities solved exactly (no simulation).

use super::PathRow;
use rustc_hash::FxHashMap;

/// Removal effects and what they were computed from.
#[derive(Debug, Clone)]
pub struct MarkovSolution {
    /// Keys, in the order of the vectors below.
    pub keys: Vec<u32>,
    /// `1 − P(conversion | key removed) / P(conversion)`.
    pub removal_conversions: Vec<f64>,
    /// The same for the expected conversion value.
    pub removal_value: Vec<f64>,
    /// P(conversion) from the start state.
    pub conversion_probability: f64,
    /// Expected conversion value per journey.
    pub value_per_journey: f64,
    /// Transient states of the chain (windows of `order` keys).
    pub states: usize,
}

/// The chain: transient states, transitions and the exits to conversion and null.
pub(super) struct Chain {
    /// Outgoing transitions per state, as (target, probability); state 0 is the start.
    next: Vec<Vec<(usize, f64)>>,
    /// P(state → conversion).
    to_conversion: Vec<f64>,
    /// P(state → conversion) × mean value of those conversions.
    to_value: Vec<f64>,
    /// The keys in each state's window (the start's is empty).
    pub(super) windows: Vec<Vec<u32>>,
}

impl Chain {
    /// The order-`order` chain of `paths` (states: windows of `order` keys, identical consecutive
    /// states collapsed); transitions weighted by journeys.
    pub(super) fn build(paths: &[PathRow], order: usize) -> Chain {
        build(paths, order)
    }

    /// Every key in some state, ascending.
    pub(super) fn keys(&self) -> Vec<u32> {
        let mut keys: Vec<u32> = self.windows.iter().flatten().copied().collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

fn build(paths: &[PathRow], order: usize) -> Chain {
    let mut ids: FxHashMap<Vec<u32>, usize> = FxHashMap::default();
    let mut windows = vec![Vec::new()];
    // weights: transitions, exits to conversion (count, value), to null
    let mut edges: FxHashMap<(usize, usize), f64> = FxHashMap::default();
    let mut conv = vec![0.0];
    let mut value = vec![0.0];
    let mut out = vec![0.0];
    let mut id = |w: &[u32], windows: &mut Vec<Vec<u32>>| -> usize {
        if let Some(&i) = ids.get(w) {
            return i;
        }
        let i = windows.len();
        ids.insert(w.to_vec(), i);
        windows.push(w.to_vec());
        i
    };
    for row in paths {
        let weight = row.conversions + row.nulls;
        if row.keys.is_empty() || weight <= 0.0 {
            continue;
        }
        // states as ChannelAttribution builds them: windows of `order` consecutive keys of the
        // path as it is, identical consecutive states collapsed (at order 1: repeats collapsed)
        let k = order.min(row.keys.len());
        let mut states: Vec<&[u32]> = row.keys.windows(k).collect();
        states.dedup();
        let mut prev = 0;
        for w in states {
            let s = id(w, &mut windows);
            if s >= conv.len() {
                conv.resize(s + 1, 0.0);
                value.resize(s + 1, 0.0);
                out.resize(s + 1, 0.0);
            }
            *edges.entry((prev, s)).or_default() += weight;
            out[prev] += weight;
            prev = s;
        }
        conv[prev] += row.conversions;
        value[prev] += row.value;
        out[prev] += weight;
    }
    let n = windows.len();
    let mut next = vec![Vec::new(); n];
    let mut edges: Vec<_> = edges.into_iter().collect();
    edges.sort_by_key(|e| e.0);
    for ((from, to), w) in edges {
        next[from].push((to, w / out[from]));
    }
    let p = |v: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|s| if out[s] > 0.0 { v[s] / out[s] } else { 0.0 })
            .collect()
    };
    Chain {
        to_conversion: p(&conv),
        to_value: p(&value),
        next,
        windows,
    }
}

/// Systems up to this many states are solved by Gaussian elimination, larger ones by
/// Gauss–Seidel iteration to a residual below [`TOLERANCE`].
const DENSE_LIMIT: usize = 400;
const TOLERANCE: f64 = 1e-13;

impl Chain {
    /// Absorption in conversion (and expected value) from the start, with the `removed` states
    /// sent to null.
    pub(super) fn solve(&self, removed: &[bool]) -> (f64, f64) {
        let n = self.next.len();
        if n <= DENSE_LIMIT {
            self.solve_dense(removed)
        } else {
            self.solve_iterative(removed, n)
        }
    }

    fn solve_dense(&self, removed: &[bool]) -> (f64, f64) {
        let n = self.next.len();
        // (I − P) x = b, two right-hand sides; removed rows are x = 0
        let w = n + 2;
        let mut a = vec![0.0; n * w];
        for s in 0..n {
            let row = &mut a[s * w..(s + 1) * w];
            row[s] = 1.0;
            if removed[s] {
                continue;
            }
            for &(t, p) in &self.next[s] {
                row[t] -= p;
            }
            row[n] = self.to_conversion[s];
            row[n + 1] = self.to_value[s];
        }
        for c in 0..n {
            let pivot = (c..n)
                .max_by(|&i, &j| a[i * w + c].abs().total_cmp(&a[j * w + c].abs()))
                .unwrap();
            if a[pivot * w + c].abs() < 1e-300 {
                continue;
            }
            if pivot != c {
                for k in 0..w {
                    a.swap(c * w + k, pivot * w + k);
                }
            }
            let d = a[c * w + c];
            for k in c..w {
                a[c * w + k] /= d;
            }
            for r in 0..n {
                let f = a[r * w + c];
                if r != c && f != 0.0 {
                    for k in c..w {
                        a[r * w + k] -= f * a[c * w + k];
                    }
                }
            }
        }
        (a[n], a[n + 1])
    }

    fn solve_iterative(&self, removed: &[bool], n: usize) -> (f64, f64) {
        let mut x = vec![0.0; n];
        let mut y = vec![0.0; n];
        for _ in 0..1_000_000 {
            let mut change: f64 = 0.0;
            // states are numbered in path order, so a backward sweep propagates fastest
            for s in (0..n).rev() {
                if removed[s] {
                    continue;
                }
                let (mut xs, mut ys) = (self.to_conversion[s], self.to_value[s]);
                for &(t, p) in &self.next[s] {
                    xs += p * x[t];
                    ys += p * y[t];
                }
                change = change
                    .max((xs - x[s]).abs())
                    .max((ys - y[s]).abs() / (1.0 + ys.abs()));
                x[s] = xs;
                y[s] = ys;
            }
            if change < TOLERANCE {
                break;
            }
        }
        (x[0], y[0])
    }
}

/// Solves the order-`order` chain of `paths` and the removal effect of every key in them;
/// `stop` is asked between keys (cancellation).
pub fn solve(
    paths: &[PathRow],
    order: usize,
    stop: &dyn Fn() -> bool,
) -> crate::error::Result<MarkovSolution> {
    let chain = build(paths, order);
    let keys = chain.keys();
    let n = chain.next.len();
    let (p, v) = chain.solve(&vec![false; n]);
    let mut removal_conversions = Vec::with_capacity(keys.len());
    let mut removal_value = Vec::with_capacity(keys.len());
    for &k in &keys {
        if stop() {
            return Err(crate::error::EngineError::Cancelled);
        }
        let removed: Vec<bool> = chain.windows.iter().map(|w| w.contains(&k)).collect();
        let (pk, vk) = chain.solve(&removed);
        removal_conversions.push(if p > 0.0 { 1.0 - pk / p } else { 0.0 });
        removal_value.push(if v > 0.0 { 1.0 - vk / v } else { 0.0 });
    }
    Ok(MarkovSolution {
        keys,
        removal_conversions,
        removal_value,
        conversion_probability: p,
        value_per_journey: v,
        states: n - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(keys: &[u32], conversions: f64, value: f64, nulls: f64) -> PathRow {
        PathRow {
            keys: keys.to_vec(),
            conversions,
            value,
            nulls,
        }
    }

    #[test]
    fn two_channel_chain_by_hand() {
        // a > b converts once, a fails once: start→a (1), a→b 1/2, a→null 1/2, b→conv 1
        let paths = [row(&[0, 1], 1.0, 10.0, 0.0), row(&[0], 0.0, 0.0, 1.0)];
        let s = solve(&paths, 1, &|| false).unwrap();
        assert!((s.conversion_probability - 0.5).abs() < 1e-15);
        assert!((s.value_per_journey - 5.0).abs() < 1e-12);
        assert_eq!(s.removal_conversions, vec![1.0, 1.0]);
    }

    #[test]
    fn cycles_and_repeats() {
        // a > a > b collapses to a > b; b > a > b has a cycle
        let paths = [
            row(&[0, 0, 1], 2.0, 20.0, 1.0),
            row(&[1, 0, 1], 1.0, 5.0, 2.0),
            row(&[1], 0.0, 0.0, 3.0),
        ];
        let s = solve(&paths, 1, &|| false).unwrap();
        // start: a 3/9, b 6/9; a: b 1 (all 6 exits of a go to b); b: a 3/12, conv 3/12, null 6/12
        // x_b = 1/4 + 1/4 x_a, x_a = x_b → x_b = 1/3; start = 1/3
        assert!((s.conversion_probability - 1.0 / 3.0).abs() < 1e-14);
        let dense = s.conversion_probability;
        let chain = build(&paths, 1);
        let it = chain.solve_iterative(&vec![false; chain.next.len()], chain.next.len());
        assert!((it.0 - dense).abs() < 1e-12);
        // removing a leaves b alone: start→b with 6/9, x_b = 1/4 → 1/6; RE = 1/2
        assert!((s.removal_conversions[0] - 0.5).abs() < 1e-14);
        assert!((s.removal_conversions[1] - 1.0).abs() < 1e-14);
    }

    #[test]
    fn higher_order_windows() {
        let paths = [
            row(&[0, 1, 2], 1.0, 1.0, 0.0),
            row(&[2, 1, 0], 0.0, 0.0, 1.0),
        ];
        let s = solve(&paths, 2, &|| false).unwrap();
        assert_eq!(s.states, 4);
        assert!((s.conversion_probability - 0.5).abs() < 1e-15);
    }
}
