//! The journey analyses other than funnels over the store bench's stream: the customer-journey
//! stage funnel, 5-step Sankey paths and a 12-week retention table (in-process, warm).

use crate::median_ms;
use itinera_engine::{
    run_paths, run_retention, run_stage_funnel, PathQuery, RetentionQuery, StageFunnelQuery,
};
use std::time::Instant;

pub fn analyses_bench(
    dir: &itinera_app::DataDir,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = crate::default_store(dir)?;
    let stages: StageFunnelQuery =
        serde_json::from_value(serde_json::json!({"model": "customer-journey"}))?;
    let sankey: PathQuery = serde_json::from_value(
        serde_json::json!({"start": "page_view", "steps": 5, "min_weight": 10}),
    )?;
    let retention: RetentionQuery = serde_json::from_value(
        serde_json::json!({"cohort": "page_view", "return_event": "Order Completed", "period": "week", "periods": 12}),
    )?;
    let time = |name: &str, f: &dyn Fn() -> Result<String, Box<dyn std::error::Error>>| {
        let mut times = Vec::new();
        let mut what = String::new();
        for _ in 0..runs {
            let t = Instant::now();
            what = f()?;
            times.push(t.elapsed().as_secs_f64());
        }
        println!(
            "{name}: median {:.1} ms over {runs} runs; {what}",
            median_ms(times)
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    time("stage funnel, customer-journey model", &|| {
        let r = run_stage_funnel(&store.view(), &stages, &Default::default())?;
        Ok(format!("{} persons staged", r.persons))
    })?;
    time("Sankey paths, 5 steps from page_view", &|| {
        let r = run_paths(&store.view(), &sankey, &Default::default())?;
        Ok(format!(
            "{} paths, {} links",
            r.paths_counted,
            r.links.len()
        ))
    })?;
    time("retention, 12 weekly periods", &|| {
        let r = run_retention(&store.view(), &retention, &Default::default())?;
        Ok(format!("{} cohorts", r.cohorts.len()))
    })?;
    Ok(())
}
