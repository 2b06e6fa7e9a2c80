//! The WebSocket protocol core on arbitrary bytes from a client: RFC 6455 frames through the
//! tungstenite session, every complete text message through the command parser and its
//! apply step against a real fan-out. Never panics; every reply is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use voltage_gateway::fanout::Fanout;
use voltage_gateway::model::{ChannelId, DataType, Value};
use voltage_gateway::site::tick::Tick;
use voltage_gateway::site::{ChannelState, Snapshot, TypeState};
use voltage_gateway::ws::action::Action;
use voltage_gateway::ws::cmd::{self, Limits};
use voltage_gateway::ws::protocol::{Mode, Protocol};

const LIMITS: Limits = Limits {
    max_channels: 100,
    max_depth: 32,
    messages_per_sec: 100,
    message_burst: 100,
    max_in_flight: 16,
};

fn fanout() -> Fanout {
    let mut snap = Snapshot {
        seq: 1,
        loaded: true,
        ..Snapshot::default()
    };
    for ch in [1001, 1002, 2001] {
        let mut c = ChannelState::default();
        c.types[DataType::Telemetry.index()] = Some(Arc::new(TypeState::new(
            1,
            vec![(1, Value::from_redis("25.6")), (2, Value::from_redis("on"))],
        )));
        snap.channels.insert(ChannelId(ch), c);
    }
    Fanout::new(Arc::new(Tick::new(Arc::new(snap), &[], 0)), 30_000, 100)
}

fuzz_target!(|data: &[u8]| {
    // The message parser alone, on the text as it would arrive in one frame.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cmd::parse(text, &LIMITS);
    }
    // The whole core: the same bytes as frames, split where the first byte says.
    let mut fan = fanout();
    fan.add_member(1, true);
    // Anonymous operators: every command (control and auth included) reaches its apply step.
    let cfg = voltage_gateway::config::AuthConfig {
        anonymous_role: voltage_gateway::config::AnonymousRole::Operator,
        ..Default::default()
    };
    let auth = Arc::new(voltage_gateway::auth::Auth::new(&cfg, &[7; 32]));
    let principal = voltage_gateway::auth::Principal::anonymous(auth.anonymous_role());
    let peer = cmd::Peer {
        client_id: "fuzz".into(),
        source: std::net::IpAddr::from([127, 0, 0, 1]),
    };
    let mut p = Protocol::new(1, Mode::Gateway, 4096, LIMITS, principal, auth, peer);
    let mut out = Vec::new();
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    p.receive(&data[..split], 1_754_994_600_000, &mut fan, &mut out);
    p.receive(&data[split..], 1_754_994_600_001, &mut fan, &mut out);
    for a in &out {
        if let Action::Reply(json) = a {
            serde_json::from_slice::<serde_json::Value>(json).expect("replies are JSON");
        }
    }
});
