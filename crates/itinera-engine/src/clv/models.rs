//! The BG/NBD model of repeat purchases (Fader, Hardie & Lee 2005) and the Gamma-Gamma model of
//! spend per purchase (Fader & Hardie 2013), fitted by maximum likelihood with L-BFGS over the
//! logarithms of the parameters, using analytic gradients. Customers with the same summary are
//! weighted once, and the gamma-function terms are computed once per distinct frequency, so a
//! fit over a million customers costs a few passes over their distinct summaries.

use crate::error::{EngineError, Result};
use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::condition::ArmijoCondition;
use argmin::solver::linesearch::BacktrackingLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use statrs::function::gamma::{digamma, ln_gamma};
use std::sync::Mutex;

/// One customer's purchase summary, in the analysis time unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rfm {
    /// Repeat purchases (purchase periods after the first).
    pub frequency: f64,
    /// Time from the first to the last purchase.
    pub recency: f64,
    /// Time from the first purchase to the end of the calibration period.
    pub age: f64,
    /// Mean spend of the repeat purchases (0 without any).
    pub monetary: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub log_likelihood: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    /// γ (lifetimes calls it v).
    pub gamma: f64,
    pub log_likelihood: f64,
}

/// The last evaluation: parameters, cost, gradient (argmin asks for cost and gradient apart).
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// Minimizes a negative log-likelihood over log-parameters; `eval` returns (cost, gradient).
struct Problem<'s, F> {
    eval: F,
    last: Mutex<Option<Evaluation>>,
    /// Asked before every evaluation: a fit stops at the next step once its query is cancelled.
    stop: &'s (dyn Fn() -> bool + Sync),
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Problem<'_, F> {
    fn check(&self) -> std::result::Result<(), argmin::core::Error> {
        if (self.stop)() {
            return Err(argmin::core::Error::msg("cancelled"));
        }
        Ok(())
    }

    fn get(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let mut last = self.last.lock().expect("no panics while held");
        if let Some((lp, c, g)) = last.as_ref() {
            if lp.as_slice() == p {
                return (*c, g.clone());
            }
        }
        let (c, g) = (self.eval)(p);
        *last = Some((p.to_vec(), c, g.clone()));
        (c, g)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> CostFunction for Problem<'_, F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        self.check()?;
        Ok(self.get(p).0)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Gradient for Problem<'_, F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        self.check()?;
        Ok(self.get(p).1)
    }
}

fn minimize(
    what: &str,
    start: Vec<f64>,
    eval: impl Fn(&[f64]) -> (f64, Vec<f64>),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Vec<f64>> {
    let problem = Problem {
        eval: |p: &[f64]| {
            // parameters within e^±20: beyond, the gamma-function differences lose all precision
            if p.iter().any(|x| x.abs() > 20.0) {
                return (f64::INFINITY, vec![0.0; p.len()]);
            }
            let (c, g) = eval(p);
            // outside the model's domain: a cost the line search backs away from
            if c.is_finite() && g.iter().all(|x| x.is_finite()) {
                (c, g)
            } else {
                (f64::INFINITY, vec![0.0; p.len()])
            }
        },
        last: Mutex::new(None),
        stop,
    };
    let fail = |e: argmin::core::Error| {
        if stop() {
            EngineError::Cancelled
        } else {
            EngineError::invalid(what, format!("fit failed: {e}"))
        }
    };
    let armijo = ArmijoCondition::new(1e-4).map_err(fail)?;
    let solver = LBFGS::new(BacktrackingLineSearch::new(armijo), 10)
        .with_tolerance_grad(1e-9)
        .and_then(|s| s.with_tolerance_cost(1e-13))
        .map_err(fail)?;
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(start).max_iters(1000))
        .run()
        .map_err(fail)?;
    res.state()
        .get_best_param()
        .cloned()
        .ok_or_else(|| EngineError::invalid(what, "fit found no parameters"))
}

