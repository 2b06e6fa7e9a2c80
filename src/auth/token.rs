//! Access tokens: JWTs signed with HS256 (the `jsonwebtoken` crate; no hand-rolled crypto).
//! Only HS256 is accepted — `alg: none` and every other algorithm are refused — and the
//! expiry is checked against `now`, not the clock.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What an access token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// The role when issued (informative: the configured role is what counts).
    pub role: String,
    /// The token family (one login and its refreshes).
    pub fam: String,
    /// Issued at / expires at, Unix seconds.
    pub iat: i64,
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug)]
pub enum TokenError {
    Expired,
    /// Bad signature, wrong algorithm, malformed — kept with the library's reason.
    Invalid(jsonwebtoken::errors::Error),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Expired => write!(f, "the access token has expired; refresh it"),
            TokenError::Invalid(e) => write!(f, "the access token is not valid ({e})"),
        }
    }
}

impl std::error::Error for TokenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenError::Invalid(e) => Some(e),
            TokenError::Expired => None,
        }
    }
}

pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the caller's `now`, so tests and the pure core control it.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // Signing HS256 with a valid key cannot fail; an empty string would be refused later.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_default()
    }

    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Invalid(
                jsonwebtoken::errors::ErrorKind::InvalidToken.into(),
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(TokenError::Invalid)?;
        if data.claims.exp.saturating_mul(1000) <= now {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}
