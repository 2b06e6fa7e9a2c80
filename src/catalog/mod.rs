//! The site's static configuration (PROTOCOL.md §4, the seed's "点表定义"): channel
//! definitions (name, description, device kind, enabled) and point definitions per channel
//! (name, unit, scale, limits for control values), as stored in Redis and as clients send
//! them — JSON and CSV. Pure: parse, validate (each refusal names the field), render; the
//! Redis work is in `jobs.rs`.
//!
//! Redis layout (written by the gateway, read by the library's `control_submit` for limits):
//! `cfg:channels` hash `{id}` → channel JSON; `cfg:points:{id}` hash `{T|S|C|A}:{point_id}` →
//! point JSON; `cfg:version` counter, bumped by every change.

pub mod jobs;

use crate::error::ApiError;
use crate::json;
use crate::model::{ChannelId, DataType, PointId};
use simd_json::prelude::*;
use simd_json::OwnedValue;

/// Points one channel's table may hold (an import larger than this is refused).
pub const MAX_POINTS: usize = 10_000;
/// Longest name / unit / description / device kind.
const MAX_NAME: usize = 128;
const MAX_UNIT: usize = 32;
const MAX_DESCRIPTION: usize = 512;
const MAX_KIND: usize = 64;

pub const CHANNELS_KEY: &str = "cfg:channels";
pub const VERSION_KEY: &str = "cfg:version";

pub fn points_key(ch: ChannelId) -> String {
    format!("cfg:points:{}", ch.0)
}

/// The configured channels as the feed last read them (published to the shards: a configured
/// channel is known before its first write).
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub channels: std::collections::BTreeMap<ChannelId, ChannelDef>,
}

impl Catalog {
    /// From `HGETALL cfg:channels` (entries that do not parse are skipped).
    pub fn from_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Catalog {
        let channels = fields
            .iter()
            .filter_map(|(k, v)| {
                let def = ChannelDef::from_stored(
                    std::str::from_utf8(k).ok()?,
                    std::str::from_utf8(v).ok()?,
                )?;
                Some((def.id, def))
            })
            .collect();
        Catalog { channels }
    }

    pub fn ids(&self) -> std::collections::BTreeSet<ChannelId> {
        self.channels.keys().copied().collect()
    }
}

/// A configured channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelDef {
    pub id: ChannelId,
    pub name: String,
    pub description: String,
    pub device_kind: String,
    pub enabled: bool,
}

/// A configured point.
#[derive(Clone, Debug, PartialEq)]
pub struct PointDef {
    pub data_type: DataType,
    pub point: PointId,
    pub name: String,
    pub unit: String,
    /// Raw value × scale = engineering value (informative for dashboards).
    pub scale: f64,
    /// Limits a control value (`A` set-point, `C` command) must respect; `None`: unbounded.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

fn invalid(field: &str, expected: &str) -> ApiError {
    ApiError::invalid_parameter(field, expected)
}

fn text(
    v: &OwnedValue,
    field: &str,
    path: &str,
    max: usize,
    required: bool,
) -> Result<String, ApiError> {
    let name = format!("{path}{field}");
    match v.get(field) {
        None if !required => Ok(String::new()),
        Some(x) if x.is_null() && !required => Ok(String::new()),
        Some(x) => match x.as_str() {
            Some(s)
                if s.len() <= max && (!required || !s.is_empty()) && !s.contains(['\r', '\n']) =>
            {
                Ok(s.to_string())
            }
            _ => Err(invalid(
                &name,
                &format!(
                    "must be a string of {}-{max} bytes without line breaks",
                    u8::from(required)
                ),
            )),
        },
        None => Err(invalid(&name, "is required")),
    }
}

fn number(v: &OwnedValue, field: &str, path: &str) -> Result<Option<f64>, ApiError> {
    match v.get(field) {
        None => Ok(None),
        Some(x) if x.is_null() => Ok(None),
        Some(x) => x
            .cast_f64()
            .filter(|f| x.is_number() && f.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(&format!("{path}{field}"), "must be a finite number")),
    }
}

impl ChannelDef {
    /// `{name, description?, device_kind?, enabled?}` for channel `id`.
    pub fn parse(id: ChannelId, body: &[u8], max_depth: usize) -> Result<ChannelDef, ApiError> {
        let v = crate::http::body::parse_body(
            body,
            max_depth,
            "an object {name, description?, device_kind?, enabled?}",
        )?;
        if !v.is_object() {
            return Err(invalid(
                "body",
                "must be an object {name, description?, device_kind?, enabled?}",
            ));
        }
        Self::from_value(id, &v)
    }

