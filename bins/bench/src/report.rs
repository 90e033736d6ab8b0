//! One JSON line per scenario on stdout, the same shape in every area; progress on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use serde::Serialize;

/// A scenario's result next to its reference, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub area: &'static str,
    pub scenario: String,
    pub metric: &'static str,
    pub value: f64,
    pub reference: String,
    pub reference_value: f64,
    /// Always ours divided by the reference.
    pub ratio: f64,
    pub target_ratio: f64,
    /// "lower" for times; absent when higher is better.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub better: Option<&'static str>,
    /// No target: the figure is reported for what it tells, next to its reference.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub informational: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Anything else worth keeping with the figure (client count, sizes, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Measurement {
    pub fn new(
        area: &'static str,
        scenario: impl Into<String>,
        metric: &'static str,
        value: f64,
    ) -> Self {
        Self {
            area,
            scenario: scenario.into(),
            metric,
            value: round(value),
            reference: String::new(),
            reference_value: 0.0,
            ratio: 0.0,
            target_ratio: 0.0,
            better: None,
            informational: false,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Compares with `reference_value` of `reference`; the ratio is ours over theirs.
    #[must_use]
    pub fn against(
        mut self,
        reference: impl Into<String>,
        reference_value: f64,
        target_ratio: f64,
    ) -> Self {
        self.reference = reference.into();
        self.reference_value = round(reference_value);
        self.ratio = if reference_value == 0.0 {
            0.0
        } else {
            round(self.value / reference_value)
        };
        self.target_ratio = target_ratio;
        self
    }

    /// Reported without a target (the issue asks for the figure, not for a bound).
    #[must_use]
    pub fn informational(mut self) -> Self {
        self.informational = true;
        self
    }

    /// For times and sizes: lower is better (the target is then a ceiling).
    #[must_use]
    pub fn lower_is_better(mut self) -> Self {
        self.better = Some("lower");
        self
    }

    #[must_use]
    pub fn latency(mut self, latency: &Latency) -> Self {
        self.p50_ms = Some(round(latency.p50_ms));
        self.p95_ms = Some(round(latency.p95_ms));
        self.p99_ms = Some(round(latency.p99_ms));
        self
    }

    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Whether the figure meets its target.
    pub fn meets_target(&self) -> bool {
        if self.informational {
            return true;
        }
        match self.better {
            Some(_) => self.ratio <= self.target_ratio,
            None => self.ratio >= self.target_ratio,
        }
    }

    pub fn print(&self) {
        match serde_json::to_string(self) {
            Ok(line) => println!("{line}"),
            Err(error) => eprintln!("cannot print a measurement: {error}"),
        }
        let verdict = if self.informational {
            "informational".to_owned()
        } else if self.meets_target() {
            format!("meets target {}", self.target_ratio)
        } else {
            format!("MISSES target {}", self.target_ratio)
        };
        progress(&format!(
            "{} {}: {} {} vs {} {} -> ratio {} ({verdict})",
            self.area,
            self.scenario,
            self.value,
            self.metric,
            self.reference_value,
            self.reference,
            self.ratio
        ));
    }
}

/// Percentiles of recorded durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(mut micros: Vec<u32>) -> Self {
        if micros.is_empty() {
            return Self::default();
        }
        micros.sort_unstable();
        let at = |fraction: f64| {
            let index = ((micros.len() as f64 - 1.0) * fraction).round() as usize;
            f64::from(micros[index.min(micros.len() - 1)]) / 1000.0
        };
        Self {
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

pub fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

fn round(value: f64) -> f64 {
    if value.abs() >= 100.0 {
        value.round()
    } else {
        (value * 1000.0).round() / 1000.0
    }
}
