//! Order statistics of latency samples.

use serde::Serialize;

/// Minimum, nearest-rank percentiles, maximum and mean of a set of values, in the unit of
/// the values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Smallest value.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarises `values`, or returns `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        Some(Self {
            min,
            p50: percentile(&sorted, 0.50),
            p90: percentile(&sorted, 0.90),
            p99: percentile(&sorted, 0.99),
            max,
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }
}

/// Returns the nearest-rank percentile of non-empty `sorted`: the smallest value with at least
/// `quantile` of the values at or below it.
fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    let index = rank.saturating_sub(1).min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_nothing_is_none() {
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn summary_of_one_value_is_that_value() {
        let summary = Summary::of(&[7.0]).unwrap();
        assert_eq!(summary.min, 7.0);
        assert_eq!(summary.p50, 7.0);
        assert_eq!(summary.p99, 7.0);
        assert_eq!(summary.max, 7.0);
        assert_eq!(summary.mean, 7.0);
    }

    #[test]
    fn summary_uses_nearest_rank() {
        // 1..=100 in reverse, so sorting matters.
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let summary = Summary::of(&values).unwrap();
        assert_eq!(summary.min, 1.0);
        assert_eq!(summary.p50, 50.0);
        assert_eq!(summary.p90, 90.0);
        assert_eq!(summary.p99, 99.0);
        assert_eq!(summary.max, 100.0);
        assert_eq!(summary.mean, 50.5);
    }

    #[test]
    fn percentile_of_few_values_rounds_rank_up() {
        let sorted = [10.0, 20.0, 30.0];
        assert_eq!(percentile(&sorted, 0.50), 20.0);
        assert_eq!(percentile(&sorted, 0.90), 30.0);
        assert_eq!(percentile(&sorted, 0.0), 10.0);
    }
}