    fn from_value(id: ChannelId, v: &OwnedValue) -> Result<ChannelDef, ApiError> {
        let enabled = match v.get("enabled") {
            None => true,
            Some(x) => x
                .as_bool()
                .ok_or_else(|| invalid("enabled", "must be true or false"))?,
        };
        Ok(ChannelDef {
            id,
            name: text(v, "name", "", MAX_NAME, true)?,
            description: text(v, "description", "", MAX_DESCRIPTION, false)?,
            device_kind: text(v, "device_kind", "", MAX_KIND, false)?,
            enabled,
        })
    }

    /// As stored in `cfg:channels` (without the id, which is the field).
    pub fn to_json(&self) -> String {
        let mut o = Vec::with_capacity(128);
        o.extend_from_slice(b"{\"name\":");
        json::write_str(&mut o, &self.name);
        o.extend_from_slice(b",\"description\":");
        json::write_str(&mut o, &self.description);
        o.extend_from_slice(b",\"device_kind\":");
        json::write_str(&mut o, &self.device_kind);
        o.extend_from_slice(if self.enabled {
            b",\"enabled\":true}"
        } else {
            b",\"enabled\":false}"
        });
        String::from_utf8(o).unwrap_or_default()
    }

    /// A stored entry back (`None` when it is not one: skipped, never fatal).
    pub fn from_stored(id: &str, json: &str) -> Option<ChannelDef> {
        let id = ChannelId::parse(id)?;
        let mut buf = json.as_bytes().to_vec();
        let v = simd_json::to_owned_value(&mut buf).ok()?;
        Self::from_value(id, &v).ok()
    }

    /// The REST object: `{channel_id, name, description, device_kind, enabled}`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"channel_id\":");
        json::write_u64(out, u64::from(self.id.0));
        out.push(b',');
        out.extend_from_slice(&self.to_json().as_bytes()[1..]);
    }
}

fn data_type_of(v: &OwnedValue, path: &str) -> Result<DataType, ApiError> {
    v.get("data_type")
        .and_then(|x| x.as_str())
        .and_then(DataType::parse)
        .ok_or_else(|| invalid(&format!("{path}data_type"), "must be one of T, S, C, A"))
}

