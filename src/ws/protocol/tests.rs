//! The protocol rules of PROTOCOL.md §3 without sockets: whole messages, byte for byte.

use super::*;
use crate::fanout::Fanout;
use crate::model::{ChannelId, DataType, Value};
use crate::site::tick::Tick;
use crate::site::{Snapshot, TypeState};
use std::sync::Arc;

/// An Auth whose anonymous clients have `anonymous`, with users alice (operator) and vic
/// (viewer). (The hashes are never checked here: tokens are issued directly.)
fn auth(anonymous: crate::config::AnonymousRole) -> Arc<Auth> {
    use crate::config::{AuthConfig, UserConfig};
    let user = |name: &str, role| UserConfig {
        username: name.into(),
        password_hash: "unused".into(),
        role,
    };
    let cfg = AuthConfig {
        anonymous_role: anonymous,
        users: vec![
            user("alice", crate::auth::Role::Operator),
            user("vic", crate::auth::Role::Viewer),
        ],
        ..AuthConfig::default()
    };
    Arc::new(Auth::new(&cfg, &[9; 32]))
}

const LIMITS: cmd::Limits = cmd::Limits {
    max_channels: 100,
    max_depth: 32,
    messages_per_sec: 100,
    message_burst: 100,
    max_in_flight: 16,
};

/// 2025-08-12T10:30:00.123Z
const NOW: i64 = 1_754_994_600_123;
const TS: &str = "2025-08-12T10:30:00.123Z";

/// The seed's site: 1001 with telemetry, 1002 with signals, 2001 with set-point 20.
fn site() -> Fanout {
    let mut snap = Snapshot {
        seq: 42,
        epoch: "e".into(),
        loaded: true,
        ..Snapshot::default()
    };
    let mut put = |ch: u32, t: DataType, pts: &[(u32, &str)]| {
        let points = pts
            .iter()
            .map(|(p, v)| (*p, Value::from_redis(v)))
            .collect();
        let c = snap.channels.entry(ChannelId(ch)).or_default();
        c.types[t.index()] = Some(Arc::new(TypeState::new(1_754_994_000, points)));
    };
    put(1001, DataType::Telemetry, &[(1, "25.6"), (2, "101.3")]);
    put(1002, DataType::Signal, &[(10, "1")]);
    put(2001, DataType::Adjustment, &[(20, "50")]);
    Fanout::new(Arc::new(Tick::new(Arc::new(snap), &[], NOW)), 30_000, 100)
}

fn peer() -> cmd::Peer {
    cmd::Peer {
        client_id: "mobile_app_001".into(),
        source: "192.0.2.7".parse().unwrap(),
    }
}

/// The command a control action asks the feed to queue.
fn submitted(a: &Action) -> &crate::control::ControlRequest {
    let Action::Ask(ask) = a else { panic!("{a:?}") };
    ask.job::<crate::control::jobs::Submit>()
        .expect("a control submit")
        .command()
}

struct Client {
    proto: Protocol,
    fan: Fanout,
}

impl Client {
    fn new() -> Client {
        let mut fan = site();
        fan.add_member(7, true);
        Client {
            proto: Protocol::new(
                7,
                Mode::Gateway,
                64 * 1024,
                LIMITS,
                Principal::anonymous(Some(crate::auth::Role::Operator)),
                auth(crate::config::AnonymousRole::Operator),
                peer(),
            ),
            fan,
        }
    }

    fn send(&mut self, text: &str) -> Vec<Action> {
        let mut out = Vec::new();
        self.proto.on_text(text, NOW, &mut self.fan, &mut out);
        out
    }
}

fn reply(json: &str) -> Action {
    Action::Reply(json.as_bytes().to_vec())
}

