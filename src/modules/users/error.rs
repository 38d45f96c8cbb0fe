//! The users module's one error type and its mapping to problem details.

use actix_web::http::StatusCode;

use crate::platform::{
    db::DbError,
    problem::{FieldError, Problem, ToProblem},
};

/// Everything that can go wrong in the users module; [`ToProblem`] says how each answers.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("email already registered")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("refresh token reused; its family was revoked")]
    RefreshTokenReused,
    #[error("current password is incorrect")]
    WrongCurrentPassword,
    #[error("the account of this token no longer exists")]
    AccountGone,
    #[error("user not found")]
    NotFound,
    #[error("invalid, used or expired password-reset token")]
    InvalidResetToken,
    #[error("too many password attempts for this account")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<diesel::result::Error> for UsersError {
    fn from(err: diesel::result::Error) -> Self {
        UsersError::Db(DbError::Query(err))
    }
}

impl From<bcrypt::BcryptError> for UsersError {
    fn from(err: bcrypt::BcryptError) -> Self {
        UsersError::Internal(format!("bcrypt: {err}"))
    }
}

impl From<jsonwebtoken::errors::Error> for UsersError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        UsersError::Internal(format!("jwt: {err}"))
    }
}

impl ToProblem for UsersError {
    fn to_problem(&self) -> Problem {
        match self {
            UsersError::Validation(errors) => Problem::validation(errors.clone()),
            UsersError::EmailTaken => Problem::new(
                StatusCode::CONFLICT,
                "email-taken",
                "an account with this email already exists",
            ),
            UsersError::InvalidCredentials => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "the email or password is incorrect",
            ),
            UsersError::InvalidRefreshToken | UsersError::RefreshTokenReused => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-refresh-token",
                "the refresh token is invalid, expired or already used",
            ),
            UsersError::WrongCurrentPassword => Problem::new(
                StatusCode::FORBIDDEN,
                "wrong-current-password",
                "current_password is incorrect",
            ),
            UsersError::AccountGone => {
                Problem::unauthorized("the account of this access token no longer exists")
            }
            UsersError::NotFound => Problem::not_found("no such user"),
            UsersError::InvalidResetToken => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-reset-token",
                "this reset link is invalid, was used already or has expired; ask for a new one",
            ),
            UsersError::TooManyAttempts { retry_after_secs } => Problem {
                retry_after_secs: Some(*retry_after_secs),
                ..Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "too many password attempts for this account; retry later",
                )
            },
            UsersError::Problem(problem) => problem.clone(),
            UsersError::Db(err) if err.is_unavailable() => {
                tracing::error!(error = %err, "database unavailable");
                Problem::unavailable("the users module's database is unavailable", 5)
            }
            UsersError::Db(_) | UsersError::Internal(_) => {
                tracing::error!(error = %self, "users module failure");
                Problem::internal()
            }
        }
    }
}

crate::problem_response!(UsersError);
