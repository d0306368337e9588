//! HTTP plumbing shared by the gateway and the control API: JSON responses, the JSON error
//! shape `{"error":{"code","message"}}`, bounded body reading and running store work on the
//! blocking pool.
//!
//! Invariant: every failure a client can cause ends as one of these JSON errors with a stable
//! snake_case code and a Japanese message with a short English part — never a panic and never
//! an empty body. Internal failures are logged and answered with 500 `internal_error`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Map, Value, json};

use crate::sim::Core;

/// The response type of both services.
pub type Resp = Response<Full<Bytes>>;

/// A JSON error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra top-level fields (e.g. `next_window_opens_at`).
    pub extra: Map<String, Value>,
    /// Extra headers (e.g. `WWW-Authenticate`).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    /// Adds a top-level field next to `error`.
    pub fn with_field(mut self, name: &str, value: Value) -> ApiError {
        self.extra.insert(name.to_owned(), value);
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "見つかりません (not found)",
        )
    }

    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("このメソッドは使えません (method not allowed; allowed: {allow})"),
        )
        .with_header(http::header::ALLOW, HeaderValue::from_static(allow))
    }

    /// Logs `err` and hides it behind a 500.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "internal error while handling a request");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "内部エラーが発生しました (internal error)",
        )
    }

    /// The JSON response.
    pub fn into_response(self) -> Resp {
        let mut body = self.extra;
        body.insert(
            "error".to_owned(),
            json!({"code": self.code, "message": self.message}),
        );
        let mut resp = json_response(self.status, &Value::Object(body));
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, value: &Value) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// A request body read with a size limit.
#[derive(Debug)]
pub enum ReadBody {
    Complete(Bytes),
    TooLarge,
}

/// Reads the whole body unless it exceeds `limit` bytes (then stops reading).
pub async fn read_body<B>(mut body: B, limit: u64) -> Result<ReadBody, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "bad_body",
                format!("リクエスト本文を読めませんでした (could not read the request body: {e})"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > limit {
                return Ok(ReadBody::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(ReadBody::Complete(buf.freeze()))
}

/// Runs blocking store work on the blocking pool.
pub async fn blocking<T, E, F>(core: &Arc<Core>, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: FnOnce(&Core) -> Result<T, E> + Send + 'static,
{
    let core = Arc::clone(core);
    match tokio::task::spawn_blocking(move || work(&core)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ApiError::internal(e)),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Decodes `%XX` escapes of a query value (`+` stays `+`). `None` on bad escapes or UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded value of the first query parameter `name`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<Option<String>> {
    let query = query?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shape() {
        let resp = ApiError::new(StatusCode::CONFLICT, "x_y", "メッセージ (message)")
            .with_field("next_window_opens_at", json!("2025-07-01T00:00:00+09:00"))
            .into_response();
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        assert_eq!(
            resp.headers()[CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
    }

    #[test]
    fn query_params_are_percent_decoded() {
        assert_eq!(
            query_param(Some("a=1&idempotency_key=k%2F1+2"), "idempotency_key"),
            Some(Some("k/1+2".to_owned()))
        );
        assert_eq!(query_param(Some("a=1"), "idempotency_key"), None);
        assert_eq!(query_param(None, "a"), None);
        assert_eq!(query_param(Some("a=%zz"), "a"), Some(None));
        assert_eq!(
            query_param(Some("a=%e3%81%82"), "a"),
            Some(Some("あ".to_owned()))
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_stop_early() {
        let body = Full::new(Bytes::from_static(b"0123456789"));
        assert!(matches!(
            read_body(body, 9).await.unwrap(),
            ReadBody::TooLarge
        ));
        let body = Full::new(Bytes::from_static(b"0123456789"));
        match read_body(body, 10).await.unwrap() {
            ReadBody::Complete(b) => assert_eq!(&b[..], b"0123456789"),
            ReadBody::TooLarge => panic!("not too large"),
        }
    }
}