/// Distinct summaries with the number of customers holding each.
fn weighted<K: std::hash::Hash + Eq>(rows: impl Iterator<Item = (K, Rfm)>) -> Vec<(Rfm, f64)> {
    let mut m: FxHashMap<K, (Rfm, f64)> = FxHashMap::default();
    for (k, r) in rows {
        m.entry(k).or_insert((r, 0.0)).1 += 1.0;
    }
    let mut v: Vec<(Rfm, f64)> = m.into_values().collect();
    v.sort_by(|x, y| x.0.frequency.total_cmp(&y.0.frequency));
    v
}

fn bits(r: &Rfm) -> (u64, u64, u64) {
    (r.frequency.to_bits(), r.recency.to_bits(), r.age.to_bits())
}

impl BgNbd {
    /// Log-likelihood and its gradient with respect to (ln r, ln α, ln a, ln b).
    fn log_likelihood(theta: &[f64], data: &[(Rfm, f64)]) -> (f64, [f64; 4]) {
        let (r, alpha, a, b) = (
            theta[0].exp(),
            theta[1].exp(),
            theta[2].exp(),
            theta[3].exp(),
        );
        let (mut ll, mut g) = (0.0, [0.0; 4]);
        let base = ln_gamma(a + b) - ln_gamma(b) - ln_gamma(r) + r * alpha.ln();
        let (dg_ab, dg_b, dg_r) = (digamma(a + b), digamma(b), digamma(r));
        for group in data.chunk_by(|x, y| x.0.frequency == y.0.frequency) {
            let x = group[0].0.frequency;
            let n: f64 = group.iter().map(|(_, w)| w).sum();
            // terms shared by every customer with x repeat purchases
            ll += n * (base + ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x));
            g[0] += n * (digamma(r + x) - dg_r + alpha.ln());
            g[1] += n * r / alpha;
            g[2] += n * (dg_ab - digamma(a + b + x));
            g[3] += n * (dg_ab + digamma(b + x) - dg_b - digamma(a + b + x));
            let ln_c = if x > 0.0 {
                (a / (b + x - 1.0)).ln()
            } else {
                0.0
            };
            for (c, w) in group {
                let u = (alpha + c.age).ln();
                let v = (alpha + c.recency).ln();
                let (mut f, mut dr, mut dalpha) = (-(r + x) * u, -u, -(r + x) / (alpha + c.age));
                let mut weight_g = 0.0;
                if x > 0.0 {
                    // ln(1 + e^lg), and its share w = e^lg / (1 + e^lg), stably
                    let lg = ln_c - (r + x) * (v - u);
                    let (l1p, share) = if lg > 0.0 {
                        (lg + (-lg).exp().ln_1p(), 1.0 / (1.0 + (-lg).exp()))
                    } else {
                        (lg.exp().ln_1p(), lg.exp() / (1.0 + lg.exp()))
                    };
                    f += l1p;
                    dr -= share * (v - u);
                    dalpha -= share * (r + x) * (1.0 / (alpha + c.recency) - 1.0 / (alpha + c.age));
                    weight_g = share;
                }
                ll += w * f;
                g[0] += w * dr;
                g[1] += w * dalpha;
                g[2] += w * weight_g / a;
                g[3] -= w * weight_g / (b + x - 1.0).max(f64::MIN_POSITIVE);
            }
        }
        // chain rule to log-parameters
        (ll, [g[0] * r, g[1] * alpha, g[2] * a, g[3] * b])
    }

    /// Maximum-likelihood fit over `customers`.
    pub fn fit(customers: &[Rfm]) -> Result<BgNbd> {
        BgNbd::fit_or_stop(customers, &|| false)
    }

    /// [`BgNbd::fit`], stopping (`Cancelled`) at the next step once `stop` says so.
    pub fn fit_or_stop(customers: &[Rfm], stop: &(dyn Fn() -> bool + Sync)) -> Result<BgNbd> {
        if customers.is_empty() {
            return Err(EngineError::invalid(
                "customers",
                "no customer made a purchase in the calibration period",
            ));
        }
        let data = weighted(customers.iter().map(|c| (bits(c), *c)));
        let mean_age = customers.iter().map(|c| c.age).sum::<f64>() / customers.len() as f64;
        let start = vec![0.0, mean_age.max(1e-3).ln(), 0.0, 0.0];
        let n = customers.len() as f64;
        let theta = minimize(
            "bg_nbd",
            start,
            |t| {
                let (ll, g) = BgNbd::log_likelihood(t, &data);
                (-ll / n, g.iter().map(|x| -x / n).collect())
            },
            stop,
        )?;
        let (ll, _) = BgNbd::log_likelihood(&theta, &data);
        Ok(BgNbd {
            r: theta[0].exp(),
            alpha: theta[1].exp(),
            a: theta[2].exp(),
            b: theta[3].exp(),
            log_likelihood: ll,
        })
    }

    /// P(still alive | x, t_x, T).
    pub fn probability_alive(&self, c: &Rfm) -> f64 {
        if c.frequency <= 0.0 {
            return 1.0;
        }
        1.0 / (1.0 + self.odds_dead(c))
    }

    /// a/(b+x−1) · ((α+T)/(α+t_x))^(r+x): the odds that the customer has dropped out.
    fn odds_dead(&self, c: &Rfm) -> f64 {
        let x = c.frequency;
        if x <= 0.0 {
            return 0.0;
        }
        (self.a / (self.b + x - 1.0)).ln().exp()
            * ((self.r + x) * ((self.alpha + c.age).ln() - (self.alpha + c.recency).ln())).exp()
    }

    /// Expected purchases in the next `t` time units, given the customer's history.
    pub fn expected_purchases(&self, c: &Rfm, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        let (r, alpha, a, b, x) = (self.r, self.alpha, self.a, self.b, c.frequency);
        let z = t / (alpha + c.age + t);
        // (1−z)^(r+x) · 2F1(r+x, b+x; a+b+x−1; z), by Euler's transformation, as
        // (1−z)^(a−1) · 2F1(a+b−1−r, a−1; a+b+x−1; z): a series that converges fast for any x
        let tail = (1.0 - z).powf(a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z);
        let head = (a + b + x - 1.0) / (a - 1.0);
        let exact = head * (1.0 - tail) / (1.0 + self.odds_dead(c));
        if exact.is_finite() {
            return exact;
        }
        // fits on few repeat customers can drive a and b to ~1e7, where the series overflows:
        // the dropout probability's beta distribution is then a point mass at p = a/(a+b), and
        // an alive customer with rate λ makes (1 − e^(−pλt))/p purchases in t; averaged over
        // λ ~ Gamma(r+x, α+T), that is (1 − ((α+T)/(α+T+pt))^(r+x))/p
        let p = a / (a + b);
        let alive = (1.0 - ((alpha + c.age) / (alpha + c.age + p * t)).powf(r + x)) / p;
        alive / (1.0 + self.odds_dead(c))
    }
}

