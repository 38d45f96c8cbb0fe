//! The notifications module's one error type and its mapping to problem details.

use crate::platform::{
    db::DbError,
    problem::{Problem, ToProblem},
};

/// Everything that can go wrong in the notifications module.
#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    #[error("no such notification")]
    NotFound,
    #[error("unknown or spent unsubscribe link")]
    UnknownUnsubscribe,
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored row that does not read back: a bug or a damaged database.
    #[error("corrupt {table} row: {why}")]
    CorruptRow { table: &'static str, why: String },
}

impl From<diesel::result::Error> for NotificationsError {
    fn from(err: diesel::result::Error) -> Self {
        NotificationsError::Db(DbError::Query(err))
    }
}

impl ToProblem for NotificationsError {
    fn to_problem(&self) -> Problem {
        match self {
            NotificationsError::NotFound => Problem::not_found("no such notification"),
            NotificationsError::UnknownUnsubscribe => {
                Problem::not_found("this unsubscribe link is not one this server sent")
            }
            NotificationsError::Problem(problem) => problem.clone(),
            NotificationsError::Db(err) if err.is_unavailable() => {
                tracing::error!(error = %err, "database unavailable");
                Problem::unavailable("the notifications module's database is unavailable", 5)
            }
            NotificationsError::Db(_) | NotificationsError::CorruptRow { .. } => {
                tracing::error!(error = %self, "notifications module failure");
                Problem::internal()
            }
        }
    }
}

crate::problem_response!(NotificationsError);