impl PointDef {
    fn from_value(v: &OwnedValue, path: &str) -> Result<PointDef, ApiError> {
        if !v.is_object() {
            return Err(invalid(path.trim_end_matches('.'), "must be an object"));
        }
        let point = v
            .get("point_id")
            .and_then(|x| x.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                invalid(
                    &format!("{path}point_id"),
                    "must be an integer in 0..=4294967295",
                )
            })?;
        let scale = number(v, "scale", path)?.unwrap_or(1.0);
        let (min, max) = (number(v, "min", path)?, number(v, "max", path)?);
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                return Err(invalid(&format!("{path}min"), "must not exceed max"));
            }
        }
        Ok(PointDef {
            data_type: data_type_of(v, path)?,
            point,
            name: text(v, "name", path, MAX_NAME, true)?,
            unit: text(v, "unit", path, MAX_UNIT, false)?,
            scale,
            min,
            max,
        })
    }

    /// A point table: a JSON array of `{data_type, point_id, name, unit?, scale?, min?, max?}`
    /// (each point once).
    pub fn parse_table(body: &[u8], max_depth: usize) -> Result<Vec<PointDef>, ApiError> {
        let v = crate::http::body::parse_body(body, max_depth, "an array of points")?;
        let arr = v.as_array().ok_or_else(|| {
            invalid(
                "body",
                "must be an array of {data_type, point_id, name, unit?, scale?, min?, max?}",
            )
        })?;
        if arr.len() > MAX_POINTS {
            return Err(invalid(
                "body",
                &format!("must hold at most {MAX_POINTS} points"),
            ));
        }
        let mut out = Vec::with_capacity(arr.len());
        for (i, p) in arr.iter().enumerate() {
            out.push(PointDef::from_value(p, &format!("[{i}]."))?);
        }
        unique(&out)?;
        Ok(out)
    }

    /// The hash field: `{T|S|C|A}:{point_id}`.
    pub fn field(&self) -> String {
        format!("{}:{}", self.data_type.as_str(), self.point)
    }

    /// As stored (the fields the library reads for limits: `min`, `max`).
    pub fn to_json(&self) -> String {
        let mut o = Vec::with_capacity(128);
        o.extend_from_slice(b"{\"data_type\":\"");
        o.extend_from_slice(self.data_type.as_str().as_bytes());
        o.extend_from_slice(b"\",\"point_id\":");
        json::write_u64(&mut o, u64::from(self.point));
        o.extend_from_slice(b",\"name\":");
        json::write_str(&mut o, &self.name);
        o.extend_from_slice(b",\"unit\":");
        json::write_str(&mut o, &self.unit);
        o.extend_from_slice(b",\"scale\":");
        write_f64(&mut o, Some(self.scale));
        o.extend_from_slice(b",\"min\":");
        write_f64(&mut o, self.min);
        o.extend_from_slice(b",\"max\":");
        write_f64(&mut o, self.max);
        o.push(b'}');
        String::from_utf8(o).unwrap_or_default()
    }

    pub fn from_stored(json: &str) -> Option<PointDef> {
        let mut buf = json.as_bytes().to_vec();
        let v = simd_json::to_owned_value(&mut buf).ok()?;
        PointDef::from_value(&v, "").ok()
    }

    /// Whether `value` is within the point's limits (a control command's check).
    pub fn allows(&self, value: f64) -> bool {
        self.min.is_none_or(|lo| value >= lo) && self.max.is_none_or(|hi| value <= hi)
    }
}

fn write_f64(o: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(f) => {
            let mut b = ryu::Buffer::new();
            let s = b.format_finite(f);
            o.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes());
        }
        None => o.extend_from_slice(b"null"),
    }
}

fn unique(points: &[PointDef]) -> Result<(), ApiError> {
    let mut seen = std::collections::HashSet::new();
    for (i, p) in points.iter().enumerate() {
        if !seen.insert((p.data_type, p.point)) {
            return Err(invalid(
                &format!("[{i}].point_id"),
                &format!("{}:{} is listed twice", p.data_type.as_str(), p.point),
            ));
        }
    }
    Ok(())
}

/// The CSV header of a point table (RFC 4180; `min`/`max` empty = unbounded).
pub const CSV_HEADER: &str = "data_type,point_id,name,unit,scale,min,max";

