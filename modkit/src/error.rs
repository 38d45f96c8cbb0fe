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

/// Declares the error type of a module's interface: `Unavailable` (the module, or its process,
/// could not answer: worth a `503`) and `Rejected` (its process refused the call: a
/// misconfiguration, not an outage), each with a message for the logs, converting from
/// [`CallError`] so the generated client keeps the two apart.
///
/// ```
/// modkit::interface_error!(
///     /// Why a `Greetings` call failed.
///     pub GreetingsError, "greetings module"
/// );
/// let refused = modkit::CallError::Rejected { service: "greetings", status: 401, body: String::new() };
/// assert!(matches!(GreetingsError::from(refused), GreetingsError::Rejected(_)));
/// ```
#[macro_export]
macro_rules! interface_error {
    ($(#[$meta:meta])* $vis:vis $name:ident, $module:literal) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {
            /// The module could not answer (its database, or its process, is down).
            Unavailable(String),
            /// The module's process refused the call (a wrong service credential, say): a
            /// misconfiguration of this deployment, not an outage.
            Rejected(String),
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    Self::Unavailable(why) => write!(f, "{} unavailable: {}", $module, why),
                    Self::Rejected(why) => write!(f, "{} refused the call: {}", $module, why),
                }
            }
        }

        impl ::std::error::Error for $name {}

        impl From<$crate::CallError> for $name {
            fn from(error: $crate::CallError) -> Self {
                if error.is_rejected() {
                    Self::Rejected(error.to_string())
                } else {
                    Self::Unavailable(error.to_string())
                }
            }
        }
    };
}
