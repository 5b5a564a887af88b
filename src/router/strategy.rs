//! Picking one deployment among a group's candidates, per `routing_strategy`.

use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use super::health::DeploymentState;
use crate::config::RoutingStrategy;

/// What the strategy may look at besides the deployments.
pub struct Pick<'a> {
    pub strategy: RoutingStrategy,
    pub stream: bool,
    pub lowest_latency_buffer: f64,
    pub now: Instant,
    /// Estimated tokens of this request, for usage-based routing.
    pub est_tokens: u64,
    pub rng: &'a mut dyn rand::RngCore,
}

/// Chooses from `candidates` (non-empty, already healthy and of the best `order`).
/// Returns `None` only when usage-based routing finds every deployment at its limit.
pub fn choose(cands: &[Arc<DeploymentState>], p: &mut Pick<'_>) -> Option<usize> {
    if cands.is_empty() {
        return None;
    }
    if cands.len() == 1 && p.strategy != RoutingStrategy::UsageBased {
        return Some(0);
    }
    match p.strategy {
        RoutingStrategy::SimpleShuffle => Some(weighted_shuffle(cands, p.rng)),
        RoutingStrategy::LeastBusy => {
            let min = cands.iter().map(|c| c.in_flight()).min().unwrap_or(0);
            let tied: Vec<usize> = (0..cands.len())
                .filter(|i| cands[*i].in_flight() == min)
                .collect();
            Some(tied[p.rng.gen_range(0..tied.len())])
        }
        RoutingStrategy::UsageBased => usage_based(cands, p),
        RoutingStrategy::LatencyBased => Some(latency_based(cands, p)),
        RoutingStrategy::CostBased => {
            let cost = |c: &DeploymentState| {
                c.price
                    .as_ref()
                    .map(|p| p.input_cost_per_token + p.output_cost_per_token)
                    .unwrap_or(f64::MAX)
            };
            let min = cands.iter().map(|c| cost(c)).fold(f64::MAX, f64::min);
            let tied: Vec<usize> = (0..cands.len())
                .filter(|i| cost(&cands[*i]) <= min)
                .collect();
            // Among equally cheap ones, the least busy.
            tied.into_iter().min_by_key(|i| cands[*i].in_flight())
        }
    }
}

/// Random choice weighted by `weight`, else by `rpm`, else by `tpm`, else uniform.
fn weighted_shuffle(cands: &[Arc<DeploymentState>], rng: &mut dyn rand::RngCore) -> usize {
    let weights: Vec<f64> = if cands.iter().any(|c| c.dep.weight.is_some()) {
        cands.iter().map(|c| c.dep.weight.unwrap_or(0.0)).collect()
    } else if cands.iter().any(|c| c.dep.rpm.is_some()) {
        cands
            .iter()
            .map(|c| c.dep.rpm.unwrap_or(0) as f64)
            .collect()
    } else if cands.iter().any(|c| c.dep.tpm.is_some()) {
        cands
            .iter()
            .map(|c| c.dep.tpm.unwrap_or(0) as f64)
            .collect()
    } else {
        vec![1.0; cands.len()]
    };
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return rng.gen_range(0..cands.len());
    }
    let mut x = rng.gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    cands.len() - 1
}

