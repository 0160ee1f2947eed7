//! Small statistics shared by the analyses.

/// The `q`-quantile (0…1) of `values` by the nearest-rank method; reorders `values`.
pub fn quantile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    Some(*values.select_nth_unstable(rank).1)
}

/// `num / den`, or `None` when `den` is zero.
pub fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The two-sided normal quantile of a confidence level: P(|Z| < z) = confidence.
pub fn z_for(confidence: f64) -> f64 {
    std::f64::consts::SQRT_2 * statrs::function::erf::erf_inv(confidence)
}

/// The Wilson score interval of `k` successes in `n` trials at normal quantile `z`, or None
/// when `n` is 0.
pub fn wilson(k: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (p, nf, z2) = (k as f64 / n as f64, n as f64, z * z);
    let centre = (p + z2 / (2.0 * nf)) / (1.0 + z2 / nf);
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / (1.0 + z2 / nf);
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// Newcombe's hybrid score interval (method 10) for the difference of two proportions
/// `k1/n1 − k2/n2`, built from their Wilson intervals; None when either group is empty.
pub fn newcombe_difference(k1: u64, n1: u64, k2: u64, n2: u64, z: f64) -> Option<(f64, f64)> {
    let (l1, u1) = wilson(k1, n1, z)?;
    let (l2, u2) = wilson(k2, n2, z)?;
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let d = p1 - p2;
    let low = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let high = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Newcombe (1998), Statistics in Medicine 17, example (a): 56/70 − 48/80 = 0.2, method 10
    /// at 95 %: 0.0524 to 0.3339. Wilson for 0/10: 0 to 0.2775.
    #[test]
    fn newcombe_matches_the_paper() {
        let z = z_for(0.95);
        let (lo, hi) = newcombe_difference(56, 70, 48, 80, z).unwrap();
        assert!(
            (lo - 0.0524).abs() < 5e-4 && (hi - 0.3339).abs() < 5e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 10, z).unwrap();
        assert!(lo.abs() < 1e-12 && (hi - 0.2775).abs() < 5e-4, "{lo} {hi}");
    }

    #[test]
    fn nearest_rank() {
        let mut v = vec![5, 1, 3, 2, 4];
        assert_eq!(quantile(&mut v, 0.5), Some(3));
        assert_eq!(quantile(&mut v, 0.9), Some(5));
        assert_eq!(quantile(&mut v, 0.0), Some(1));
        assert_eq!(quantile(&mut [], 0.5), None);
    }
}