/// Gauss' hypergeometric series 2F1(a, b; c; z) for |z| < 1.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0, 1.0);
    for j in 0..1_000_000 {
        let j = j as f64;
        term *= (a + j) * (b + j) / ((c + j) * (j + 1.0)) * z;
        sum += term;
        if term.abs() <= 1e-17 * sum.abs() {
            break;
        }
    }
    sum
}

impl GammaGamma {
    fn log_likelihood(theta: &[f64], data: &[(Rfm, f64)]) -> (f64, [f64; 3]) {
        let (p, q, v) = (theta[0].exp(), theta[1].exp(), theta[2].exp());
        let (mut ll, mut g) = (0.0, [0.0; 3]);
        let (lg_q, dg_q) = (ln_gamma(q), digamma(q));
        for group in data.chunk_by(|x, y| x.0.frequency == y.0.frequency) {
            let x = group[0].0.frequency;
            let (lg_pxq, lg_px) = (ln_gamma(p * x + q), ln_gamma(p * x));
            let (dg_pxq, dg_px) = (digamma(p * x + q), digamma(p * x));
            for (c, w) in group {
                let m = c.monetary;
                let l = (x * m + v).ln();
                ll += w
                    * (lg_pxq - lg_px - lg_q
                        + q * v.ln()
                        + (p * x - 1.0) * m.ln()
                        + p * x * x.ln()
                        - (p * x + q) * l);
                g[0] += w * x * (dg_pxq - dg_px + m.ln() + x.ln() - l);
                g[1] += w * (dg_pxq - dg_q + v.ln() - l);
                g[2] += w * (q / v - (p * x + q) / (x * m + v));
            }
        }
        (ll, [g[0] * p, g[1] * q, g[2] * v])
    }

