//! Password hashes: argon2id in the PHC string format (the `argon2` crate). Checking one takes
//! tens of milliseconds by design, so it runs on the verifier thread, never on a shard.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;

/// An argon2id hash of `password` with `salt` (16 fresh random bytes: the caller draws
/// them, this stays pure) and the crate's default parameters (19 MiB, 2 passes: OWASP's
/// recommendation).
pub fn hash(password: &str, salt: &[u8; 16]) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(salt)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// Whether `phc` is an argon2id hash this gateway can check (for the configuration).
pub fn is_argon2id(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| h.algorithm.as_str() == "argon2id")
}

/// Whether `password` matches `phc`. With `None` (no such user) a fixed hash is checked
/// instead, so the answer takes as long as for a real user, and is false.
pub fn verify(password: &str, phc: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let (phc, real) = match phc {
        Some(p) => (p, true),
        None => (
            DUMMY
                .get_or_init(|| hash("not a password of anyone", &[7; 16]).unwrap_or_default())
                .as_str(),
            false,
        ),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}
