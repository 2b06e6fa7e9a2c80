use super::*;
use crate::config::{AnonymousRole, AuthConfig, UserConfig};
use std::sync::OnceLock;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const T0: i64 = 1_760_000_000_000;

/// Hashing is slow by design: one hash for all tests.
fn hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| password::hash("pw-alice", &[1; 16]).unwrap())
}

fn auth(anonymous: AnonymousRole) -> Auth {
    let cfg = AuthConfig {
        anonymous_role: anonymous,
        users: vec![
            UserConfig {
                username: "alice".into(),
                password_hash: hash().into(),
                role: Role::Operator,
            },
            UserConfig {
                username: "vic".into(),
                password_hash: hash().into(),
                role: Role::Viewer,
            },
        ],
        ..AuthConfig::default()
    };
    Auth::new(&cfg, SECRET)
}

fn ip() -> IpAddr {
    "192.0.2.1".parse().unwrap()
}

fn random(n: u8) -> [u8; 32] {
    [n; 32]
}

#[test]
fn passwords() {
    assert!(password::is_argon2id(hash()));
    assert!(!password::is_argon2id("$2b$12$abcdefghijklmnopqrstuv"));
    assert!(password::verify("pw-alice", Some(hash())));
    assert!(!password::verify("wrong", Some(hash())));
    assert!(
        !password::verify("pw-alice", None),
        "no user: false, after the same work"
    );
}

#[test]
fn roles_and_anonymous() {
    let a = auth(AnonymousRole::Viewer);
    let p = a.authenticate(None, T0).unwrap();
    assert!(p.is_anonymous());
    assert!(p.require(Role::Viewer).is_ok());
    let e = p.require(Role::Operator).unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::Unauthorized,
        "anonymous: log in may help"
    );
    let none = auth(AnonymousRole::None).authenticate(None, T0).unwrap();
    assert_eq!(
        none.require(Role::Viewer).unwrap_err().code,
        ErrorCode::Unauthorized
    );

    let t = a.login("vic", true, ip(), T0, random(1)).unwrap();
    let p = a.authenticate(Some(&t.access_token), T0 + 1000).unwrap();
    assert_eq!(p.user.as_deref(), Some("vic"));
    assert!(p.require(Role::Viewer).is_ok());
    let e = p.require(Role::Operator).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.details.contains("operator"), "{e}");
}

#[test]
fn access_tokens_expire_and_cannot_be_forged() {
    let a = auth(AnonymousRole::Viewer);
    let t = a.login("alice", true, ip(), T0, random(2)).unwrap();
    assert_eq!(t.expires_in, 900);
    assert!(a.authenticate(Some(&t.access_token), T0 + 899_000).is_ok());
    let e = a
        .authenticate(Some(&t.access_token), T0 + 900_000)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.details.contains("expired"), "{e}");

    // Tampered payload: the signature no longer matches.
    let parts: Vec<&str> = t.access_token.split('.').collect();
    let mut payload = parts[1].to_string();
    payload.replace_range(2..3, if &payload[2..3] == "A" { "B" } else { "A" });
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    assert!(a.authenticate(Some(&tampered), T0).is_err());

    // alg: none, and HS256 under another key.
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let claims = token::Claims {
        sub: "alice".into(),
        role: "admin".into(),
        fam: "f".into(),
        iat: T0 / 1000,
        exp: T0 / 1000 + 600,
    };
    let b64 = |s: &str| {
        // base64url without padding, as JWTs use.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::to_string(&claims).unwrap())
    );
    assert!(a.authenticate(Some(&none), T0).is_err(), "alg none");
    let other_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"another secret another secret 32"),
    )
    .unwrap();
    assert!(a.authenticate(Some(&other_key), T0).is_err(), "foreign key");
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert!(a.authenticate(Some(&hs512), T0).is_err(), "wrong algorithm");
    assert!(a.authenticate(Some("garbage"), T0).is_err());
    assert!(a.authenticate(Some(&"x".repeat(10_000)), T0).is_err());
}

#[test]
fn refresh_rotates_and_reuse_revokes_the_family() {
    let a = auth(AnonymousRole::Viewer);
    let t1 = a.login("alice", true, ip(), T0, random(3)).unwrap();
    let t2 = a.refresh(&t1.refresh_token, T0 + 1000, random(4)).unwrap();
    assert_ne!(t2.refresh_token, t1.refresh_token);
    assert!(a.authenticate(Some(&t2.access_token), T0 + 2000).is_ok());
    // The old token again: refused, and the family (t2 included) is revoked.
    let e = a
        .refresh(&t1.refresh_token, T0 + 3000, random(5))
        .unwrap_err();
    assert!(e.details.contains("already used"), "{e}");
    assert!(a.refresh(&t2.refresh_token, T0 + 4000, random(6)).is_err());
    let e = a
        .authenticate(Some(&t2.access_token), T0 + 5000)
        .unwrap_err();
    assert!(e.details.contains("revoked"), "{e}");
    // Another login is unaffected.
    let t3 = a.login("alice", true, ip(), T0, random(7)).unwrap();
    assert!(a.authenticate(Some(&t3.access_token), T0 + 5000).is_ok());
    a.logout_refresh(&t3.refresh_token, T0 + 6000).unwrap();
    // A second logout with it revokes nothing and says so.
    assert_eq!(
        a.logout_refresh(&t3.refresh_token, T0 + 6000)
            .unwrap_err()
            .code,
        ErrorCode::Unauthorized
    );
    assert!(a.authenticate(Some(&t3.access_token), T0 + 7000).is_err());
    assert!(a.refresh(&t3.refresh_token, T0 + 7000, random(8)).is_err());
    assert!(a.refresh("rt_nope", T0, random(9)).is_err());
}