    /// Fit over the customers with repeat purchases of positive mean spend.
    pub fn fit(customers: &[Rfm]) -> Result<GammaGamma> {
        GammaGamma::fit_or_stop(customers, &|| false)
    }

    /// [`GammaGamma::fit`], stopping (`Cancelled`) at the next step once `stop` says so.
    pub fn fit_or_stop(customers: &[Rfm], stop: &(dyn Fn() -> bool + Sync)) -> Result<GammaGamma> {
        let data = weighted(
            customers
                .iter()
                .filter(|c| c.frequency > 0.0 && c.monetary > 0.0)
                .map(|c| ((c.frequency.to_bits(), c.monetary.to_bits()), *c)),
        );
        if data.len() < 2 {
            return Err(EngineError::invalid(
                "customers",
                "the spend model needs customers with repeat purchases of positive value",
            ));
        }
        let n: f64 = data.iter().map(|d| d.1).sum();
        let mean = data.iter().map(|(c, w)| c.monetary * w).sum::<f64>() / n;
        let start = vec![0.0, 0.0, mean.max(1e-3).ln()];
        let theta = minimize(
            "gamma_gamma",
            start,
            |t| {
                let (ll, g) = GammaGamma::log_likelihood(t, &data);
                (-ll / n, g.iter().map(|x| -x / n).collect())
            },
            stop,
        )?;
        let (ll, _) = GammaGamma::log_likelihood(&theta, &data);
        Ok(GammaGamma {
            p: theta[0].exp(),
            q: theta[1].exp(),
            gamma: theta[2].exp(),
            log_likelihood: ll,
        })
    }

    /// Expected spend per purchase given x repeat purchases of mean value m (the population mean
    /// p·γ/(q−1) without repeat purchases).
    pub fn expected_spend(&self, c: &Rfm) -> f64 {
        let (p, q, v, x) = (self.p, self.q, self.gamma, c.frequency);
        if x <= 0.0 {
            return p * v / (q - 1.0);
        }
        let w = p * x / (p * x + q - 1.0);
        (1.0 - w) * p * v / (q - 1.0) + w * c.monetary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    /// A fit stops at its next step once asked, ending as cancelled, not as a failed fit.
    #[test]
    fn fits_stop_when_asked() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let customers: Vec<Rfm> = (0..200)
            .map(|i| Rfm {
                frequency: (i % 7) as f64,
                recency: (i % 7) as f64 * 5.0,
                age: 40.0,
                monetary: 10.0 + (i % 5) as f64,
            })
            .collect();
        assert!(BgNbd::fit_or_stop(&customers, &|| false).is_ok());
        let asked = AtomicUsize::new(0);
        let stop = || asked.fetch_add(1, Ordering::Relaxed) >= 3;
        assert!(matches!(
            BgNbd::fit_or_stop(&customers, &stop),
            Err(EngineError::Cancelled)
        ));
        // three steps, the fourth stopped, and the check that tells a stop from a failed fit
        assert_eq!(asked.load(Ordering::Relaxed), 5, "stopped at the next step");
        asked.store(0, Ordering::Relaxed);
        assert!(matches!(
            GammaGamma::fit_or_stop(&customers, &stop),
            Err(EngineError::Cancelled)
        ));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let data: Vec<(Rfm, f64)> = vec![
            (
                Rfm {
                    frequency: 0.0,
                    recency: 0.0,
                    age: 30.0,
                    monetary: 0.0,
                },
                5.0,
            ),
            (
                Rfm {
                    frequency: 2.0,
                    recency: 20.0,
                    age: 38.0,
                    monetary: 12.0,
                },
                2.0,
            ),
            (
                Rfm {
                    frequency: 5.0,
                    recency: 35.0,
                    age: 36.0,
                    monetary: 30.0,
                },
                1.0,
            ),
        ];
        let theta = [-1.2, 1.4, -0.2, 0.9];
        let (_, g) = BgNbd::log_likelihood(&theta, &data);
        for i in 0..4 {
            let h = 1e-6;
            let (mut up, mut dn) = (theta, theta);
            up[i] += h;
            dn[i] -= h;
            let fd = (BgNbd::log_likelihood(&up, &data).0 - BgNbd::log_likelihood(&dn, &data).0)
                / (2.0 * h);
            assert!(close(g[i], fd, 1e-6), "bg/nbd {i}: {} vs {fd}", g[i]);
        }
        let gg: Vec<_> = data[1..].to_vec();
        let theta = [1.5, 1.2, 2.7];
        let (_, g) = GammaGamma::log_likelihood(&theta, &gg);
        for i in 0..3 {
            let h = 1e-6;
            let (mut up, mut dn) = (theta, theta);
            up[i] += h;
            dn[i] -= h;
            let fd = (GammaGamma::log_likelihood(&up, &gg).0
                - GammaGamma::log_likelihood(&dn, &gg).0)
                / (2.0 * h);
            assert!(close(g[i], fd, 1e-6), "gamma-gamma {i}: {} vs {fd}", g[i]);
        }
    }

