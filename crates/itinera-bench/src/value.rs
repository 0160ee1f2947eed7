//! Benchmarks of the value analyses: attribution over many journeys, CLV model fits.

use crate::median_ms;
use itinera_engine::attribution::{AttributionModel, AttributionQuery};
use itinera_engine::clv::{BgNbd, GammaGamma, Rfm};
use itinera_engine::run_attribution;
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Exp, Gamma};
use std::time::Instant;

pub fn attribution_bench(
    dir: &itinera_app::DataDir,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = crate::default_store(dir)?;
    let heuristics: Vec<AttributionModel> = AttributionModel::ALL
        .into_iter()
        .filter(|m| m.is_heuristic())
        .collect();
    use itinera_engine::attribution::AttributionKey;
    let cases: [(&str, Vec<AttributionModel>, AttributionKey); 6] = [
        (
            "all seven per-conversion models (six rules and the subset-game shapley)",
            heuristics,
            AttributionKey::Channel,
        ),
        (
            "markov order 1",
            vec![AttributionModel::Markov],
            AttributionKey::Channel,
        ),
        (
            "shapley (subset game)",
            vec![AttributionModel::Shapley],
            AttributionKey::Channel,
        ),
        (
            "shapley_markov",
            vec![AttributionModel::ShapleyMarkov],
            AttributionKey::Channel,
        ),
        ("all nine models", vec![], AttributionKey::Channel),
        // more players: the 11 event names that are not the conversion
        (
            "shapley_markov by event",
            vec![AttributionModel::ShapleyMarkov],
            AttributionKey::Event,
        ),
    ];
    for (name, models, by) in cases {
        let q = AttributionQuery {
            models,
            by,
            ..Default::default()
        };
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let t = Instant::now();
            let r = run_attribution(&store.view(), &q, &Default::default())?;
            times.push(t.elapsed().as_secs_f64());
            last = Some(r);
        }
        let r = last.expect("runs > 0");
        let journeys =
            r.totals.conversions + r.totals.unattributed_conversions + r.totals.null_paths;
        println!(
            "attribution, {name}: median {:.1} ms over {runs} runs; {journeys} journeys ({} converting, {} distinct paths, {} keys{})",
            median_ms(times),
            r.totals.conversions,
            r.totals.distinct_paths,
            r.keys.len(),
            r.shapley_markov
                .as_ref()
                .map(|s| format!(", shapley_markov exact: {}", s.exact))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Customers drawn from the BG/NBD and Gamma-Gamma processes with CDNOW's parameters, observed
/// for 30–39 weeks at day resolution.
fn simulate(n: usize, seed: u64) -> Vec<Rfm> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lambda = Gamma::new(0.243, 1.0 / 4.414).expect("valid");
    let dropout = Beta::new(0.793, 2.426).expect("valid");
    let nu = Gamma::new(3.74, 1.0 / 15.44).expect("valid");
    (0..n)
        .map(|_| {
            let (l, p): (f64, f64) = (lambda.sample(&mut rng), dropout.sample(&mut rng));
            let age = rng.gen_range(30 * 7..=39 * 7) as f64 / 7.0;
            let spend = Gamma::new(6.25, 1.0 / nu.sample(&mut rng)).expect("valid");
            let (mut t, mut x, mut last, mut total) = (0.0, 0.0, 0.0, 0.0);
            loop {
                t += Exp::new(l.max(1e-12)).expect("valid").sample(&mut rng);
                if t > age {
                    break;
                }
                // purchase times at day resolution, as stored purchases are counted per day
                last = (t * 7.0).floor() / 7.0;
                x += 1.0;
                total += spend.sample(&mut rng);
                if rng.gen_bool(p) {
                    break;
                }
            }
            Rfm {
                frequency: x,
                recency: last,
                age,
                monetary: if x > 0.0 { total / x } else { 0.0 },
            }
        })
        .collect()
}

pub fn clv_bench(customers: usize, runs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let data = simulate(customers, 11);
    let mut bg_times = Vec::new();
    let mut gg_times = Vec::new();
    let (mut bg, mut gg) = (None, None);
    for _ in 0..runs {
        let t = Instant::now();
        bg = Some(BgNbd::fit(&data)?);
        bg_times.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        gg = Some(GammaGamma::fit(&data)?);
        gg_times.push(t.elapsed().as_secs_f64());
    }
    let (bg, gg) = (bg.expect("runs > 0"), gg.expect("runs > 0"));
    println!(
        "BG/NBD fit over {customers} customers: median {:.0} ms; r = {:.3}, alpha = {:.3}, a = {:.3}, b = {:.3} (drawn with 0.243, 4.414, 0.793, 2.426)",
        median_ms(bg_times),
        bg.r,
        bg.alpha,
        bg.a,
        bg.b
    );
    println!(
        "Gamma-Gamma fit over its {} repeat customers: median {:.0} ms; p = {:.2}, q = {:.2}, gamma = {:.2} (drawn with 6.25, 3.74, 15.44)",
        data.iter().filter(|c| c.frequency > 0.0).count(),
        median_ms(gg_times),
        gg.p,
        gg.q,
        gg.gamma
    );
    Ok(())
}
