//! Why a call to a module in another process failed.

/// Why a call to a module in another process failed. A module's error type converts from it
/// (`impl From<CallError> for MyError`), keeping the two cases apart.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Down, timing out, answering 5xx, or the circuit is open: worth a `503` to the caller, and
    /// a retry later.
    #[error("{service} unavailable: {why}")]
    Unavailable {
        /// The module called.
        service: &'static str,
        /// What went wrong, for the logs.
        why: String,
    },
    /// The other side refused the call (a 4xx: a wrong credential, a request it could not
    /// read): a bug or a misconfiguration on this side, which retrying will not mend.
    #[error("{service} refused the call with {status}: {body}")]
    Rejected {
        /// The module called.
        service: &'static str,
        /// The HTTP status of the refusal.
        status: u16,
        /// What the other side said, for the logs.
        body: String,
    },
}

impl CallError {
    /// Whether the other side refused the call rather than being unreachable.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CallError::Rejected { .. })
    }
}
