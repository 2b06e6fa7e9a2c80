//! Who a request or a WebSocket acts as, and the roles that say what they may do.

use crate::error::{ApiError, ErrorCode};
use serde::Deserialize;

/// Roles, each allowing what the one below it does: `viewer` reads REST and subscribes,
/// `operator` also sends control commands, `admin` also writes configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who a request (or a WebSocket connection) acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The logged-in user; `None` for anonymous clients.
    pub user: Option<String>,
    /// What they may do; `None` = nothing (anonymous with `anonymous_role = "none"`).
    pub role: Option<Role>,
    /// The token family (one login): logging out revokes it.
    pub family: Option<String>,
    /// When the access token expires (Unix ms).
    pub expires_ms: Option<i64>,
}

impl Principal {
    pub fn anonymous(role: Option<Role>) -> Principal {
        Principal {
            user: None,
            role,
            family: None,
            expires_ms: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.user.is_none()
    }

    /// The name audit records and takeover checks use.
    pub fn name(&self) -> &str {
        self.user.as_deref().unwrap_or("anonymous")
    }

    /// `Ok` when the principal holds `needed`; else 401 for anonymous clients (logging in
    /// may help) and 403 for users whose role is too low.
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        if self.role.is_some_and(|r| r >= needed) {
            return Ok(());
        }
        Err(if self.is_anonymous() {
            ErrorCode::Unauthorized.context(format!(
                "this needs the {} role; log in (POST /api/auth/login) and send the access token",
                needed.as_str()
            ))
        } else {
            ErrorCode::Forbidden.context(format!(
                "this needs the {} role; user '{}' has {}",
                needed.as_str(),
                self.name(),
                self.role.map_or("no role", Role::as_str)
            ))
        })
    }
}
