//! JSON answers and the common error body.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::validate::FieldError;

/// The common error body: `{"error","message","fields"?}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    /// Machine-readable code (`bad_request`, `unauthorized`...).
    pub error: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Field problems, when the error is about some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
}

/// An error answer not yet turned into a response (small, so `Result`s carrying it stay small).
#[derive(Debug)]
pub(crate) struct Failure {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code of the common error body.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl Failure {
    /// A 400 `bad_request`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Failure {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

/// A JSON answer.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

/// An error answer with the common body.
pub(crate) fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    json(
        status,
        &ErrorBody {
            error: code,
            message: message.into(),
            fields: None,
        },
    )
}

/// 400 `bad_request`.
pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// 404 `not_found`.
pub(crate) fn not_found(message: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", message)
}

/// Fallback for paths and methods the simulator does not serve.
pub(crate) async fn no_route() -> Response {
    not_found("no such endpoint")
}

/// Whether the request declares a JSON body (`application/json`, parameters allowed).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// Parses an admin JSON body into `T`, answering 400 with the parser's message on failure.
/// (Lenient on purpose: the admin API does not insist on a `Content-Type`.)
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("body is not valid JSON of the expected shape: {e}")))
}
