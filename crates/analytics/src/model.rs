//! What the recorder records: metric points and events, validated before they are buffered so
//! that a batch never fails on one bad row.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{AnalyticsError, invalid};

/// Label names to values. Sorted, so one set of labels is one series whatever the order it
/// was given in.
pub type Labels = BTreeMap<String, String>;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_LABELS: usize = 16;
pub const MAX_LABEL_NAME_CHARS: usize = 100;
pub const MAX_LABEL_VALUE_CHARS: usize = 200;
pub const MAX_KIND_CHARS: usize = 100;
/// Largest properties object of one event, as JSON text.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;
/// What a row holds beside its text (times, ids, the value, allocations), counted in its size.
const ROW_OVERHEAD: usize = 96;
/// An upper bound of the largest row's size: the buffer's byte bound must hold one.
pub const MAX_ROW_BYTES: usize = 128 * 1024;

/// One measurement of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Prometheus-style: letters, digits, `_`, `:` and `.`, not starting with a digit.
    pub name: String,
    pub value: f64,
    #[serde(default)]
    pub labels: Labels,
    pub time: DateTime<Utc>,
}

impl MetricPoint {
    /// A point of `name` now, without labels.
    pub fn new(name: impl Into<String>, value: f64) -> Self {
        Self {
            name: name.into(),
            value,
            labels: Labels::new(),
            time: Utc::now(),
        }
    }

    #[must_use]
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    #[must_use]
    pub fn at(mut self, time: DateTime<Utc>) -> Self {
        self.time = time;
        self
    }

    pub fn validate(&self) -> Result<(), AnalyticsError> {
        self.checked_size().map(|_| ())
    }

    /// Validates the point and returns about how many bytes it holds (for the recorder's
    /// byte bound).
    pub(crate) fn checked_size(&self) -> Result<usize, AnalyticsError> {
        validate_metric_name(&self.name)?;
        if !self.value.is_finite() {
            return Err(invalid("value", "must be a finite number"));
        }
        validate_labels(&self.labels)?;
        let labels: usize = self
            .labels
            .iter()
            .map(|(name, value)| name.len() + value.len() + ROW_OVERHEAD / 4)
            .sum();
        Ok(ROW_OVERHEAD + self.name.len() + labels)
    }
}

/// Something a user or the platform did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened (`order_placed`, `menu_viewed`, ...), 1 to 100 characters.
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    /// A JSON object; `Null` stands for `{}`.
    #[serde(default)]
    pub properties: serde_json::Value,
    pub time: DateTime<Utc>,
}

impl Event {
    /// An event of `kind` now.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            user_id: None,
            session_id: None,
            properties: serde_json::Value::Null,
            time: Utc::now(),
        }
    }

    #[must_use]
    pub fn user(mut self, user: Uuid) -> Self {
        self.user_id = Some(user);
        self
    }

    #[must_use]
    pub fn session(mut self, session: Uuid) -> Self {
        self.session_id = Some(session);
        self
    }

    #[must_use]
    pub fn properties(mut self, properties: serde_json::Value) -> Self {
        self.properties = properties;
        self
    }

    #[must_use]
    pub fn at(mut self, time: DateTime<Utc>) -> Self {
        self.time = time;
        self
    }

    pub fn validate(&self) -> Result<(), AnalyticsError> {
        self.checked_size().map(|_| ())
    }

    /// Validates the event and returns about how many bytes it holds (for the recorder's
    /// byte bound).
    pub(crate) fn checked_size(&self) -> Result<usize, AnalyticsError> {
        let chars = self.kind.chars().count();
        if chars == 0 || chars > MAX_KIND_CHARS {
            return Err(invalid(
                "kind",
                format!("must be 1 to {MAX_KIND_CHARS} characters"),
            ));
        }
        if self.kind.contains('\0') {
            return Err(invalid("kind", "must not contain NUL"));
        }
        let properties = match &self.properties {
            serde_json::Value::Null => 0,
            serde_json::Value::Object(_) => {
                let text = self.properties.to_string();
                if text.len() > MAX_PROPERTIES_BYTES {
                    return Err(invalid(
                        "properties",
                        format!("must be at most {MAX_PROPERTIES_BYTES} bytes of JSON"),
                    ));
                } else if text.contains("\\u0000") {
                    return Err(invalid("properties", "must not contain NUL"));
                }
                text.len()
            }
            _ => return Err(invalid("properties", "must be a JSON object")),
        };
        Ok(ROW_OVERHEAD + self.kind.len() + properties)
    }
}

/// Prometheus-style metric names (the schema checks the same).
pub fn validate_metric_name(name: &str) -> Result<(), AnalyticsError> {
    let mut chars = name.chars();
    let valid_first = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':');
    let valid_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.'));
    if !valid_first || !valid_rest || name.len() > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!(
                "must be 1 to {MAX_NAME_CHARS} letters, digits, '_', ':' or '.', not starting with a digit"
            ),
        ));
    }
    Ok(())
}

pub fn validate_labels(labels: &Labels) -> Result<(), AnalyticsError> {
    if labels.len() > MAX_LABELS {
        return Err(invalid("labels", format!("at most {MAX_LABELS} labels")));
    }
    for (name, value) in labels {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= MAX_LABEL_NAME_CHARS;
        if !valid {
            return Err(invalid(
                "labels",
                format!(
                    "label name {name:?} must be letters, digits and '_', not starting with a digit, at most {MAX_LABEL_NAME_CHARS}"
                ),
            ));
        }
        if value.chars().count() > MAX_LABEL_VALUE_CHARS || value.contains('\0') {
            return Err(invalid(
                "labels",
                format!(
                    "the value of {name:?} must be at most {MAX_LABEL_VALUE_CHARS} characters, without NUL"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_follow_prometheus() {
        assert!(validate_metric_name("http_requests_total").is_ok());
        assert!(validate_metric_name("fodi:orders.placed").is_ok());
        for bad in ["", "1x", "with space", "dash-ed", &"x".repeat(201)] {
            assert!(validate_metric_name(bad).is_err(), "{bad:?}");
        }
        let point = MetricPoint::new("latency", 1.0).label("route", "/orders");
        assert!(point.validate().is_ok());
        assert!(point.label("9lives", "x").validate().is_err());
        assert!(MetricPoint::new("latency", f64::NAN).validate().is_err());
        assert!(
            MetricPoint::new("latency", f64::INFINITY)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn events_need_a_kind_and_object_properties() {
        assert!(Event::new("order_placed").validate().is_ok());
        assert!(Event::new("").validate().is_err());
        assert!(
            Event::new("x")
                .properties(serde_json::json!([1]))
                .validate()
                .is_err()
        );
        assert!(
            Event::new("x")
                .properties(serde_json::json!({"a": "\u{0}"}))
                .validate()
                .is_err()
        );
    }
}
