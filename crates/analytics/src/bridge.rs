//! [`MetricsBridge`]: the running service's own `metrics` counters, gauges and histograms,
//! selected by name, copied into `analytics.metrics` on an interval.
//!
//! The bridge is a `metrics::Recorder` keeping the selected metrics in a registry (a metric
//! not selected costs nothing: it gets a no-op handle). The binary installs it next to its
//! Prometheus exporter (`metrics_util::layers::Fanout`), then runs
//! [`MetricsBridge::run`]. Each snapshot records, per series, a counter's cumulative value
//! (as Prometheus exposes it), a gauge's current value, and every histogram sample observed
//! since the previous snapshot (so percentiles can be queried from analytics).

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use tokio::task::JoinHandle;

use crate::model::{Labels, MetricPoint};
use crate::recorder::{Recorded, Recorder};

/// Selected metrics of this process, for [`crate::Recorder`]; cheap to clone.
#[derive(Clone)]
pub struct MetricsBridge {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry<Key, AtomicStorage>,
    /// Names kept: exactly, or every name starting with an entry ending in `*`.
    selected: Vec<String>,
}

/// What one snapshot did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    /// Points buffered into the recorder.
    pub recorded: u64,
    /// Points the recorder dropped (its buffer was full).
    pub dropped: u64,
    /// Points refused: a name or label the schema does not accept.
    pub invalid: u64,
}

impl MetricsBridge {
    /// A bridge keeping the metrics named in `selected` (`"http_requests_total"`, or a prefix
    /// such as `"ai_cache_*"`).
    pub fn new<I, S>(selected: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            inner: Arc::new(Inner {
                registry: Registry::atomic(),
                selected: selected.into_iter().map(Into::into).collect(),
            }),
        }
    }

    fn selects(&self, key: &Key) -> bool {
        let name = key.name();
        self.inner
            .selected
            .iter()
            .any(|selected| match selected.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == selected,
            })
    }

    /// Records the current values of the selected metrics (see the module documentation).
    pub async fn snapshot_into(&self, recorder: &Recorder) -> SnapshotReport {
        let now = chrono::Utc::now();
        let mut points = Vec::new();
        let point = |key: &Key, value: f64| {
            let labels: Labels = key
                .labels()
                .map(|label| (label.key().to_owned(), label.value().to_owned()))
                .collect();
            MetricPoint {
                name: key.name().to_owned(),
                value,
                labels,
                time: now,
            }
        };
        let registry = &self.inner.registry;
        registry.visit_counters(|key, counter| {
            points.push(point(
                key,
                counter.load(std::sync::atomic::Ordering::Relaxed) as f64,
            ));
        });
        registry.visit_gauges(|key, gauge| {
            points.push(point(
                key,
                f64::from_bits(gauge.load(std::sync::atomic::Ordering::Relaxed)),
            ));
        });
        registry.visit_histograms(|key, histogram| {
            histogram.clear_with(|samples| {
                points.extend(samples.iter().map(|sample| point(key, *sample)));
            });
        });
        let mut report = SnapshotReport::default();
        for point in points {
            match recorder.record_metric(point).await {
                Ok(Recorded::Buffered) => report.recorded += 1,
                Ok(Recorded::Dropped) => report.dropped += 1,
                Err(_) => report.invalid += 1,
            }
        }
        report
    }

    /// Snapshots into `recorder` every `interval` until the recorder is closed.
    pub fn run(&self, recorder: Recorder, interval: Duration) -> JoinHandle<()> {
        let bridge = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                bridge.snapshot_into(&recorder).await;
                if recorder.is_closed() {
                    return;
                }
            }
        })
    }
}

impl metrics::Recorder for MetricsBridge {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if !self.selects(key) {
            return Counter::noop();
        }
        self.inner
            .registry
            .get_or_create_counter(key, |counter| Counter::from_arc(counter.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        if !self.selects(key) {
            return Gauge::noop();
        }
        self.inner
            .registry
            .get_or_create_gauge(key, |gauge| Gauge::from_arc(gauge.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if !self.selects(key) {
            return Histogram::noop();
        }
        self.inner
            .registry
            .get_or_create_histogram(key, |histogram| Histogram::from_arc(histogram.clone()))
    }
}