/// One CSV field, quoted when it needs to be.
fn csv_field(out: &mut String, s: &str) {
    // A spreadsheet takes a cell led by =, +, -, @, a tab or a CR for a formula (OWASP CSV
    // injection): such text is quoted with a leading ' (stripped again on import).
    const FORMULA: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
    if s.contains([',', '"', '\r', '\n']) || s.starts_with(' ') || s.starts_with(FORMULA) {
        out.push('"');
        if s.starts_with(FORMULA) {
            out.push('\'');
        }
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// A point table as CSV, sorted by (data type, point id).
pub fn to_csv(points: &[PointDef]) -> String {
    let mut sorted: Vec<&PointDef> = points.iter().collect();
    sorted.sort_by_key(|p| (p.data_type, p.point));
    let mut out = String::with_capacity(64 * (points.len() + 1));
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    let num = |v: Option<f64>| {
        let mut o = Vec::new();
        if v.is_some() {
            write_f64(&mut o, v);
        }
        String::from_utf8(o).unwrap_or_default()
    };
    for p in sorted {
        out.push_str(p.data_type.as_str());
        out.push(',');
        out.push_str(&p.point.to_string());
        out.push(',');
        csv_field(&mut out, &p.name);
        out.push(',');
        csv_field(&mut out, &p.unit);
        out.push(',');
        out.push_str(&num(Some(p.scale)));
        out.push(',');
        out.push_str(&num(p.min));
        out.push(',');
        out.push_str(&num(p.max));
        out.push_str("\r\n");
    }
    out
}

/// Splits one CSV record (RFC 4180 quoting) into fields.
fn csv_record(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field"),
            (false, ',') => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quoted field");
    }
    fields.push(cur);
    Ok(fields)
}

/// A point table from CSV with the header [`CSV_HEADER`] (columns in that order; a quoted
/// text field starting with `'` has it removed, as [`to_csv`] adds it). Records do not span
/// lines. Each refusal names the line and column.
pub fn from_csv(text: &str) -> Result<Vec<PointDef>, ApiError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or("").trim_start_matches('\u{feff}');
    if header.trim() != CSV_HEADER {
        return Err(invalid(
            "csv",
            &format!("must start with the header line {CSV_HEADER}"),
        ));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        if out.len() >= MAX_POINTS {
            return Err(invalid(
                "csv",
                &format!("must hold at most {MAX_POINTS} points"),
            ));
        }
        let f = csv_record(line)
            .map_err(|why| invalid(&format!("line {n}"), &format!("is not CSV: {why}")))?;
        if f.len() != 7 {
            return Err(invalid(
                &format!("line {n}"),
                "must have 7 columns: data_type,point_id,name,unit,scale,min,max",
            ));
        }
        let col = |name: &str| format!("line {n} {name}");
        let data_type = DataType::parse(f[0].trim())
            .ok_or_else(|| invalid(&col("data_type"), "must be one of T, S, C, A"))?;
        let point = crate::model::parse_canonical_u32(f[1].trim())
            .ok_or_else(|| invalid(&col("point_id"), "must be an integer in 0..=4294967295"))?;
        let strip = |s: &str| s.strip_prefix('\'').unwrap_or(s).to_string();
        let name = strip(&f[2]);
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(invalid(
                &col("name"),
                &format!("must be 1-{MAX_NAME} bytes"),
            ));
        }
        let unit = strip(&f[3]);
        if unit.len() > MAX_UNIT {
            return Err(invalid(
                &col("unit"),
                &format!("must be at most {MAX_UNIT} bytes"),
            ));
        }
        let num = |c: usize, name: &str| -> Result<Option<f64>, ApiError> {
            let s = f[c].trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| invalid(&col(name), "must be a finite number or empty"))
        };
        let (min, max) = (num(5, "min")?, num(6, "max")?);
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                return Err(invalid(&col("min"), "must not exceed max"));
            }
        }
        out.push(PointDef {
            data_type,
            point,
            name,
            unit,
            scale: num(4, "scale")?.unwrap_or(1.0),
            min,
            max,
        });
    }
    unique(&out).map_err(|e| ApiError::invalid_parameter("csv", &e.details))?;
    Ok(out)
}

