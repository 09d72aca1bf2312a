//! Errors of the network service and how each protocol reports them: an HTTP status with a
//! JSON body `{"error": {"kind", "message"}}`, or a gRPC status for Flight SQL.

use std::time::Duration;

use http::StatusCode;
use ibarrow::ErrorKind;

/// What went wrong with a request to the server, as both listeners report it.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The `[server]` or `[users]` section cannot be used as written.
    #[error("configuration: {0}")]
    Config(String),
    /// No credentials, or wrong or expired ones.
    #[error("{0}")]
    Unauthenticated(String),
    /// Refused before any login: a cross-site request, or a host name other than a loopback
    /// one on a server without `[users]`.
    #[error("{0}")]
    Forbidden(String),
    /// A user holds as many planned queries, prepared statements or tokens as allowed.
    #[error("{0}")]
    TooMany(String),
    /// The request cannot be read or makes no sense as sent.
    #[error("{0}")]
    BadRequest(String),
    /// No such endpoint, or an unknown or expired ticket or prepared statement.
    #[error("{0}")]
    NotFound(String),
    /// A request body over `[server] max_body_bytes` (the limit, in bytes), or a truncated one.
    #[error(
        "the request body is larger than {0} bytes or was cut off; send less or raise \
         [server] max_body_bytes"
    )]
    PayloadTooLarge(usize),
    /// The server is stopping and takes no more work.
    #[error("the server is shutting down; retry on another instance or later")]
    ShuttingDown,
    /// The query was cancelled by the client.
    #[error("{0}")]
    Cancelled(String),
    /// The request ran past `[server] request_timeout_secs` (the limit it had).
    #[error(
        "the request took longer than {0:?}; narrow the query or raise [server] request_timeout_secs"
    )]
    RequestTimeout(Duration),
    /// A fault of the server itself, such as a poisoned lock or no random bytes.
    #[error("{0}")]
    Internal(String),
    /// An error of the query engine; its kind decides the status.
    #[error(transparent)]
    Engine(#[from] ibarrow::Error),
    /// An I/O error of the service, such as a socket failing.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<datafusion::error::DataFusionError> for ServerError {
    fn from(err: datafusion::error::DataFusionError) -> Self {
        ServerError::Engine(err.into())
    }
}

impl From<arrow::error::ArrowError> for ServerError {
    fn from(err: arrow::error::ArrowError) -> Self {
        ServerError::Engine(datafusion::error::DataFusionError::from(err).into())
    }
}

impl ServerError {
    /// The `kind` of the JSON error body: the engine's kinds, and the service's own.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerError::Config(_) => "config",
            ServerError::Unauthenticated(_) => "unauthenticated",
            ServerError::Forbidden(_) => "forbidden",
            ServerError::TooMany(_) => "rate_limit",
            ServerError::BadRequest(_) | ServerError::PayloadTooLarge(_) => "input",
            ServerError::NotFound(_) => "not_found",
            ServerError::ShuttingDown => "unavailable",
            ServerError::Cancelled(_) => "cancelled",
            ServerError::RequestTimeout(_) => "timeout",
            ServerError::Internal(_) | ServerError::Io(_) => "internal",
            ServerError::Engine(err) => err.kind().as_str(),
        }
    }

    /// When a rate limit says to come back.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServerError::Engine(ibarrow::Error::RateLimited { retry_after, .. }) => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// The HTTP status of the error answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::Config(_) | ServerError::Internal(_) | ServerError::Io(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ServerError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ServerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServerError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            // nginx's "client closed request" has no standard code; the client is gone anyway.
            ServerError::Cancelled(_) => StatusCode::CONFLICT,
            ServerError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ServerError::Engine(err) => match err.kind() {
                ErrorKind::Input | ErrorKind::Sql | ErrorKind::Config => StatusCode::BAD_REQUEST,
                ErrorKind::RateLimit => StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::AccessDenied => StatusCode::FORBIDDEN,
                ErrorKind::Connection | ErrorKind::CircuitOpen => StatusCode::BAD_GATEWAY,
                ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::Arrow => StatusCode::UNPROCESSABLE_ENTITY,
                ErrorKind::Memory => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The JSON body of an HTTP error answer.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"kind": self.kind(), "message": self.to_string()}})
    }
}

impl From<ServerError> for tonic::Status {
    fn from(err: ServerError) -> Self {
        use tonic::Code;
        let code = match &err {
            ServerError::Unauthenticated(_) => Code::Unauthenticated,
            ServerError::Forbidden(_) => Code::PermissionDenied,
            ServerError::TooMany(_) => Code::ResourceExhausted,
            ServerError::BadRequest(_) | ServerError::PayloadTooLarge(_) => Code::InvalidArgument,
            ServerError::NotFound(_) => Code::NotFound,
            ServerError::ShuttingDown => Code::Unavailable,
            ServerError::Cancelled(_) => Code::Cancelled,
            ServerError::RequestTimeout(_) => Code::DeadlineExceeded,
            ServerError::Config(_) | ServerError::Internal(_) | ServerError::Io(_) => {
                Code::Internal
            }
            ServerError::Engine(engine) => match engine.kind() {
                ErrorKind::Input | ErrorKind::Sql | ErrorKind::Config | ErrorKind::Arrow => {
                    Code::InvalidArgument
                }
                ErrorKind::RateLimit => Code::ResourceExhausted,
                ErrorKind::AccessDenied => Code::PermissionDenied,
                ErrorKind::Connection | ErrorKind::CircuitOpen => Code::Unavailable,
                ErrorKind::Timeout => Code::DeadlineExceeded,
                ErrorKind::Memory => Code::ResourceExhausted,
                ErrorKind::Internal => Code::Internal,
            },
        };
        tonic::Status::new(code, err.to_string())
    }
}
