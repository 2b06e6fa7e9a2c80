//! The protocol's nouns: channels, data types, points and their values.

use std::fmt;

/// One field device link. Valid ids are 1..=4294967295 (PROTOCOL.md vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(pub u32);

impl ChannelId {
    /// Parses a decimal channel id as it appears in a URL path or a Redis key.
    /// Only ASCII digits are accepted (no sign, no whitespace, no leading zero: one spelling
    /// per id, so `01001` never aliases `1001`) and 0 is out of range.
    pub fn parse(s: &str) -> Option<ChannelId> {
        let n = parse_canonical_u32(s)?;
        (n != 0).then_some(ChannelId(n))
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A point id inside a (channel, type): an unsigned integer, sent as a JSON object key string.
pub type PointId = u32;

/// Parses plain ASCII decimal digits into a u32; anything else (sign, spaces, overflow) is `None`.
pub fn parse_u32_digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().and_then(|n| u32::try_from(n).ok())
}

/// Like [`parse_u32_digits`], but refuses leading zeros (`0` itself is fine): ids that
/// clients send have one spelling.
pub fn parse_canonical_u32(s: &str) -> Option<u32> {
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    parse_u32_digits(s)
}

/// The four data types of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataType {
    /// `T` 遥测: analog measurements.
    Telemetry = 0,
    /// `S` 遥信: digital status.
    Signal = 1,
    /// `C` 遥控: commands.
    Control = 2,
    /// `A` 遥调: set-points.
    Adjustment = 3,
}

impl DataType {
    pub const ALL: [DataType; 4] = [
        DataType::Telemetry,
        DataType::Signal,
        DataType::Control,
        DataType::Adjustment,
    ];

