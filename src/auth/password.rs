//! Password hashes: argon2id in the PHC string format (the `argon2` crate). Checking one takes
//! tens of milliseconds by design, so it runs on the verifier thread, never on a shard.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;

/// An argon2id hash of `password` with a random salt and the crate's default parameters
/// (19 MiB, 2 passes: OWASP's recommendation).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
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
                .get_or_init(|| hash("not a password of anyone").unwrap_or_default())
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