    #[test]
    fn hypergeometric_series_known_values() {
        // 2F1(1,1;2;z) = −ln(1−z)/z
        let z = 0.6;
        assert!(close(
            hyp2f1(1.0, 1.0, 2.0, z),
            -(1.0f64 - z).ln() / z,
            1e-14
        ));
        // 2F1(a,b;b;z) = (1−z)^−a
        assert!(close(hyp2f1(0.7, 3.0, 3.0, 0.9), 0.1f64.powf(-0.7), 1e-12));
    }

    /// When a and b grow (the fit degenerates on few repeat customers), the exact expectation
    /// tends to the point-mass limit used once the series overflows; it never turns NaN.
    #[test]
    fn degenerate_fits_give_the_limit_not_nan() {
        let c = Rfm {
            frequency: 2.0,
            recency: 10.0,
            age: 20.0,
            monetary: 30.0,
        };
        let model = |a: f64| BgNbd {
            r: 0.2,
            alpha: 2.0,
            a,
            b: 1.2 * a,
            log_likelihood: 0.0,
        };
        let limit = |m: &BgNbd, t: f64| {
            let p = m.a / (m.a + m.b);
            let alive =
                (1.0 - ((m.alpha + c.age) / (m.alpha + c.age + p * t)).powf(m.r + c.frequency)) / p;
            alive / (1.0 + m.odds_dead(&c))
        };
        let gap = |a: f64| {
            let m = model(a);
            let e = m.expected_purchases(&c, 4.0);
            assert!(e.is_finite() && e > 0.0, "a = {a}: {e}");
            (e - limit(&m, 4.0)).abs() / e
        };
        let (g100, g1000) = (gap(100.0), gap(1000.0));
        assert!(g1000 < g100 && g1000 < 1e-3, "{g100} {g1000}");
        // far beyond what the series survives: the limit, finite
        let m = model(1e7);
        let e = m.expected_purchases(&c, 52.0);
        assert!(e.is_finite() && (e - limit(&m, 52.0)).abs() < 1e-12, "{e}");
    }

    #[test]
    fn expected_purchases_grow_with_time_and_start_at_zero() {
        let m = BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
            log_likelihood: 0.0,
        };
        let c = Rfm {
            frequency: 2.0,
            recency: 30.43,
            age: 38.86,
            monetary: 22.35,
        };
        assert_eq!(m.expected_purchases(&c, 0.0), 0.0);
        let (e10, e52) = (
            m.expected_purchases(&c, 10.0),
            m.expected_purchases(&c, 52.0),
        );
        assert!(0.0 < e10 && e10 < e52);
        // a customer who has not bought for long is less likely alive
        let gone = Rfm { recency: 2.0, ..c };
        assert!(m.probability_alive(&gone) < m.probability_alive(&c));
    }
}
