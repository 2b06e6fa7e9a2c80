//! Client-visible errors: the stable codes of PROTOCOL.md and their HTTP statuses.
//!
//! A code string never changes once shipped: clients branch on it. Messages are for people
//! and may be reworded; `details` names the offending parameter or id.

use crate::json;

/// Stable error codes (PROTOCOL.md §3, §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    InvalidMessage,
    UnknownType,
    InvalidParameter,
    ChannelNotFound,
    Unauthorized,
    Forbidden,
    RateLimited,
    ControlFailed,
    ServiceUnavailable,
    HistoryUnavailable,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    HeadersTooLarge,
    BadRequest,
    TooManyConnections,
    RequestTimeout,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::InvalidMessage => "INVALID_MESSAGE",
            ErrorCode::UnknownType => "UNKNOWN_TYPE",
            ErrorCode::InvalidParameter => "INVALID_PARAMETER",
            ErrorCode::ChannelNotFound => "CHANNEL_NOT_FOUND",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::ControlFailed => "CONTROL_FAILED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::HistoryUnavailable => "HISTORY_UNAVAILABLE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::HeadersTooLarge => "HEADERS_TOO_LARGE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The message a client sees with this code (its details say what exactly).
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "Invalid JSON",
            ErrorCode::InvalidMessage => "Invalid message",
            ErrorCode::UnknownType => "Unknown message type",
            ErrorCode::InvalidParameter => "Invalid parameter",
            ErrorCode::ChannelNotFound => "Channel not found",
            ErrorCode::Unauthorized => "Authentication required",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::RateLimited => "Rate limited",
            ErrorCode::ControlFailed => "Control failed",
            ErrorCode::ServiceUnavailable => "Service unavailable",
            ErrorCode::HistoryUnavailable => "History unavailable",
            ErrorCode::NotFound => "Not found",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::HeadersTooLarge => "Headers too large",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::TooManyConnections => "Too many connections",
            ErrorCode::RequestTimeout => "Request timeout",
            ErrorCode::InternalError => "Internal error",
        }
    }

    /// This error with `details` naming what was wrong (pingora's `ErrorType` + context):
    /// the title comes from the code.
    pub fn context(self, details: impl Into<String>) -> ApiError {
        ApiError::new(self, self.title(), details)
    }

    /// The HTTP status a REST response with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidMessage
            | ErrorCode::UnknownType
            | ErrorCode::InvalidParameter
            | ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::ChannelNotFound | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::HeadersTooLarge => 431,
            ErrorCode::ControlFailed | ErrorCode::InternalError => 500,
            ErrorCode::ServiceUnavailable
            | ErrorCode::HistoryUnavailable
            | ErrorCode::TooManyConnections => 503,
        }
    }
}

/// An error as a client sees it: code, human message, details naming what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: String,
}

impl ApiError {
    /// Private: a title comes from its code ([`ErrorCode::context`]), or names the parameter.
    fn new(code: ErrorCode, message: impl Into<String>, details: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: details.into(),
        }
    }

    /// 400 `INVALID_PARAMETER` naming the parameter.
    pub fn invalid_parameter(name: &str, expected: &str) -> Self {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("Invalid parameter '{name}'"),
            format!("{name} {expected}"),
        )
    }

    pub fn channel_not_found(id: impl std::fmt::Display) -> Self {
        ApiError::new(
            ErrorCode::ChannelNotFound,
            "Channel not found",
            format!("Channel {id} not found"),
        )
    }

    /// Appends the `{"code","message","details"}` object.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        json::write_key(out, "code");
        json::write_str(out, self.code.as_str());
        out.push(b',');
        json::write_key(out, "message");
        json::write_str(out, &self.message);
        out.push(b',');
        json::write_key(out, "details");
        json::write_str(out, &self.details);
        out.push(b'}');
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.code.as_str(),
            self.message,
            self.details
        )
    }
}

impl std::error::Error for ApiError {}

/// Why work asked of a dependency (a Redis job, the password verifier, the history store)
/// produced no result — sorted once, where the work ran, so every handler maps the same
/// failure the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// No connection: the dependency is down (nothing was done).
    Unavailable,
    /// Its queue was full or it has stopped (nothing was done).
    Busy,
    /// No answer before the asker's deadline (it may still be done).
    TimedOut,
    /// It answered with a refusal: Redis's (or the library's) error reply, `CODE detail`.
    Refused(String),
    /// It failed otherwise (an unreadable reply, a broken query), in words.
    Failed(String),
}

impl Upstream {
    /// The 503 a client gets: `what` could not be done, and why.
    pub fn unavailable(&self, what: &str) -> ApiError {
        ErrorCode::ServiceUnavailable.context(format!("{what} ({self})"))
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Unavailable => f.write_str("Redis unavailable"),
            Upstream::Busy => f.write_str("the gateway is busy"),
            Upstream::TimedOut => f.write_str("no answer in time"),
            Upstream::Refused(why) | Upstream::Failed(why) => f.write_str(why),
        }
    }
}

/// A configuration that cannot run, and why (names the setting).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration error: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A failure of the shell's own work (starting a process, a small client's run): what was
/// being done, and the error underneath kept as the source (pingora's context + cause).
#[derive(Debug)]
pub struct Failed {
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Failed {
    pub fn new(context: impl Into<String>) -> Failed {
        Failed {
            context: context.into(),
            source: None,
        }
    }

    /// `context` failed because of `source`.
    pub fn because(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Failed {
        Failed {
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}: {s}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
