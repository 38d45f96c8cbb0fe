//! `JsonBody<T>`: the JSON request extractor. Unlike actix's `Json`, it tells apart the failures
//! the contract names: 415 (content type), 413 (size), 400 (not JSON), 422 (wrong shape, with
//! the path of the offending field).

use std::{future::Future, pin::Pin};

use actix_web::{
    FromRequest, HttpRequest,
    dev::Payload,
    error::PayloadError,
    http::{StatusCode, header},
    web,
};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::problem::{FieldError, Problem};

/// Maximum request body size, installed as app data by the gateway.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// What reading a body yields once the gateway's body deadline has passed: the client was too
/// slow, which is its `408`, not a broken body.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// The problem a body reader answers a payload error with: `408` for the deadline, else `400`.
pub fn unreadable_body(err: &PayloadError) -> Problem {
    let timed_out = matches!(err, PayloadError::Io(io)
        if io.get_ref().is_some_and(|e| e.is::<BodyTimedOut>()));
    if timed_out {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "the request body did not arrive in time",
        )
    } else {
        Problem::bad_request("the request body could not be read")
    }
}

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// `application/json`, or any `application/*+json`, with optional parameters.
pub fn is_json_content_type(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!("the request body exceeds {limit} bytes"),
    )
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<BodyLimit>>()
            .map(|l| l.0)
            .unwrap_or(64 * 1024);
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let json = is_json_content_type(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "the request body must be sent as Content-Type: application/json",
                ));
            }
            if declared_len.is_some_and(|len| len > limit) {
                return Err(too_large(limit));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| unreadable_body(&e))?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(JsonBody)
        })
    }
}

/// Syntax errors are 400; well-formed JSON of the wrong shape is 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => {
            deserializer
                .end()
                .map_err(|_| Problem::bad_request("trailing characters after the JSON body"))?;
            Ok(value)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if !inner.is_data() {
                return Err(Problem::bad_request(format!("malformed JSON: {inner}")));
            }
            let message = strip_position(&inner.to_string());
            let field =
                missing_field(&message).unwrap_or(if path == "." { String::new() } else { path });
            let field = if field.is_empty() {
                "body".to_owned()
            } else {
                field
            };
            Err(Problem::validation(vec![FieldError::new(field, message)]))
        }
    }
}

/// serde reports "missing field `x`" at the parent's path; name the field itself.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_with_the_field() {
        let p = parse_json::<Login>(b"{\"email\": ").unwrap_err();
        assert_eq!(p.status.as_u16(), 400);
        let p = parse_json::<Login>(b"{\"email\": \"a@b.c\"}").unwrap_err();
        assert_eq!(p.status.as_u16(), 422);
        assert_eq!(p.errors[0].field, "password");
        let p = parse_json::<Login>(b"{\"email\": 5, \"password\": \"x\"}").unwrap_err();
        assert_eq!(p.errors[0].field, "email");
        assert!(!p.errors[0].message.contains("line"));
        let p = parse_json::<Login>(b"[1]").unwrap_err();
        assert_eq!(p.status.as_u16(), 422);
    }
}
