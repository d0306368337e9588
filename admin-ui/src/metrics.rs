//! `/healthz` and `/metrics`: the appliance's checks as a small JSON document, and its metrics
//! in the Prometheus text exposition format (version 0.0.4).
//!
//! Invariant: neither answer carries personal data or a secret. The health answer names only
//! checks and short reasons; metric labels are states, kinds and office numbers (which the
//! federation publishes), and every label value is escaped, so no value can break a line of
//! the format. Who may read the metrics is the backend's decision (loopback or a token).

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::backend::{HealthCheck, MetricFamily};
use crate::pages::response;

/// `GET /healthz`: 200 when every check passed, 503 otherwise; never cached.
pub(crate) fn health(h: &HealthCheck) -> Response<Full<Bytes>> {
    let mut doc = serde_json::to_value(h).unwrap_or_else(|_| serde_json::json!({ "ok": false }));
    if !h.ok
        && let Some(o) = doc.as_object_mut()
    {
        // Whoever reads a failing answer finds what each check means and what to do.
        o.insert(
            "help".into(),
            crate::help::code::SYSTEM_HEALTH_FAILED.href().into(),
        );
    }
    let body = serde_json::to_vec(&doc).unwrap_or_else(|_| br#"{"ok":false}"#.to_vec());
    let status = if h.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store(response(status, "application/json", Bytes::from(body)))
}

/// `GET /metrics` refused: 403 with a plain reason, and the scheme a scraper should use.
pub(crate) fn forbidden() -> Response<Full<Bytes>> {
    let mut r = response(
        StatusCode::FORBIDDEN,
        "text/plain; charset=utf-8",
        Bytes::from_static(
            "メトリクスはこの装置自身から、またはトークンを付けて読んでください。\nmetrics are served to loopback, or with the bearer token of admin.metrics_token_file\n"
                .as_bytes(),
        ),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"kaigo-relay metrics\""),
    );
    no_store(r)
}

/// `GET /metrics`: the families in the text format.
pub(crate) fn exposition(families: &[MetricFamily]) -> Response<Full<Bytes>> {
    no_store(response(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        Bytes::from(render(families)),
    ))
}

fn no_store(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The text exposition format: `# HELP`, `# TYPE`, then one line per sample.
pub(crate) fn render(families: &[MetricFamily]) -> String {
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in &f.samples {
            out.push_str(&f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*value));
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Help text: backslash and newline escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values: backslash, double quote and newline escaped.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_escapes_what_could_break_a_line() {
        let f = vec![
            MetricFamily {
                name: "kaigo_relay_submissions".into(),
                help: "Submissions by state\\now".into(),
                kind: "gauge",
                samples: vec![
                    (vec![("state".into(), "queued".into())], 3.0),
                    (vec![("state".into(), "a\"b\\c\nd".into())], 0.5),
                ],
            },
            MetricFamily {
                name: "kaigo_relay_uptime_seconds".into(),
                help: "Up".into(),
                kind: "gauge",
                samples: vec![(vec![], 12.0)],
            },
        ];
        assert_eq!(
            render(&f),
            "# HELP kaigo_relay_submissions Submissions by state\\\\now\n\
             # TYPE kaigo_relay_submissions gauge\n\
             kaigo_relay_submissions{state=\"queued\"} 3\n\
             kaigo_relay_submissions{state=\"a\\\"b\\\\c\\nd\"} 0.5\n\
             # HELP kaigo_relay_uptime_seconds Up\n\
             # TYPE kaigo_relay_uptime_seconds gauge\n\
             kaigo_relay_uptime_seconds 12\n"
        );
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