/// Lowest utilisation of the deployment's own rpm/tpm this minute; never one that is full.
fn usage_based(cands: &[Arc<DeploymentState>], p: &mut Pick<'_>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in cands.iter().enumerate() {
        let (req, tok) = c.minute_usage(p.now);
        if c.dep.rpm.is_some_and(|l| req >= l) || c.dep.tpm.is_some_and(|l| tok + p.est_tokens > l)
        {
            continue;
        }
        let r = c
            .dep
            .rpm
            .map(|l| req as f64 / l.max(1) as f64)
            .unwrap_or(0.0);
        let t = c
            .dep
            .tpm
            .map(|l| tok as f64 / l.max(1) as f64)
            .unwrap_or(0.0);
        // Without limits, fall back to raw token usage so load still spreads.
        let score = if c.dep.rpm.is_none() && c.dep.tpm.is_none() {
            tok as f64 + req as f64
        } else {
            r.max(t)
        };
        let better = match best {
            None => true,
            Some((_, s)) => score < s || (score == s && p.rng.gen_bool(0.5)),
        };
        if better {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// Lowest peak-EWMA latency; deployments without samples are tried first so they get
/// measured; within `lowest_latency_buffer` of the best, the least busy wins, then random.
fn latency_based(cands: &[Arc<DeploymentState>], p: &mut Pick<'_>) -> usize {
    let scores: Vec<f64> = cands.iter().map(|c| c.latency_score(p.stream)).collect();
    let unmeasured: Vec<usize> = (0..cands.len()).filter(|i| scores[*i] == 0.0).collect();
    if !unmeasured.is_empty() {
        return unmeasured[p.rng.gen_range(0..unmeasured.len())];
    }
    let best = scores.iter().cloned().fold(f64::MAX, f64::min);
    let limit = best * (1.0 + p.lowest_latency_buffer.max(0.0));
    let near: Vec<usize> = (0..cands.len()).filter(|i| scores[*i] <= limit).collect();
    let min_busy = near
        .iter()
        .map(|i| cands[*i].in_flight())
        .min()
        .unwrap_or(0);
    let tied: Vec<usize> = near
        .into_iter()
        .filter(|i| cands[*i].in_flight() == min_busy)
        .collect();
    tied[p.rng.gen_range(0..tied.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Wire;
    use rand::SeedableRng;
    use std::time::Duration;

    fn dep(id: &str, f: impl FnOnce(&mut crate::deployment::Deployment)) -> Arc<DeploymentState> {
        let mut d = crate::deployment::test_deployment(id, "g", Wire::OpenAi);
        f(&mut d);
        DeploymentState::new(d, None)
    }

    fn counts(cands: &[Arc<DeploymentState>], strategy: RoutingStrategy, n: usize) -> Vec<usize> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut out = vec![0; cands.len()];
        for _ in 0..n {
            let mut p = Pick {
                strategy,
                stream: false,
                lowest_latency_buffer: 0.0,
                now: Instant::now(),
                est_tokens: 0,
                rng: &mut rng,
            };
            out[choose(cands, &mut p).unwrap()] += 1;
        }
        out
    }

    #[test]
    fn simple_shuffle_follows_weights() {
        let c = vec![
            dep("a", |d| d.weight = Some(9.0)),
            dep("b", |d| d.weight = Some(1.0)),
        ];
        let n = counts(&c, RoutingStrategy::SimpleShuffle, 10_000);
        assert!((8_600..9_400).contains(&n[0]), "{n:?}");
    }

    #[test]
    fn simple_shuffle_uses_rpm_when_no_weight() {
        let c = vec![
            dep("a", |d| d.rpm = Some(100)),
            dep("b", |d| d.rpm = Some(300)),
        ];
        let n = counts(&c, RoutingStrategy::SimpleShuffle, 10_000);
        assert!((2_100..2_900).contains(&n[0]), "{n:?}");
    }

    #[test]
    fn least_busy_picks_fewest_in_flight() {
        let c = vec![dep("a", |_| {}), dep("b", |_| {})];
        let _g = c[0].start();
        assert_eq!(counts(&c, RoutingStrategy::LeastBusy, 100), vec![0, 100]);
    }

    #[test]
    fn usage_based_skips_full_deployments_and_reports_none_when_all_are_full() {
        let c = vec![
            dep("a", |d| d.rpm = Some(1)),
            dep("b", |d| d.rpm = Some(10)),
        ];
        assert!(c[0].count_request(Instant::now(), None));
        assert_eq!(counts(&c, RoutingStrategy::UsageBased, 50), vec![0, 50]);
        let only = vec![c[0].clone()];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut p = Pick {
            strategy: RoutingStrategy::UsageBased,
            stream: false,
            lowest_latency_buffer: 0.0,
            now: Instant::now(),
            est_tokens: 0,
            rng: &mut rng,
        };
        assert_eq!(choose(&only, &mut p), None);
    }

    #[test]
    fn latency_based_prefers_the_faster_deployment() {
        let c = vec![dep("slow", |_| {}), dep("fast", |_| {})];
        c[0].record_success(Duration::from_millis(500), None, 10, 10);
        c[1].record_success(Duration::from_millis(50), None, 10, 10);
        assert_eq!(counts(&c, RoutingStrategy::LatencyBased, 100), vec![0, 100]);
    }

    #[test]
    fn cost_based_picks_the_cheapest() {
        let price = |i: f64, o: f64| crate::spend::prices::ModelPrice {
            input_cost_per_token: i,
            output_cost_per_token: o,
            ..Default::default()
        };
        let a = DeploymentState::new(
            crate::deployment::test_deployment("a", "g", Wire::OpenAi),
            Some(price(1e-5, 3e-5)),
        );
        let b = DeploymentState::new(
            crate::deployment::test_deployment("b", "g", Wire::OpenAi),
            Some(price(1e-7, 4e-7)),
        );
        assert_eq!(counts(&[a, b], RoutingStrategy::CostBased, 10), vec![0, 10]);
    }
}
