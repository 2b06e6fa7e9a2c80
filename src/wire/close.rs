//! Why the server closes a WebSocket, as named reasons with their close codes (RFC 6455
//! §7.4 and the protocol's own 4001): callers say *why*, never a bare number.

use tungstenite::protocol::frame::coding::CloseCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// Another connection took over this `client_id` (4001 `replaced`).
    Replaced,
    /// The server is stopping (1001).
    Shutdown,
    /// Nothing was received for the idle timeout (1001).
    IdleTimeout,
    /// Over the outbound budget for too long (1008).
    TooSlow,
    /// Handling this connection's input failed inside the server (1011); the shard and its
    /// other connections carry on.
    InternalError,
    /// Kept sending far over its message rate after being told (1008).
    RateLimited,
    /// The access token expired and anonymous clients may do nothing (4401: like HTTP 401,
    /// log in again and reconnect).
    TokenExpired,
    /// The connection's login was ended (logout, refresh-token reuse) and anonymous clients
    /// may do nothing (4401).
    LoginRevoked,
    /// Another user's connection took its `client_id` first (1008): takeover is only for
    /// the same user.
    ClientIdTaken,
}

impl Disconnect {
    pub fn code(self) -> CloseCode {
        match self {
            Disconnect::Replaced => CloseCode::Library(4001),
            Disconnect::Shutdown | Disconnect::IdleTimeout => CloseCode::Away,
            Disconnect::TooSlow | Disconnect::RateLimited | Disconnect::ClientIdTaken => {
                CloseCode::Policy
            }
            Disconnect::TokenExpired | Disconnect::LoginRevoked => CloseCode::Library(4401),
            Disconnect::InternalError => CloseCode::Error,
        }
    }

    /// Whether the peer has shown it is not listening (silent for the idle timeout, or not
    /// reading): its close reply is not worth the usual wait.
    pub fn peer_unresponsive(self) -> bool {
        matches!(self, Disconnect::IdleTimeout | Disconnect::TooSlow)
    }

    /// The close frame's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            Disconnect::Replaced => "replaced",
            Disconnect::Shutdown => "server shutting down",
            Disconnect::IdleTimeout => "idle timeout",
            Disconnect::TooSlow => "client too slow",
            Disconnect::InternalError => "internal error",
            Disconnect::RateLimited => "message rate limit exceeded",
            Disconnect::TokenExpired => "token expired",
            Disconnect::LoginRevoked => "login revoked",
            Disconnect::ClientIdTaken => "client_id belongs to another user",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(u16::from(Disconnect::Replaced.code()), 4001);
        assert_eq!(u16::from(Disconnect::Shutdown.code()), 1001);
        assert_eq!(u16::from(Disconnect::IdleTimeout.code()), 1001);
        assert_eq!(u16::from(Disconnect::TooSlow.code()), 1008);
        assert_eq!(u16::from(Disconnect::InternalError.code()), 1011);
        assert_eq!(u16::from(Disconnect::TokenExpired.code()), 4401);
    }
}
