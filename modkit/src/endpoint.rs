//! What the endpoints [`crate::interface`] writes stand on: the credential check, reading the
//! arguments, and the answer. Errors are RFC 9457 problem details.

use std::fmt::Display;

use actix_web::{
    FromRequest, Handler, HttpResponse, Responder, Route,
    http::{StatusCode, header},
    web,
};
pub use actix_web::{
    HttpRequest,
    web::{Bytes, ServiceConfig},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::credential::{CREDENTIAL_HEADER, Credential};

/// A `POST` route to `handler`.
pub fn post<F, Args>(handler: F) -> Route
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::post().to(handler)
}

/// Why a call was not served: answered as problem details by [`Refusal::into_response`].
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    detail: String,
}

impl Refusal {
    /// The answer: RFC 9457 problem details.
    pub fn into_response(self) -> HttpResponse {
        problem(self.status, &self.detail)
    }
}

/// `Ok` when the request carries the credential registered as `web::Data<Credential>`; the `401`
/// to answer otherwise (also when none is registered: an endpoint is never open by mistake).
pub fn authorize(request: &HttpRequest) -> Result<(), Refusal> {
    let presented = request
        .headers()
        .get(CREDENTIAL_HEADER)
        .and_then(|v| v.to_str().ok());
    let accepted = match (request.app_data::<web::Data<Credential>>(), presented) {
        (Some(credential), Some(presented)) => credential.accepts(presented),
        _ => false,
    };
    match accepted {
        true => Ok(()),
        false => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            detail: "a valid service credential is required".into(),
        }),
    }
}

/// The call's arguments, or the `422` to answer.
pub fn decode<T: DeserializeOwned>(body: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: format!("the arguments do not read as this method's: {e}"),
    })
}

/// The method's result as the answer: its value as JSON, or a `503` naming the error (the module
/// could not answer; the caller sees [`crate::CallError::Unavailable`]).
pub fn respond<T: Serialize, E: Display>(result: Result<T, E>) -> HttpResponse {
    match result {
        Ok(value) => HttpResponse::Ok().json(value),
        Err(error) => {
            tracing::warn!(%error, "internal call failed");
            problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
        }
    }
}

fn problem(status: StatusCode, detail: &str) -> HttpResponse {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/problem+json"))
        .body(body.to_string())
}
