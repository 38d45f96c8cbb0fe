//! RFC 9457 problem details: the one shape every error response takes. Module errors convert
//! into a [`Problem`]; nothing else writes an error body.
//!
//! Which error type is used where (one per boundary; each keeps its cause as `source`):
//!
//! | boundary | type |
//! |---|---|
//! | an HTTP answer | [`Problem`]; a module error becomes one through [`ToProblem`] |
//! | a module's rules and store | `UsersError`, `EventsError` |
//! | a call to another module | `UsersApiError` (in process or over HTTP alike) |
//! | a call to another process | the kit's `modkit::CallError` (rejected or unavailable), converted into the calling module's own error; building the client: `modkit::SetupError` |
//! | an access token | `auth::TokenError` |
//! | the database at run time / at start | `db::DbError` / `db::DbSetupError` |
//! | domain events | `modkit::events::DeliveryError`; the relay: `RelayError`; the broker: `BrokerError` |
//! | signing keys | `KeysError` |
//! | configuration | `config::ConfigError` |
//! | a process's start | `topology::StartError`, which wraps the ones above |
//!
//! `Result<_, String>` is kept only for a value that fails to parse (a URL, a route entry),
//! where the message is all there is to say.

use actix_web::{
    HttpResponse, ResponseError,
    http::{StatusCode, header},
};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid input field.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// An error of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error response: status, a stable machine-readable `code` (the problem type), a detail for
/// people, field errors for validation failures and a `Retry-After` for 429/503.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    /// `urn:rsvp:problem:<code>`, stable per kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// A problem with its status, stable code (`urn:rsvp:problem:<code>`) and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    /// `400`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// `401`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// `403`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// `404`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// `422` naming every invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => "the request has invalid fields".to_owned(),
        };
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-failed",
                detail,
            )
        }
    }

    /// `503` with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
        }
    }

    /// A bug: the detail is fixed so no internal message ever reaches a client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an unexpected error occurred; it has been logged",
        )
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            kind: format!("urn:rsvp:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for Problem {}

/// An error that answers a request: the one mapping from a module's error to its HTTP answer.
/// [`problem_response!`](crate::problem_response) implements `ResponseError` from it.
pub trait ToProblem {
    /// The answer this error gets.
    fn to_problem(&self) -> Problem;
}

impl ToProblem for Problem {
    fn to_problem(&self) -> Problem {
        self.clone()
    }
}

/// Implements `ResponseError` for error types that implement [`ToProblem`]; a blanket impl is
/// not allowed for a foreign trait, so each type names itself once.
#[macro_export]
macro_rules! problem_response {
    ($($error:ty),+ $(,)?) => {$(
        impl actix_web::ResponseError for $error {
            fn status_code(&self) -> actix_web::http::StatusCode {
                $crate::platform::problem::ToProblem::to_problem(self).status
            }

            fn error_response(&self) -> actix_web::HttpResponse {
                $crate::platform::problem::ToProblem::to_problem(self).into_response()
            }
        }
    )+};
}

impl Problem {
    /// The `application/problem+json` answer.
    pub fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(self.body())
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.clone().into_response()
    }
}