    /// The one-letter wire name (`T`, `S`, `C`, `A`).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Telemetry => "T",
            DataType::Signal => "S",
            DataType::Control => "C",
            DataType::Adjustment => "A",
        }
    }

    /// Parses the exact one-letter wire name; the protocol's letters are upper case.
    pub fn parse(s: &str) -> Option<DataType> {
        match s {
            "T" => Some(DataType::Telemetry),
            "S" => Some(DataType::Signal),
            "C" => Some(DataType::Control),
            "A" => Some(DataType::Adjustment),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of data types as a bit mask (bit = `DataType::index`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeMask(u8);

impl TypeMask {
    pub const ALL: TypeMask = TypeMask(0b1111);
    pub const NONE: TypeMask = TypeMask(0);

    pub fn contains(self, t: DataType) -> bool {
        self.0 & (1 << t.index()) != 0
    }

    pub fn with(self, t: DataType) -> TypeMask {
        TypeMask(self.0 | (1 << t.index()))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The types in the set, in protocol order (`T`, `S`, `C`, `A`).
    pub fn types(self) -> impl Iterator<Item = DataType> {
        DataType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl FromIterator<DataType> for TypeMask {
    fn from_iter<I: IntoIterator<Item = DataType>>(iter: I) -> TypeMask {
        iter.into_iter().fold(TypeMask::NONE, TypeMask::with)
    }
}

/// Splits a `netsrv:dirty` member (`1001:T`) into its channel and type.
pub fn parse_hash_member(member: &str) -> Option<(ChannelId, DataType)> {
    let (ch, ty) = member.rsplit_once(':')?;
    Some((ChannelId::parse(ch)?, DataType::parse(ty)?))
}

/// The Redis hash that holds one (channel, type): `comsrv:{ch}:{type}`.
pub fn hash_key(channel: ChannelId, data_type: DataType) -> String {
    format!("comsrv:{channel}:{data_type}")
}

/// The value of field `name` of a hash as Redis returned it (field/value pairs), if present
/// and UTF-8.
pub fn hash_field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// A point value, kept as the JSON token it is sent as: a number literal when the stored
/// decimal string is a number, otherwise a quoted JSON string. Rendering once at ingest
/// means every REST response and every pushed frame splices the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value(Box<str>);

impl Value {
    /// Converts a value as stored in Redis into its JSON token.
    pub fn from_redis(raw: &str) -> Value {
        if is_json_number(raw) && fits_a_double(raw) {
            return Value(raw.into());
        }
        // Decimal strings that JSON does not accept verbatim (`+5`, `.5`, `5.`) still are numbers.
        if let Ok(v) = raw.trim().parse::<f64>() {
            if v.is_finite() && looks_numeric(raw.trim()) {
                let mut b = ryu::Buffer::new();
                let s = b.format_finite(v);
                let s = s.strip_suffix(".0").unwrap_or(s);
                return Value(s.into());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 2);
        crate::json::write_str(&mut out, raw);
        // write_str only emits valid UTF-8 (it escapes into ASCII or copies UTF-8 input).
        Value(String::from_utf8(out).unwrap_or_default().into_boxed_str())
    }

    /// The JSON token (number literal or quoted string).
    pub fn json(&self) -> &str {
        &self.0
    }
}

/// A JSON number that a double holds (`1e999` is valid JSON syntax but strict parsers reject
/// the whole message). Only an exponent or a very long literal can overflow.
fn fits_a_double(s: &str) -> bool {
    let can_overflow = s.len() > 300 || s.bytes().any(|b| b == b'e' || b == b'E');
    !can_overflow || s.parse::<f64>().is_ok_and(f64::is_finite)
}

fn looks_numeric(s: &str) -> bool {
    // Rust's f64 parser also accepts "inf", "nan", "infinity": those are not decimal numbers.
    s.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
}

/// True when `s` is exactly a JSON number per RFC 8259.
pub fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids() {
        assert_eq!(ChannelId::parse("1001"), Some(ChannelId(1001)));
        assert_eq!(ChannelId::parse("4294967295"), Some(ChannelId(u32::MAX)));
        for bad in [
            "0",
            "4294967296",
            "-1",
            "+1",
            " 1",
            "1a",
            "",
            "99999999999",
            "01001",
            "00",
        ] {
            assert_eq!(ChannelId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn data_types() {
        for t in DataType::ALL {
            assert_eq!(DataType::parse(t.as_str()), Some(t));
        }
        assert_eq!(DataType::parse("t"), None);
        assert_eq!(DataType::parse("X"), None);
    }

    #[test]
    fn type_masks() {
        let ts: TypeMask = [DataType::Telemetry, DataType::Adjustment]
            .into_iter()
            .collect();
        assert!(ts.contains(DataType::Telemetry) && !ts.contains(DataType::Signal));
        assert_eq!(
            ts.types().collect::<Vec<_>>(),
            [DataType::Telemetry, DataType::Adjustment]
        );
        assert_eq!(
            DataType::ALL.into_iter().collect::<TypeMask>(),
            TypeMask::ALL
        );
        assert!(TypeMask::NONE.is_empty() && !ts.is_empty());
    }

    #[test]
    fn members() {
        assert_eq!(
            parse_hash_member("1001:T"),
            Some((ChannelId(1001), DataType::Telemetry))
        );
        assert_eq!(parse_hash_member("1001:X"), None);
        assert_eq!(parse_hash_member("x:T"), None);
    }

    #[test]
    fn json_numbers() {
        for ok in [
            "0",
            "-0",
            "25.6",
            "1e5",
            "1E+5",
            "-1.5e-3",
            "101.3",
            "0.30000000000000004",
        ] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "+5", "1e", "nan", "inf", "0x1", "1 ", "--1",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    /// Property: whatever Redis holds, the token sent is one JSON value strict parsers accept,
    /// and a stored JSON number is sent exactly as written (20,000 generated strings over the
    /// characters numbers are made of, plus letters and quotes).
    #[test]
    fn every_value_is_one_strict_json_token() {
        let alphabet = b"0123456789+-.eE aZ\"\\";
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 24) as usize;
            let raw: String = (0..len)
                .map(|i| alphabet[((rng >> (i % 8 * 8)) as usize + i * 7) % alphabet.len()] as char)
                .collect();
            let v = Value::from_redis(&raw);
            let parsed: serde_json::Value = serde_json::from_str(v.json())
                .unwrap_or_else(|e| panic!("{raw:?} -> {}: {e}", v.json()));
            if is_json_number(&raw) && parsed.is_number() {
                assert_eq!(v.json(), raw);
            }
            assert!(parsed.is_number() || parsed.is_string(), "{raw:?}");
        }
    }

    #[test]
    fn values() {
        assert_eq!(Value::from_redis("25.6").json(), "25.6");
        assert_eq!(Value::from_redis("1").json(), "1");
        assert_eq!(Value::from_redis("+5").json(), "5");
        assert_eq!(Value::from_redis(".5").json(), "0.5");
        assert_eq!(Value::from_redis("open").json(), "\"open\"");
        assert_eq!(Value::from_redis("nan").json(), "\"nan\"");
        assert_eq!(Value::from_redis("a\"b").json(), "\"a\\\"b\"");
        // Valid JSON syntax, but no double holds it: sent as a string, never as a bare token.
        assert_eq!(Value::from_redis("1e999").json(), "\"1e999\"");
        assert_eq!(Value::from_redis("-1E400").json(), "\"-1E400\"");
        assert_eq!(Value::from_redis("1e308").json(), "1e308");
        assert_eq!(Value::from_redis(&"9".repeat(400)).json().len(), 402);
    }
}
