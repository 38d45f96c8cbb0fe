//! The events module's one error type and its mapping to problem details.

use actix_web::http::StatusCode;

use super::domain::Refusal;
use crate::platform::{
    db::DbError,
    problem::{FieldError, Problem, ToProblem},
};

/// Everything that can go wrong in the events module; [`ToProblem`] says how each answers.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("event not found")]
    EventNotFound,
    #[error("registration not found")]
    RegistrationNotFound,
    #[error("only the organiser or an admin may do this")]
    NotOrganizer,
    #[error("already registered")]
    AlreadyRegistered,
    #[error("event is {0}")]
    RegistrationClosed(&'static str),
    #[error("event is cancelled")]
    EventCancelled,
    #[error("capacity below seats taken")]
    CapacityBelowSeatsTaken { seats_taken: i32 },
    #[error("the account of this token no longer exists")]
    AccountGone,
    #[error("users module unavailable: {0}")]
    UsersUnavailable(String),
    /// The users module refused this module's call: the deployment is misconfigured (a wrong
    /// service credential, say). A bug to fix, not an outage to wait out.
    #[error("users module refused the call: {0}")]
    UsersRejected(String),
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored row that does not read back (an id that is no UUID, an unknown status): a bug
    /// or a damaged database, never passed off as a value.
    #[error("corrupt {table} row {key}: {why}")]
    CorruptRow {
        table: &'static str,
        key: String,
        why: String,
    },
}

impl From<Refusal> for EventsError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(errors) => EventsError::Validation(errors),
            Refusal::EventCancelled => EventsError::EventCancelled,
            Refusal::CapacityBelowSeatsTaken { seats_taken } => {
                EventsError::CapacityBelowSeatsTaken { seats_taken }
            }
            Refusal::RegistrationClosed(why) => EventsError::RegistrationClosed(why),
        }
    }
}

impl From<diesel::result::Error> for EventsError {
    fn from(err: diesel::result::Error) -> Self {
        EventsError::Db(DbError::Query(err))
    }
}

impl ToProblem for EventsError {
    fn to_problem(&self) -> Problem {
        let conflict = |code, detail: String| Problem::new(StatusCode::CONFLICT, code, detail);
        match self {
            EventsError::Validation(errors) => Problem::validation(errors.clone()),
            EventsError::EventNotFound => Problem::not_found("no such event"),
            EventsError::RegistrationNotFound => {
                Problem::not_found("you are not registered for this event")
            }
            EventsError::NotOrganizer => {
                Problem::forbidden("only the event's organiser or an admin may do this")
            }
            EventsError::AlreadyRegistered => conflict(
                "already-registered",
                "you are already registered for this event".into(),
            ),
            EventsError::RegistrationClosed(why) => conflict(
                "registration-closed",
                format!("registration is closed: the event is {why}"),
            ),
            EventsError::EventCancelled => conflict(
                "event-cancelled",
                "a cancelled event can not be changed".into(),
            ),
            EventsError::CapacityBelowSeatsTaken { seats_taken } => conflict(
                "capacity-below-seats-taken",
                format!("capacity can not be lowered below the {seats_taken} seats already taken"),
            ),
            EventsError::AccountGone => {
                Problem::unauthorized("the account of this access token no longer exists")
            }
            EventsError::UsersUnavailable(why) => {
                tracing::warn!(%why, "users module unavailable");
                Problem::unavailable("the users module is unavailable", 5)
            }
            EventsError::Problem(problem) => problem.clone(),
            EventsError::Db(err) if err.is_unavailable() => {
                tracing::error!(error = %err, "database unavailable");
                Problem::unavailable("the events module's database is unavailable", 5)
            }
            EventsError::Db(_) | EventsError::CorruptRow { .. } | EventsError::UsersRejected(_) => {
                tracing::error!(error = %self, "events module failure");
                Problem::internal()
            }
        }
    }
}

crate::problem_response!(EventsError);