/// A point table as the REST array.
pub fn write_points(out: &mut Vec<u8>, points: &[PointDef]) {
    let mut sorted: Vec<&PointDef> = points.iter().collect();
    sorted.sort_by_key(|p| (p.data_type, p.point));
    out.push(b'[');
    for (i, p) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p.to_json().as_bytes());
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_validate_and_round_trip() {
        let c = ChannelDef::parse(
            ChannelId(2001),
            br#"{"name":"PCS 1","device_kind":"pcs"}"#,
            32,
        )
        .unwrap();
        assert!(c.enabled);
        assert_eq!(
            ChannelDef::from_stored("2001", &c.to_json()),
            Some(c.clone())
        );
        let mut out = Vec::new();
        c.write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"channel_id":2001,"name":"PCS 1","description":"","device_kind":"pcs","enabled":true}"#
        );
        for (body, field) in [
            (&br#"{}"#[..], "name"),
            (br#"{"name":""}"#, "name"),
            (br#"{"name":"x","enabled":"yes"}"#, "enabled"),
            (br#"{"name":"x","device_kind":7}"#, "device_kind"),
            (br#"[1]"#, "body"),
        ] {
            let e = ChannelDef::parse(ChannelId(1), body, 32).unwrap_err();
            assert!(e.details.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn point_tables_validate_name_the_field_and_round_trip_through_csv() {
        let t = PointDef::parse_table(
            r#"[{"data_type":"A","point_id":20,"name":"Power set-point","unit":"kW","min":0,"max":100},
                 {"data_type":"T","point_id":1,"name":"Temp, cell \"max\"","unit":"°C","scale":0.1}]"#
                .as_bytes(),
            32,
        )
        .unwrap();
        assert!(t[0].allows(50.0) && !t[0].allows(100.5) && !t[0].allows(-1.0));
        assert!(t[1].allows(1e9));
        let csv = to_csv(&t);
        assert_eq!(
            csv,
            "data_type,point_id,name,unit,scale,min,max\r\nT,1,\"Temp, cell \"\"max\"\"\",°C,0.1,,\r\nA,20,Power set-point,kW,1,0,100\r\n"
        );
        let back = from_csv(&csv).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back.contains(&t[0]) && back.contains(&t[1]));
        for (p, stored) in t.iter().map(|p| (p, p.to_json())) {
            assert_eq!(PointDef::from_stored(&stored).as_ref(), Some(p));
        }
        for (body, field) in [
            (&br#"[{"data_type":"X","point_id":1,"name":"a"}]"#[..], "[0].data_type"),
            (br#"[{"data_type":"T","point_id":-1,"name":"a"}]"#, "[0].point_id"),
            (br#"[{"data_type":"T","point_id":1}]"#, "[0].name"),
            (br#"[{"data_type":"A","point_id":1,"name":"a","min":5,"max":1}]"#, "[0].min"),
            (br#"[{"data_type":"A","point_id":1,"name":"a","max":"x"}]"#, "[0].max"),
            (br#"[{"data_type":"T","point_id":1,"name":"a"},{"data_type":"T","point_id":1,"name":"b"}]"#, "[1].point_id"),
            (br#"{"data_type":"T"}"#, "body"),
        ] {
            let e = PointDef::parse_table(body, 32).unwrap_err();
            assert!(e.details.starts_with(field), "{field}: {e}");
        }
        for (csv, field) in [
            ("nope\r\n", "csv"),
            (
                "data_type,point_id,name,unit,scale,min,max\nQ,1,a,,,,\n",
                "line 2 data_type",
            ),
            (
                "data_type,point_id,name,unit,scale,min,max\nT,01,a,,,,\n",
                "line 2 point_id",
            ),
            (
                "data_type,point_id,name,unit,scale,min,max\nT,1,,,,,\n",
                "line 2 name",
            ),
            (
                "data_type,point_id,name,unit,scale,min,max\nA,1,a,,,x,\n",
                "line 2 min",
            ),
            (
                "data_type,point_id,name,unit,scale,min,max\nT,1,a,,\n",
                "line 2",
            ),
            (
                "data_type,point_id,name,unit,scale,min,max\nT,1,\"a,,,,,\n",
                "line 2",
            ),
            (
                "data_type,point_id,name,unit,scale,min,max\nT,1,a,,,,\nT,1,b,,,,\n",
                "csv",
            ),
        ] {
            let e = from_csv(csv).unwrap_err();
            assert!(e.details.starts_with(field), "{field}: {e}");
        }
        // A formula-looking name is exported quoted with a leading ' and imported back as is.
        let f = PointDef {
            name: "=SUM(A1)".into(),
            ..t[0].clone()
        };
        let csv = to_csv(std::slice::from_ref(&f));
        assert!(csv.contains("\"'=SUM(A1)\""), "{csv}");
        assert_eq!(from_csv(&csv).unwrap()[0].name, "=SUM(A1)");
        let f = PointDef {
            name: "\t=1+1".into(),
            ..t[0].clone()
        };
        let csv = to_csv(std::slice::from_ref(&f));
        assert!(csv.contains("\"'\t=1+1\""), "{csv}");
        assert_eq!(from_csv(&csv).unwrap()[0].name, "\t=1+1");
    }
}