#[test]
fn refresh_tokens_expire_and_are_bounded() {
    let mut s = refresh::Store::new(3);
    let t = s.issue("f1", "alice", T0, 1000, &[1; 16]);
    assert_eq!(s.redeem(&t, T0 + 1000), Err(refresh::RefreshError::Expired));
    for i in 0..10u8 {
        s.issue(
            &format!("g{i}"),
            "alice",
            T0 + i64::from(i),
            100_000,
            &[i; 16],
        );
    }
    assert_eq!(s.len(), 3, "the oldest logins made room");
    assert!(s.is_revoked("g0") && !s.is_revoked("g9"));
}

#[test]
fn refreshing_one_login_many_times_keeps_one_token_and_evicts_nobody() {
    let a = auth(AnonymousRole::Viewer);
    let vic = a.login("vic", true, ip(), T0, random(1)).unwrap();
    let mut t = a.login("alice", true, ip(), T0, random(2)).unwrap();
    // 10,100 refreshes: more than auth.max_refresh_tokens.
    for i in 0..10_100i64 {
        let mut r = random(3);
        r[..8].copy_from_slice(&i.to_be_bytes());
        t = a.refresh(&t.refresh_token, T0 + i, r).unwrap();
    }
    assert!(a.authenticate(Some(&vic.access_token), T0 + 20_000).is_ok());
    let vic2 = a
        .refresh(&vic.refresh_token, T0 + 20_000, random(4))
        .unwrap();
    a.logout_refresh(&vic2.refresh_token, T0 + 20_001).unwrap();
    assert!(a
        .authenticate(Some(&vic2.access_token), T0 + 20_002)
        .is_err());
}

#[test]
fn a_user_with_many_logins_ends_only_their_own_oldest() {
    let mut s = refresh::Store::with_per_user(1000, 3);
    let other = s.issue("o1", "bob", T0, 100_000, &[9; 16]);
    for i in 0..5u8 {
        s.issue(
            &format!("a{i}"),
            "alice",
            T0 + i64::from(i),
            100_000,
            &[i; 16],
        );
    }
    assert_eq!(s.len(), 4, "bob's one and alice's newest three");
    assert!(s.is_revoked("a0") && s.is_revoked("a1") && !s.is_revoked("a4"));
    assert!(s.redeem(&other, T0 + 10).is_ok());
    // A full store ends the oldest login of whoever holds the most: alice, not bob.
    let mut s = refresh::Store::with_per_user(4, 100);
    s.issue("o1", "bob", T0, 100_000, &[9; 16]);
    for i in 0..6u8 {
        s.issue(
            &format!("a{i}"),
            "alice",
            T0 + 1 + i64::from(i),
            100_000,
            &[i; 16],
        );
    }
    assert!(!s.is_revoked("o1") && s.family_of("rt_o1.x").is_some());
}

#[test]
fn failed_logins_are_limited_per_address_and_user() {
    let a = auth(AnonymousRole::Viewer);
    for _ in 0..5 {
        assert!(a.login_permitted(ip(), "alice", T0).is_ok());
        assert!(a.login("alice", false, ip(), T0, random(1)).is_err());
    }
    let e = a.login_permitted(ip(), "alice", T0 + 1000).unwrap_err();
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert!(e.details.contains("59 s"), "{e}");
    // Another user from the same address: blocked (the address is); the same user from
    // another address: blocked (the user is); both clear when the window passes.
    assert!(a.login_permitted(ip(), "vic", T0).is_err());
    assert!(a
        .login_permitted("192.0.2.99".parse().unwrap(), "alice", T0)
        .is_err());
    assert!(a
        .login_permitted("192.0.2.99".parse().unwrap(), "vic", T0)
        .is_ok());
    assert!(a.login_permitted(ip(), "alice", T0 + 60_000).is_ok());
}

#[test]
fn bearer_header() {
    assert_eq!(Auth::bearer(Some("Bearer abc")), Some("abc"));
    assert_eq!(Auth::bearer(Some("bearer  abc ")), Some("abc"));
    assert_eq!(Auth::bearer(Some("Basic abc")), None);
    assert_eq!(Auth::bearer(None), None);
    assert!(valid_username("alice.o@site-1"));
    assert!(!valid_username("a b"));
}