/// The payload of a server frame (unmasked, header stripped).
fn payload(f: &[u8]) -> String {
    let skip = match f[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    String::from_utf8(f[skip..].to_vec()).unwrap()
}

#[test]
fn connected_comes_first() {
    let c = Client::new();
    assert_eq!(
        c.proto.connected("dashboard_001", Audience::General, NOW),
        Some(reply(&format!(
            r#"{{"type":"connected","id":"connected_dashboard_001","timestamp":"{TS}","data":{{"client_id":"dashboard_001","data_type":"general","server_time":"{TS}"}}}}"#
        )))
    );
}

#[test]
fn subscribe_acks_then_names_unknown_channels_then_sends_one_snapshot() {
    let mut c = Client::new();
    let out = c.send(
        r#"{"type":"subscribe","id":"sub_001","timestamp":"{时间戳}","data":{"channels":[1001,1002,9999],"data_types":["T","S"],"interval":1000}}"#,
    );
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(
        out[0],
        reply(&format!(
            r#"{{"type":"subscribe_ack","id":"sub_001_ack","timestamp":"{TS}","data":{{"request_id":"sub_001","subscribed":[1001,1002],"failed":[9999],"total":2}}}}"#
        ))
    );
    assert_eq!(
        out[1],
        reply(&format!(
            r#"{{"type":"error","id":"sub_001_error","timestamp":"{TS}","data":{{"code":"CHANNEL_NOT_FOUND","message":"Channel not found","details":"Channel ID 9999 not found","request_id":"sub_001"}}}}"#
        ))
    );
    let Action::Frame(f) = &out[2] else {
        panic!("{:?}", out[2])
    };
    assert_eq!(
        payload(f),
        format!(
            r#"{{"type":"data_batch","id":"batch_42","timestamp":"{TS}","data":{{"updates":[{{"channel_id":1001,"data_type":"T","values":{{"1":25.6,"2":101.3}}}},{{"channel_id":1002,"data_type":"S","values":{{"10":1}}}}]}}}}"#
        )
    );
}

#[test]
fn subscribe_is_additive_and_snapshots_only_what_it_adds() {
    let mut c = Client::new();
    c.send(r#"{"type":"subscribe","id":"a","data":{"channels":[1001],"data_types":["T"]}}"#);
    let out = c.send(r#"{"type":"subscribe","id":"b","data":{"channels":[2001]}}"#);
    assert_eq!(
        out[0],
        reply(&format!(
            r#"{{"type":"subscribe_ack","id":"b_ack","timestamp":"{TS}","data":{{"request_id":"b","subscribed":[2001],"failed":[],"total":2}}}}"#
        ))
    );
    let Action::Frame(f) = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(
        payload(f),
        format!(
            r#"{{"type":"data_update","id":"update_42","timestamp":"{TS}","data":{{"channel_id":2001,"data_type":"A","values":{{"20":50}}}}}}"#
        ),
        "one (channel, type): data_update"
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn only_unknown_channels_get_the_ack_and_the_error_but_no_snapshot() {
    let mut c = Client::new();
    let out = c.send(r#"{"type":"subscribe","id":"s","data":{"channels":[7]}}"#);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        matches!(&out[1], Action::Reply(e) if String::from_utf8_lossy(e).contains("CHANNEL_NOT_FOUND"))
    );
}

#[test]
fn an_invalid_interval_is_an_error_and_changes_nothing() {
    let mut c = Client::new();
    for bad in ["99", "60001", "\"1000\"", "1.5"] {
        let out = c.send(&format!(
            r#"{{"type":"subscribe","id":"s1","data":{{"channels":[1001],"interval":{bad}}}}}"#
        ));
        assert_eq!(
            out,
            vec![reply(&format!(
                r#"{{"type":"error","id":"s1_error","timestamp":"{TS}","data":{{"code":"INVALID_PARAMETER","message":"Invalid parameter 'interval'","details":"interval must be an integer number of ms in 100..=60000","request_id":"s1"}}}}"#
            ))],
            "{bad}"
        );
    }
    assert_eq!(c.fan.group_count(), 0, "nothing was subscribed");
    let out = c.send(r#"{"type":"unsubscribe","id":"u"}"#);
    assert_eq!(
        out,
        vec![reply(&format!(
            r#"{{"type":"unsubscribe_ack","id":"u_ack","timestamp":"{TS}","data":{{"request_id":"u","unsubscribed":[],"failed":[],"total":0}}}}"#
        ))]
    );
}

#[test]
fn unsubscribe_names_what_was_and_was_not_subscribed() {
    let mut c = Client::new();
    c.send(r#"{"type":"subscribe","data":{"channels":[1001,1002]}}"#);
    let out = c.send(r#"{"type":"unsubscribe","id":"u1","data":{"channels":[1002,5]}}"#);
    assert_eq!(
        out,
        vec![reply(&format!(
            r#"{{"type":"unsubscribe_ack","id":"u1_ack","timestamp":"{TS}","data":{{"request_id":"u1","unsubscribed":[1002],"failed":[5],"total":1}}}}"#
        ))]
    );
}

#[test]
fn ping_pong_ids_and_latency() {
    let mut c = Client::new();
    assert_eq!(
        c.send(r#"{"type":"ping","id":"ping_001","timestamp":"2025-08-12T10:30:00.100Z"}"#),
        vec![reply(&format!(
            r#"{{"type":"pong","id":"pong_001","timestamp":"{TS}","data":{{"server_time":"{TS}","latency":23}}}}"#
        ))]
    );
    assert_eq!(
        c.send(r#"{"type":"ping","id":"hb","timestamp":"{时间戳}"}"#),
        vec![reply(&format!(
            r#"{{"type":"pong","id":"pong_hb","timestamp":"{TS}","data":{{"server_time":"{TS}","latency":0}}}}"#
        ))]
    );
}

#[test]
fn bad_messages_are_errors_with_the_request_id_when_readable() {
    let mut c = Client::new();
    assert_eq!(
        c.send(r#"{"type":"dance","id":"d1"}"#),
        vec![reply(&format!(
            r#"{{"type":"error","id":"d1_error","timestamp":"{TS}","data":{{"code":"UNKNOWN_TYPE","message":"Unknown message type","details":"unknown type 'dance'; expected subscribe, unsubscribe, control, ping or auth","request_id":"d1"}}}}"#
        ))]
    );
    let out = c.send("{nope");
    let Action::Reply(e) = &out[0] else { panic!() };
    let e = String::from_utf8_lossy(e);
    assert!(
        e.starts_with(&format!(r#"{{"type":"error","id":"error_{NOW}","timestamp":"{TS}","data":{{"code":"INVALID_JSON""#)),
        "{e}"
    );
    assert!(e.ends_with(r#""request_id":null}}"#), "{e}");
    // A valid control on a known channel is handed to the shell, with its request id.
    let out = c.send(r#"{"type":"control","id":"c1","data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":50}}"#);
    let [a] = &out[..] else { panic!("{out:?}") };
    let cmd = submitted(a);
    assert_eq!((cmd.value, cmd.request_id.as_deref()), (50.0, Some("c1")));
    let Action::Ask(ask) = a else { panic!() };
    let job = ask.job::<crate::control::jobs::Submit>().unwrap();
    assert_eq!(job.client_id(), "mobile_app_001", "queued for this client");
    assert_eq!(
        cmd.source.as_deref(),
        Some("192.0.2.7"),
        "audited from its address"
    );
    // An unknown channel is refused here: nothing is queued.
    assert_eq!(
        c.send(r#"{"type":"control","id":"c2","data":{"channel_id":9999,"point_id":20,"command_type":"set_value","value":50}}"#),
        vec![reply(&format!(
            r#"{{"type":"error","id":"c2_error","timestamp":"{TS}","data":{{"code":"CHANNEL_NOT_FOUND","message":"Channel not found","details":"Channel 9999 not found","request_id":"c2"}}}}"#
        ))]
    );
}

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x80 | opcode];
    assert!(payload.len() < 126);
    f.push(0x80 | payload.len() as u8);
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let mut c = Client::new();
    let out = c.send(&"[".repeat(12_000));
    assert_eq!(
        out,
        vec![reply(&format!(
            r#"{{"type":"error","id":"error_{NOW}","timestamp":"{TS}","data":{{"code":"INVALID_JSON","message":"Invalid JSON","details":"message nests arrays/objects deeper than 32 levels","request_id":null}}}}"#
        ))]
    );
}

#[test]
fn a_burst_of_thousands_is_refused_and_a_dashboard_never_notices() {
    let mut c = Client::new();
    let ping = |i: usize| format!(r#"{{"type":"ping","id":"ping_{i}"}}"#);
    let mut out = Vec::new();
    for i in 0..150 {
        c.proto.on_text(&ping(i), NOW, &mut c.fan, &mut out);
    }
    assert_eq!(
        out.len(),
        101,
        "100 pongs, then one RATE_LIMITED for the streak"
    );
    assert!(
        matches!(&out[99], Action::Reply(p) if p.starts_with(br#"{"type":"pong","id":"pong_99""#))
    );
    assert_eq!(
        out[100],
        reply(&format!(
            r#"{{"type":"error","id":"ping_100_error","timestamp":"{TS}","data":{{"code":"RATE_LIMITED","message":"Rate limited","details":"at most 100 messages per second (bursts of 100); this message was not processed","request_id":"ping_100"}}}}"#
        ))
    );
    // A second later there is room again, at the steady rate.
    out.clear();
    c.proto.on_text(&ping(1), NOW + 1000, &mut c.fan, &mut out);
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], Action::Reply(p) if p.starts_with(br#"{"type":"pong""#)));
    // A dashboard's pace (10 messages a second for a minute) is never refused.
    let mut dash = Client::new();
    let mut out = Vec::new();
    for i in 0..600 {
        dash.proto
            .on_text(&ping(i), NOW + i as i64 * 100, &mut dash.fan, &mut out);
    }
    assert_eq!(out.len(), 600);
    assert!(out
        .iter()
        .all(|a| matches!(a, Action::Reply(p) if p.starts_with(br#"{"type":"pong""#))));
}

#[test]
fn a_flood_that_goes_on_is_closed() {
    let mut c = Client::new();
    let mut out = Vec::new();
    let f = client_frame(1, br#"{"type":"ping"}"#);
    let flood: Vec<u8> = f.iter().copied().cycle().take(f.len() * 1200).collect();
    // Closed with 1008; the rest of the flood is read and dropped while the close reply is
    // awaited (closing with unread input would reset the connection).
    let flow = c.proto.receive(&flood, NOW, &mut c.fan, &mut out);
    assert_eq!(flow, Flow::Open);
    assert!(c.proto.is_closing());
    let close = [
        &[0x88, 29][..],
        &1008u16.to_be_bytes(),
        b"message rate limit exceeded",
    ]
    .concat();
    assert_eq!(out.last(), Some(&Action::Raw(close)));
    out.clear();
    let some = &flood[..f.len() * 100];
    assert_eq!(c.proto.receive(some, NOW, &mut c.fan, &mut out), Flow::Open);
    assert!(
        out.is_empty(),
        "nothing answered after the close frame: {out:?}"
    );
    // The peer's close reply ends it.
    let reply = client_frame(8, &1008u16.to_be_bytes());
    assert_eq!(
        c.proto.receive(&reply, NOW, &mut c.fan, &mut out),
        Flow::Closed
    );
    // A flood that goes on after the close frame is dropped, unanswered, however long: the
    // shell bounds the drain in time (closing on a byte count reset the connection before
    // the peer had read why).
    let mut c = Client::new();
    c.proto.receive(&flood, NOW, &mut c.fan, &mut out);
    out.clear();
    let more: Vec<u8> = f.iter().copied().cycle().take(f.len() * 20_000).collect();
    assert_eq!(
        c.proto.receive(&more, NOW, &mut c.fan, &mut out),
        Flow::Open
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        c.proto.receive(&reply, NOW, &mut c.fan, &mut out),
        Flow::Closed
    );
}

#[test]
fn bytes_in_split_anywhere_and_binary_frames_refused() {
    let mut c = Client::new();
    let f = client_frame(1, br#"{"type":"ping","id":"ping_1"}"#);
    let mut out = Vec::new();
    assert_eq!(
        c.proto.receive(&f[..5], NOW, &mut c.fan, &mut out),
        Flow::Open
    );
    assert!(out.is_empty());
    assert_eq!(
        c.proto.receive(&f[5..], NOW, &mut c.fan, &mut out),
        Flow::Open
    );
    assert_eq!(out.len(), 1);
    assert!(
        matches!(&out[0], Action::Reply(p) if p.starts_with(br#"{"type":"pong","id":"pong_1""#))
    );
    out.clear();
    c.proto
        .receive(&client_frame(2, b"\x00"), NOW, &mut c.fan, &mut out);
    assert_eq!(
        out,
        vec![reply(&format!(
            r#"{{"type":"error","id":"error_{NOW}","timestamp":"{TS}","data":{{"code":"INVALID_MESSAGE","message":"Invalid message","details":"binary frames are not supported; send JSON text messages","request_id":null}}}}"#
        ))]
    );
}

#[test]
fn a_close_from_the_client_is_answered_and_ends_the_connection() {
    let mut c = Client::new();
    let mut out = Vec::new();
    let flow = c.proto.receive(
        &client_frame(8, &1000u16.to_be_bytes()),
        NOW,
        &mut c.fan,
        &mut out,
    );
    assert_eq!(flow, Flow::Closed);
    assert_eq!(out, vec![Action::Raw(vec![0x88, 2, 0x03, 0xE8])]);
}

#[test]
fn server_closes_carry_the_named_reason() {
    let mut c = Client::new();
    let mut out = Vec::new();
    c.proto.close(Disconnect::Replaced, &mut out);
    assert_eq!(
        out,
        vec![Action::Raw(
            [&[0x88, 10][..], &4001u16.to_be_bytes(), b"replaced"].concat()
        )]
    );
}

#[test]
fn echo_mode_returns_messages_as_sent() {
    let mut fan = site();
    let a = auth(crate::config::AnonymousRole::None);
    let mut p = Protocol::new(
        1,
        Mode::Echo,
        1024,
        LIMITS,
        Principal::anonymous(None),
        a,
        peer(),
    );
    assert_eq!(p.connected("x", Audience::General, NOW), None);
    let mut out = Vec::new();
    p.receive(&client_frame(1, b"hi"), NOW, &mut fan, &mut out);
    p.receive(&client_frame(2, b"\x01"), NOW, &mut fan, &mut out);
    assert_eq!(
        out,
        vec![
            Action::Raw(vec![0x81, 2, b'h', b'i']),
            Action::Raw(vec![0x82, 1, 1])
        ]
    );
}

/// A client acting as `principal` on a gateway whose anonymous clients have `anonymous`.
fn client_as(principal: Principal, anonymous: crate::config::AnonymousRole) -> (Client, Arc<Auth>) {
    let a = auth(anonymous);
    let mut fan = site();
    fan.add_member(7, true);
    let proto = Protocol::new(
        7,
        Mode::Gateway,
        64 * 1024,
        LIMITS,
        principal,
        a.clone(),
        peer(),
    );
    (Client { proto, fan }, a)
}

const CONTROL: &str = r#"{"type":"control","id":"c1","data":{"channel_id":2001,"point_id":20,"command_type":"set_value","value":50,"operator":"mallory"}}"#;

fn error_code(out: &[Action]) -> String {
    let [Action::Reply(e)] = out else {
        panic!("{out:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(e).unwrap();
    assert_eq!(v["type"], "error");
    v["data"]["code"].as_str().unwrap().to_string()
}

#[test]
fn control_needs_the_operator_role_and_audits_the_token_user() {
    use crate::config::AnonymousRole;
    let (mut c, _) = client_as(
        Principal::anonymous(Some(crate::auth::Role::Viewer)),
        AnonymousRole::Viewer,
    );
    assert_eq!(
        error_code(&c.send(CONTROL)),
        "UNAUTHORIZED",
        "anonymous viewer: log in"
    );
    let (mut c, a) = client_as(Principal::anonymous(None), AnonymousRole::Viewer);
    let vic = login(&a, "vic", NOW, [1; 32]);
    c.proto.principal = a.authenticate(Some(&vic.access_token), NOW).unwrap();
    assert_eq!(error_code(&c.send(CONTROL)), "FORBIDDEN", "viewer");
    let alice = login(&a, "alice", NOW, [2; 32]);
    c.proto.principal = a.authenticate(Some(&alice.access_token), NOW).unwrap();
    let out = c.send(CONTROL);
    let [a] = &out[..] else { panic!("{out:?}") };
    assert_eq!(
        submitted(a).operator.as_deref(),
        Some("alice"),
        "never the message's operator"
    );
    // Anonymous operators (the demo) are audited as anonymous.
    let mut demo = Client::new();
    let out = demo.send(CONTROL);
    let [a] = &out[..] else { panic!("{out:?}") };
    assert_eq!(submitted(a).operator.as_deref(), Some("anonymous"));
}

#[test]
fn tokens_renew_and_expire() {
    use crate::config::AnonymousRole;
    let (c0, a) = client_as(Principal::anonymous(None), AnonymousRole::Viewer);
    drop(c0);
    let t1 = login(&a, "alice", NOW, [3; 32]);
    let p = a.authenticate(Some(&t1.access_token), NOW).unwrap();
    let (mut c, _) = (client_as(p, AnonymousRole::Viewer).0, ());
    c.proto.auth = a.clone();
    // Renewal with a fresh token of the same user.
    let (_, pending) = a.refresh(&t1.refresh_token, NOW + 60_000, [4; 32]).unwrap();
    let t2 = a
        .refreshed(pending, Ok("alice".into()), NOW + 60_000)
        .unwrap();
    let out = c.send(&format!(
        r#"{{"type":"auth","id":"a1","data":{{"token":"{}"}}}}"#,
        t2.access_token
    ));
    let [Action::Reply(ack)] = &out[..] else {
        panic!("{out:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(ack).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("auth_ack"), Some("a1_ack"))
    );
    assert_eq!(
        (v["data"]["username"].as_str(), v["data"]["role"].as_str()),
        (Some("alice"), Some("operator"))
    );
    // Another user's token cannot renew it; garbage is refused.
    let vic = login(&a, "vic", NOW, [5; 32]);
    let other = format!(
        r#"{{"type":"auth","id":"a2","data":{{"token":"{}"}}}}"#,
        vic.access_token
    );
    assert_eq!(error_code(&c.send(&other)), "FORBIDDEN");
    assert_eq!(
        error_code(&c.send(r#"{"type":"auth","id":"a3","data":{"token":"x.y.z"}}"#)),
        "UNAUTHORIZED"
    );
    assert_eq!(
        error_code(&c.send(r#"{"type":"auth","id":"a4","data":{}}"#)),
        "INVALID_PARAMETER"
    );
    // Past the renewed expiry: anonymous viewer, told once; control refused.
    let later = NOW + 60_000 + 900_000;
    let mut out = Vec::new();
    c.proto.check_expiry(later, false, &mut out);
    let [Action::Reply(m)] = &out[..] else {
        panic!("{out:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(m).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["data"]["role"].as_str()),
        (Some("auth_expired"), Some("viewer"))
    );
    let mut out = Vec::new();
    c.proto.check_expiry(later + 1000, false, &mut out);
    assert!(out.is_empty(), "told once");
    assert!(c.proto.principal().is_anonymous());

    // With anonymous access off, expiry closes the connection with 4401.
    let (c0, a) = client_as(Principal::anonymous(None), AnonymousRole::None);
    drop(c0);
    let t = login(&a, "alice", NOW, [6; 32]);
    let p = a.authenticate(Some(&t.access_token), NOW).unwrap();
    let (mut c, _) = client_as(p, AnonymousRole::None);
    c.proto.auth = a;
    let mut out = Vec::new();
    c.proto.check_expiry(NOW + 900_000, false, &mut out);
    let [Action::Raw(f)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(&f[2..4], &4401u16.to_be_bytes());
    assert!(c.proto.is_closing());
}

/// At most `max_in_flight` commands wait for Redis at once; the next is refused here, and an
/// answer (or a timeout) frees its place and becomes the command's reply.
#[test]
fn commands_in_flight_are_bounded_and_answered_by_their_own_continuation() {
    let mut c = Client::new();
    let ctl = |i: usize| {
        format!(
            r#"{{"type":"control","id":"c{i}","data":{{"channel_id":2001,"point_id":20,"command_type":"set_value","value":{i}}}}}"#
        )
    };
    let mut asks = Vec::new();
    for i in 0..LIMITS.max_in_flight {
        let mut out = c.send(&ctl(i));
        let Some(Action::Ask(ask)) = out.pop() else {
            panic!("{out:?}")
        };
        asks.push(ask);
    }
    assert_eq!(error_code(&c.send(&ctl(99))), "RATE_LIMITED");
    // Queued: `control_ack queued` with the library's command id.
    let (_, then) = asks.pop().unwrap().split();
    let queued: Result<crate::control::Submitted, crate::error::ApiError> =
        Ok(crate::control::Submitted {
            command_id: "CMD_7".into(),
            status: "queued".into(),
            duplicate: false,
        });
    let answer: crate::job::Answer = Box::new(Ok::<_, crate::error::Upstream>(queued));
    let mut out = Vec::new();
    c.proto.answered(then, Ok(answer), NOW, &mut out);
    let [Action::Reply(r)] = &out[..] else {
        panic!("{out:?}")
    };
    let r = String::from_utf8_lossy(r);
    assert!(
        r.contains(r#""type":"control_ack""#) && r.contains("CMD_7"),
        "{r}"
    );
    assert!(r.contains(r#""request_id":"c15""#), "{r}");
    // Redis did not answer in time: the client learns it may be queued after all.
    let (_, then) = asks.pop().unwrap().split();
    let mut out = Vec::new();
    c.proto
        .answered(then, Err(crate::error::Upstream::TimedOut), NOW, &mut out);
    assert_eq!(error_code(&out), "SERVICE_UNAVAILABLE");
    let [Action::Reply(r)] = &out[..] else {
        panic!()
    };
    assert!(String::from_utf8_lossy(r).contains("same request id"));
    // Two places are free again.
    assert!(matches!(c.send(&ctl(100)).pop(), Some(Action::Ask(_))));
    assert!(matches!(c.send(&ctl(101)).pop(), Some(Action::Ask(_))));
    assert_eq!(error_code(&c.send(&ctl(102))), "RATE_LIMITED");
}

/// A login as the handler makes it, with Redis's part taken as done.
fn login(a: &Auth, user: &str, now: i64, random: [u8; 32]) -> crate::auth::Tokens {
    let ip = "127.0.0.1".parse().unwrap();
    let (_, pending) = a.start_login(user, ip, now, random).unwrap();
    a.logged_in(pending, &[], now)
}
