//! The fan-out rules, without sockets: grouping, sharing, interval spacing, snapshot then
//! delta, late joiners, congestion and slow-client closing.

use super::*;
use crate::model::DataType;
use crate::site::store::Store;
use std::collections::HashMap;

#[derive(Default)]
struct Recorder {
    frames: HashMap<ConnId, Vec<(i64, Frame)>>,
    refuse: BTreeSet<ConnId>,
    kicked: Vec<(ConnId, u16)>,
    now: i64,
}

impl Sink for Recorder {
    fn offer(&mut self, conn: ConnId, frame: &Frame) -> bool {
        if self.refuse.contains(&conn) {
            return false;
        }
        self.frames
            .entry(conn)
            .or_default()
            .push((self.now, frame.clone()));
        true
    }
    fn kick(&mut self, conn: ConnId, why: Disconnect) {
        self.kicked.push((conn, u16::from(why.code())));
    }
}

impl Recorder {
    fn texts(&self, conn: ConnId) -> Vec<String> {
        self.frames
            .get(&conn)
            .map(|v| v.iter().map(|(_, f)| payload(f)).collect())
            .unwrap_or_default()
    }
}

fn payload(f: &Frame) -> String {
    let skip = match f[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    String::from_utf8(f[skip..].to_vec()).unwrap()
}

/// Every message in a frame buffer (a push with removals holds two).
fn payloads(mut f: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !f.is_empty() {
        let (skip, len) = match f[1] {
            126 => (4, u16::from_be_bytes([f[2], f[3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize,
            ),
            n => (2, n as usize),
        };
        out.push(String::from_utf8(f[skip..skip + len].to_vec()).unwrap());
        f = &f[skip + len..];
    }
    out
}

/// Feeds writes through a real store, like the feed thread does.
struct Site {
    store: Store,
    seq: u64,
}

impl Site {
    fn new() -> Site {
        Site {
            store: Store::default(),
            seq: 0,
        }
    }

    /// A tick where each member's hash holds exactly `fields` (none: it was deleted).
    fn replace(&mut self, time_ms: i64, writes: &[(&str, &[(&str, &str)])]) -> Arc<Tick> {
        let mut changes = Vec::new();
        for (member, fields) in writes {
            self.seq += 1;
            let mut f: Vec<(Vec<u8>, Vec<u8>)> = fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            if !f.is_empty() {
                f.push((b"_timestamp".to_vec(), b"1".to_vec()));
            }
            changes.extend(self.store.apply(member, &f));
        }
        self.publish(time_ms, &changes)
    }

    fn publish(&self, time_ms: i64, changes: &[crate::site::change::Change]) -> Arc<Tick> {
        let snap = Arc::new(Snapshot {
            seq: self.seq,
            epoch: "e".into(),
            loaded: true,
            channels: self.store.channels.clone(),
        });
        Arc::new(Tick::new(snap, changes, time_ms))
    }

    fn tick(&mut self, time_ms: i64, writes: &[(&str, &[(&str, &str)])]) -> Arc<Tick> {
        let mut changes = Vec::new();
        for (member, fields) in writes {
            self.seq += 1;
            let mut f: Vec<(Vec<u8>, Vec<u8>)> = fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            // Merge with the hash's existing fields, as Redis HSET does.
            let (ch, t) = crate::model::parse_hash_member(member).unwrap();
            if let Some(old) = self.store.channels.get(&ch).and_then(|c| c.get(t)) {
                for (id, v) in &old.points {
                    if !fields.iter().any(|(k, _)| *k == id.to_string()) {
                        f.push((id.to_string().into_bytes(), v.json().as_bytes().to_vec()));
                    }
                }
            }
            f.push((b"_timestamp".to_vec(), b"1".to_vec()));
            changes.extend(self.store.apply(member, &f));
        }
        self.publish(time_ms, &changes)
    }
}

struct Sub {
    channels: Vec<ChannelId>,
    types: TypeMask,
    interval: Interval,
}

fn sub(channels: &[u32], types: &[DataType], interval_ms: u64) -> Sub {
    Sub {
        channels: channels.iter().map(|c| ChannelId(*c)).collect(),
        types: types.iter().copied().collect(),
        interval: Interval::from_ms(interval_ms).unwrap(),
    }
}

impl Fanout {
    fn sub(
        &mut self,
        conn: ConnId,
        s: &Sub,
        now: i64,
    ) -> Result<Subscribed, crate::error::ApiError> {
        self.subscribe(conn, &s.channels, s.types, s.interval, now)
    }
}

const T: DataType = DataType::Telemetry;
const S: DataType = DataType::Signal;

fn setup() -> (Site, Fanout) {
    let mut site = Site::new();
    let t0 = site.tick(
        0,
        &[
            ("1001:T", &[("1", "25.6"), ("2", "101.3")]),
            ("1002:S", &[("10", "1"), ("11", "0")]),
        ],
    );
    let fan = Fanout::new(t0, 30_000, 1000);
    (site, fan)
}

#[test]
fn snapshot_then_only_changed_points() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, true);
    let s = fan
        .sub(1, &sub(&[1001, 1002, 9999], &[T, S], 100), 0)
        .unwrap();
    assert_eq!(s.subscribed, vec![ChannelId(1001), ChannelId(1002)]);
    assert_eq!(s.failed, vec![ChannelId(9999)]);
    assert_eq!(s.total, 2);
    let snap = payload(&s.snapshot.unwrap());
    assert!(snap.contains(r#""type":"data_batch""#), "{snap}");
    assert!(
        snap.contains(r#"{"channel_id":1001,"data_type":"T","values":{"1":25.6,"2":101.3}}"#),
        "{snap}"
    );
    assert!(
        snap.contains(r#"{"channel_id":1002,"data_type":"S","values":{"10":1,"11":0}}"#),
        "{snap}"
    );

    rec.now = 150;
    fan.on_tick(site.tick(150, &[("1001:T", &[("1", "25.7")])]), &mut rec);
    let got = rec.texts(1);
    assert_eq!(got.len(), 1);
    assert!(got[0].contains(r#""type":"data_update""#), "{}", got[0]);
    assert!(
        got[0].ends_with(r#""data":{"channel_id":1001,"data_type":"T","values":{"1":25.7}}}"#),
        "{}",
        got[0]
    );
    // A write that changes nothing pushes nothing.
    rec.now = 300;
    fan.on_tick(site.tick(300, &[("1001:T", &[("1", "25.7")])]), &mut rec);
    assert_eq!(rec.texts(1).len(), 1);
}

#[test]
fn same_subscription_shares_one_frame_across_shards() {
    let (mut site, mut a) = setup();
    let mut b = Fanout::new(a.current.clone(), 30_000, 1000);
    let mut rec = Recorder::default();
    for (fan, conns) in [(&mut a, [1, 2]), (&mut b, [3, 4])] {
        for c in conns {
            fan.add_member(c, true);
            fan.sub(c, &sub(&[1001, 1002], &[T, S], 100), 0).unwrap();
        }
    }
    assert_eq!(a.group_count(), 1);
    let t = site.tick(
        200,
        &[("1001:T", &[("1", "30")]), ("1002:S", &[("10", "0")])],
    );
    rec.now = 200;
    a.on_tick(t.clone(), &mut rec);
    b.on_tick(t, &mut rec);
    let f: Vec<&Frame> = (1..=4).map(|c| &rec.frames[&c][0].1).collect();
    assert!(
        f.iter().all(|x| Arc::ptr_eq(x, f[0])),
        "one allocation shared by all four"
    );
    assert!(
        payload(f[0]).contains(r#""type":"data_batch","id":"batch_4""#),
        "{}",
        payload(f[0])
    );
}

#[test]
fn interval_spacing_and_conflation() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, true);
    fan.sub(1, &sub(&[1001], &[T], 1000), 0).unwrap();
    // 10 Hz writes for 3 s.
    for i in 1..=30 {
        let t = i * 100;
        rec.now = t;
        let v = format!("{i}");
        fan.on_tick(site.tick(t, &[("1001:T", &[("1", v.as_str())])]), &mut rec);
        if let Some(due) = fan.next_due() {
            if due <= t {
                fan.on_timer(t, &mut rec);
            }
        }
    }
    let times: Vec<i64> = rec.frames[&1].iter().map(|(t, _)| *t).collect();
    // One push per interval on average; two pushes never closer than interval - slack.
    assert!(times.len() >= 2 && times.len() <= 3, "{times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 900), "{times:?}");
    assert!(
        times[0] >= 900,
        "the first push keeps its distance from the snapshot: {times:?}"
    );
    // Conflated: the push carries the latest value, not every intermediate one.
    let last = rec.texts(1).pop().unwrap();
    assert!(
        last.contains(&format!(
            r#""values":{{"1":{}}}"#,
            times.last().unwrap() / 100
        )),
        "{last}"
    );
}

#[test]
fn quiet_change_is_pushed_by_the_timer() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, true);
    fan.sub(1, &sub(&[1001], &[T], 500), 0).unwrap();
    rec.now = 100;
    fan.on_tick(site.tick(100, &[("1001:T", &[("2", "99")])]), &mut rec);
    assert!(!rec.frames.contains_key(&1), "too soon after the snapshot");
    assert_eq!(
        fan.next_due(),
        Some(450),
        "due at 500, allowed a tenth early"
    );
    rec.now = 450;
    fan.on_timer(449, &mut rec);
    assert!(!rec.frames.contains_key(&1));
    fan.on_timer(450, &mut rec);
    assert_eq!(rec.texts(1).len(), 1);
    assert!(rec.texts(1)[0].contains(r#""values":{"2":99}"#));
}

#[test]
fn late_joiner_catches_up_then_shares() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, true);
    fan.sub(1, &sub(&[1001], &[T], 100), 0).unwrap();
    let mut joined = false;
    for i in 1..=20 {
        let t = i * 50;
        rec.now = t;
        if t == 330 - 30 && !joined {
            fan.add_member(2, true);
            fan.sub(2, &sub(&[1001], &[T], 100), t).unwrap();
            joined = true;
        }
        let v = format!("{i}");
        fan.on_tick(site.tick(t, &[("1001:T", &[("1", v.as_str())])]), &mut rec);
        fan.on_timer(t, &mut rec);
    }
    assert_eq!(fan.group_count(), 1);
    let times2: Vec<i64> = rec.frames[&2].iter().map(|(t, _)| *t).collect();
    assert!(
        times2[0] >= 400,
        "first push ≥ interval after the snapshot: {times2:?}"
    );
    assert!(times2.windows(2).all(|w| w[1] - w[0] >= 100), "{times2:?}");
    // After catching up, member 2 receives the very frames member 1 receives.
    let last1 = rec.frames[&1].last().unwrap();
    let last2 = rec.frames[&2].last().unwrap();
    assert_eq!(last1.0, last2.0);
    assert!(Arc::ptr_eq(&last1.1, &last2.1));
    assert!(payload(&last2.1).contains(r#""values":{"1":20}"#));
}

#[test]
fn congested_client_gets_latest_values_when_drained_and_is_closed_if_it_never_drains() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    for c in [1, 2] {
        fan.add_member(c, true);
        fan.sub(c, &sub(&[1001, 1002], &[T, S], 100), 0).unwrap();
    }
    rec.refuse.insert(2);
    for i in 1..=10 {
        let t = i * 100;
        rec.now = t;
        let v = format!("{i}");
        fan.on_tick(site.tick(t, &[("1001:T", &[("1", v.as_str())])]), &mut rec);
    }
    rec.now = 1100;
    fan.on_tick(site.tick(1100, &[("1002:S", &[("11", "1")])]), &mut rec);
    assert_eq!(rec.texts(1).len(), 11);
    assert!(!rec.frames.contains_key(&2));
    // It drains: one catch-up with the latest value of everything it missed.
    rec.refuse.clear();
    rec.now = 1150;
    fan.drained(2, 1150, &mut rec);
    let got = rec.texts(2);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains(r#"{"channel_id":1001,"data_type":"T","values":{"1":10}}"#),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains(r#"{"channel_id":1002,"data_type":"S","values":{"11":1}}"#),
        "{}",
        got[0]
    );

    // Congested for longer than slow_close_ms: closed with 1008.
    rec.refuse.insert(2);
    for i in 12..=13 {
        let t = i * 100;
        rec.now = t;
        fan.on_tick(
            site.tick(
                t,
                &[
                    ("1001:T", &[("1", "0")]),
                    ("1001:T", &[("2", &i.to_string())]),
                ],
            ),
            &mut rec,
        );
    }
    fan.on_timer(1300 + 30_000, &mut rec);
    assert_eq!(rec.kicked, vec![(2, 1008)]);
}

#[test]
fn unsubscribe_and_types_filter() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, true);
    fan.sub(1, &sub(&[1001, 1002], &[S], 100), 0).unwrap();
    rec.now = 200;
    fan.on_tick(site.tick(200, &[("1001:T", &[("1", "1")])]), &mut rec);
    assert!(!rec.frames.contains_key(&1), "T is not watched");
    let (removed, failed, total) = fan.unsubscribe(1, Some(&[ChannelId(1002), ChannelId(5)]), 200);
    assert_eq!(
        (removed, failed, total),
        (vec![ChannelId(1002)], vec![ChannelId(5)], 1)
    );
    rec.now = 400;
    fan.on_tick(site.tick(400, &[("1002:S", &[("10", "0")])]), &mut rec);
    assert!(!rec.frames.contains_key(&1));
    let (removed, _, total) = fan.unsubscribe(1, None, 400);
    assert_eq!((removed.len(), total), (1, 0));
    assert_eq!(fan.group_count(), 0);
    fan.remove_member(1);
    assert_eq!(fan.member_count(), 0);
}

#[test]
fn alarm_only_clients_get_no_data() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, false);
    let s = fan.sub(1, &sub(&[1001], &[T], 100), 0).unwrap();
    assert!(s.snapshot.is_none());
    rec.now = 200;
    fan.on_tick(site.tick(200, &[("1001:T", &[("1", "1")])]), &mut rec);
    assert!(rec.frames.is_empty());
}

#[test]
fn a_device_writing_at_the_interval_rate_is_never_conflated() {
    // Writes every 100 ms, seen by the feed with up to 9 ms of jitter, interval 100 ms:
    // every write is pushed on its own, none is held into the next slot.
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, true);
    fan.sub(1, &sub(&[1001], &[T], 100), 0).unwrap();
    let jitter = [0, 9, 1, 8, 2, 7, 3, 6, 4, 5, 9, 0, 9, 0];
    for (i, j) in jitter.iter().enumerate() {
        let t = 100 * (i as i64 + 1) + j;
        rec.now = t;
        let v = format!("{i}");
        fan.on_tick(site.tick(t, &[("1001:T", &[("1", v.as_str())])]), &mut rec);
    }
    let times: Vec<i64> = rec.frames[&1].iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times.len(),
        jitter.len(),
        "every write pushed at once: {times:?}"
    );
    for (i, f) in rec.texts(1).iter().enumerate() {
        assert!(f.contains(&format!(r#""values":{{"1":{i}}}"#)), "{f}");
    }
}

#[test]
fn vanished_points_and_hashes_are_signalled_and_the_subscription_is_kept() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, true);
    fan.sub(1, &sub(&[1001, 1002], &[T, S], 100), 0).unwrap();

    // Point 2 deleted from 1001:T, point 1 changed: the update and the removal, one write.
    rec.now = 150;
    fan.on_tick(site.replace(150, &[("1001:T", &[("1", "26")])]), &mut rec);
    let got = payloads(&rec.frames[&1][0].1);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].ends_with(r#""data":{"channel_id":1001,"data_type":"T","values":{"1":26}}}"#),
        "{got:?}"
    );
    assert!(
        got[1].starts_with(r#"{"type":"data_removed","id":"removed_3","#),
        "{got:?}"
    );
    assert!(
        got[1]
            .ends_with(r#""data":{"removed":[{"channel_id":1001,"data_type":"T","points":[2]}]}}"#),
        "{got:?}"
    );

    // The whole 1002:S hash (so the channel) vanishes: every point it had is listed.
    rec.now = 300;
    fan.on_tick(site.replace(300, &[("1002:S", &[])]), &mut rec);
    let got = payloads(&rec.frames[&1][1].1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].ends_with(
            r#""data":{"removed":[{"channel_id":1002,"data_type":"S","points":[10,11]}]}}"#
        ),
        "{got:?}"
    );

    // It reappears: still subscribed, so it is pushed again.
    rec.now = 450;
    fan.on_tick(site.replace(450, &[("1002:S", &[("10", "1")])]), &mut rec);
    let got = payloads(&rec.frames[&1][2].1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].ends_with(r#""data":{"channel_id":1002,"data_type":"S","values":{"10":1}}}"#),
        "{got:?}"
    );
}

#[test]
fn removals_are_conflated_like_values() {
    let (mut site, mut fan) = setup();
    let mut rec = Recorder::default();
    fan.add_member(1, true);
    fan.sub(1, &sub(&[1001], &[T], 1000), 0).unwrap();
    // Within one interval: point 1 removed then back with a new value, point 2 changed then
    // removed. The push says what holds at its time: 1 has a value, 2 is gone.
    for (t, fields) in [
        (100, &[("2", "7")][..]),
        (200, &[("2", "8")][..]),
        (300, &[("1", "30")][..]),
    ] {
        rec.now = t;
        fan.on_tick(site.replace(t, &[("1001:T", fields)]), &mut rec);
    }
    assert!(!rec.frames.contains_key(&1), "nothing before the interval");
    rec.now = 1000;
    fan.on_timer(1000, &mut rec);
    let got = payloads(&rec.frames[&1][0].1);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].ends_with(r#""data":{"channel_id":1001,"data_type":"T","values":{"1":30}}}"#),
        "{got:?}"
    );
    assert!(
        got[1]
            .ends_with(r#""data":{"removed":[{"channel_id":1001,"data_type":"T","points":[2]}]}}"#),
        "{got:?}"
    );
}
