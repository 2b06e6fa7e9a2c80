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

    let t = login(&a, "vic", T0, random(1));
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
    let t = login(&a, "alice", T0, random(2));
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

/// A login as the handler makes it, with Redis's part taken as done (nothing ended).
fn login(a: &Auth, user: &str, now: i64, r: [u8; 32]) -> Tokens {
    let (job, pending) = a
        .start_login(user, ip(), now, r)
        .expect("a configured user");
    assert_eq!((job.user.as_str(), job.max_total), (user, 10_000));
    assert_eq!(job.token, format!("rt_{}.{}", job.family, hex(&r[12..])));
    a.logged_in(pending, &[], now)
}

#[test]
fn logins_refresh_within_their_family_and_a_reuse_ends_it_here_at_once() {
    let a = auth(AnonymousRole::Viewer);
    assert!(a.start_login("nobody", ip(), T0, random(1)).is_none());
    let t1 = login(&a, "alice", T0, random(3));
    let family = refresh::family_in(&t1.refresh_token).unwrap().to_string();
    let (job, pending) = a.refresh(&t1.refresh_token, T0 + 1000, random(4)).unwrap();
    assert_eq!(
        (job.family.as_str(), job.token.as_str()),
        (family.as_str(), t1.refresh_token.as_str())
    );
    let t2 = a.refreshed(pending, Ok("alice".into()), T0 + 1000).unwrap();
    assert_eq!(t2.refresh_token, job.new_token);
    assert_eq!(refresh::family_in(&t2.refresh_token), Some(family.as_str()));
    assert!(a.authenticate(Some(&t2.access_token), T0 + 2000).is_ok());
    // Redis says the old token was used before: the login ends here without waiting for the log.
    let before = a.revocations();
    let (_, pending) = a.refresh(&t1.refresh_token, T0 + 3000, random(5)).unwrap();
    let e = a
        .refreshed(pending, Err(refresh::RefreshError::Reused), T0 + 3000)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.details.contains("already used"), "{e}");
    assert!(a.revocations() > before);
    assert!(a.authenticate(Some(&t2.access_token), T0 + 4000).is_err());
    let e = a
        .refresh(&t2.refresh_token, T0 + 4000, random(6))
        .unwrap_err();
    assert!(
        e.details.contains("revoked"),
        "known ended: not even asked: {e}"
    );
    for bad in ["rt_nope", "rt_.x", "rt_a-b.x", "x", ""] {
        assert!(a.refresh(bad, T0, random(7)).is_err(), "{bad}");
        assert!(a.logout(Some(bad), None, T0).is_none(), "{bad}");
    }
    // A user removed from the configuration cannot refresh.
    let (_, pending) = a
        .refresh(
            &login(&a, "vic", T0, random(8)).refresh_token,
            T0,
            random(9),
        )
        .unwrap();
    assert!(a.refreshed(pending, Ok("gone".into()), T0).is_err());
}

#[test]
fn a_logout_names_its_login_and_an_ended_login_is_refused() {
    let a = auth(AnonymousRole::Viewer);
    let t = login(&a, "alice", T0, random(3));
    let p = a.authenticate(Some(&t.access_token), T0).unwrap();
    let job = a.logout(None, p.family.as_deref(), T0).unwrap();
    assert_eq!(
        (job.family.as_str(), job.token.as_deref()),
        (p.family.as_deref().unwrap(), None)
    );
    let job = a.logout(Some(&t.refresh_token), None, T0).unwrap();
    assert_eq!(job.token.as_deref(), Some(t.refresh_token.as_str()));
    assert!(a.logout(None, None, T0).is_none());
    a.ended_here(&job.family, T0);
    let e = a.authenticate(Some(&t.access_token), T0 + 1).unwrap_err();
    assert!(e.details.contains("revoked"), "{e}");
    // Another gateway's revocation read from the log holds the same way; a stale one not.
    let t = login(&a, "vic", T0, random(4));
    let fam = refresh::family_in(&t.refresh_token).unwrap().to_string();
    a.import_revocations(&[(fam.clone(), T0 - 1)], T0);
    assert!(a.authenticate(Some(&t.access_token), T0).is_ok());
    a.import_revocations(&[(fam, T0 + 1000)], T0);
    assert!(a.authenticate(Some(&t.access_token), T0).is_err());
}

#[test]
fn failed_logins_are_limited_per_address_and_user() {
    let a = auth(AnonymousRole::Viewer);
    let check = a.check_login(ip(), "alice");
    assert_eq!(check.keys, ["ip:192.0.2.1", "user:alice"]);
    // Unknown names count only under the address (they cannot grow the counters).
    assert_eq!(a.check_login(ip(), "mallory").keys, ["ip:192.0.2.1"]);
    let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
    assert_eq!(a.check_login(v6, "x").keys, ["ip:2001:db8:1:2::/64"]);
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(a.check_login(mapped, "x").keys, ["ip:192.0.2.1"]);
    let record = a.login_failed(ip(), "alice");
    assert_eq!((record.keys.len(), record.window_ms), (2, 60_000));
    let seen = |ip: (u32, i64), user: (u32, i64), known| jobs::Failures {
        counts: vec![ip, user],
        known_address: known,
    };
    assert!(a.login_gate(&seen((4, 50_000), (4, 50_000), false)).is_ok());
    let e = a
        .login_gate(&seen((5, 58_500), (0, -2), false))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert!(e.details.contains("59 s"), "{e}");
    assert!(
        a.login_gate(&seen((0, -2), (9, 1000), false)).is_err(),
        "the user is blocked"
    );
    // From an address the user logged in from before, only the address's own failures count.
    assert!(a.login_gate(&seen((0, -2), (9, 1000), true)).is_ok());
    assert!(a.login_gate(&seen((5, 1000), (0, -2), true)).is_err());
    assert!(
        a.login_gate(&seen((5, -2), (0, -2), false)).is_ok(),
        "window over"
    );
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
