//! Rows in COPY's text format: tab-separated columns, `\N` for NULL, and backslash escapes
//! for the characters the format gives a meaning to.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::model::Event;

pub(crate) const COPY_METRICS: &str = "COPY analytics.metrics (series_id, time, value) FROM STDIN";
pub(crate) const COPY_EVENTS: &str =
    "COPY analytics.events (time, kind, user_id, session_id, properties) FROM STDIN";

/// Appends `text` escaped for a text-format column.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn push_time(out: &mut String, time: &DateTime<Utc>) {
    out.push_str(&time.to_rfc3339_opts(SecondsFormat::Micros, true));
}

fn push_uuid(out: &mut String, id: Option<Uuid>) {
    match id {
        Some(id) => {
            let _ = write!(out, "{id}");
        }
        None => out.push_str("\\N"),
    }
}

pub(crate) fn push_metric(out: &mut String, series_id: i64, time: &DateTime<Utc>, value: f64) {
    let _ = write!(out, "{series_id}\t");
    push_time(out, time);
    // `{:?}` keeps every digit an f64 needs to round-trip, in a form PostgreSQL parses.
    let _ = writeln!(out, "\t{value:?}");
}

pub(crate) fn push_event(out: &mut String, event: &Event) {
    push_time(out, &event.time);
    out.push('\t');
    push_escaped(out, &event.kind);
    out.push('\t');
    push_uuid(out, event.user_id);
    out.push('\t');
    push_uuid(out, event.session_id);
    out.push('\t');
    if event.properties.is_null() {
        out.push_str("{}");
    } else {
        push_escaped(out, &event.properties.to_string());
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_are_escaped_and_nulls_marked() {
        let time = DateTime::parse_from_rfc3339("2026-11-27T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = Event::new("tab\there\\")
            .properties(serde_json::json!({"note": "line\nbreak"}))
            .at(time);
        let mut out = String::new();
        push_event(&mut out, &event);
        assert_eq!(
            out,
            "2026-11-27T10:00:00.500000Z\ttab\\there\\\\\t\\N\t\\N\t{\"note\":\"line\\\\nbreak\"}\n"
        );
        let mut out = String::new();
        push_metric(&mut out, 7, &time, 0.1);
        assert_eq!(out, "7\t2026-11-27T10:00:00.500000Z\t0.1\n");
    }
}
