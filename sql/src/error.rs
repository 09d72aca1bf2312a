//! Errors of the `ibarrow-sql` crate.

use thiserror::Error;

/// Why a remote statement cannot be rendered.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// A name that no quoting makes safe in a statement, such as one holding NUL.
    #[error(
        "the name `{identifier}` cannot be used in a remote statement because {reason}; \
         rename the remote object or leave it out of the query"
    )]
    InvalidIdentifier {
        /// The name, with its special characters escaped for display.
        identifier: String,
        /// Why it is refused, phrased to follow "because".
        reason: &'static str,
    },
    /// A plan shape the remote renderer does not take; the caller runs it locally instead.
    #[error("this part of the plan cannot be sent to the database as one statement: {0}")]
    NotRemote(String),
    /// A setting the database cannot honour; the message says what to use instead.
    #[error("{0}")]
    Unsupported(String),
    /// A native statement that may write, sent to a source that is not writable.
    #[error("{0}")]
    NotReadOnly(String),
}
