//! `GET /api/channels/{id}/history`: the parameters (validated, each refusal naming its
//! parameter), the InfluxQL they become (built only from validated numbers and enum names — no
//! client text reaches it), and InfluxDB's answer read back into records.

use super::line::{MEASUREMENT, TEXT_SUFFIX};
use crate::error::ApiError;
use crate::http::Query;
use crate::model::{ChannelId, DataType, PointId, Value};
use simd_json::prelude::*;
use simd_json::OwnedValue;

/// Bounds of a history query (`[history]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest `end_time - start_time`, seconds.
    pub max_range_secs: i64,
    /// Most buckets a downsampled query may span.
    pub max_buckets: i64,
    /// Most records one CSV export holds (JSON: `limit`, at most 1000).
    pub csv_max_records: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_range_secs: 366 * 86_400,
            max_buckets: 50_000,
            csv_max_records: 100_000,
        }
    }
}

/// Most raw records one JSON answer holds (the seed's `limit` range).
pub const MAX_JSON_LIMIT: u32 = 1000;
/// Raw records per answer when `limit` is not given (the seed's default).
pub const DEFAULT_LIMIT: u32 = 100;
/// Records of one timestamp beyond `limit` a page may hold: a page never splits a timestamp
/// (a channel has at most four data types).
pub const PAGE_SLACK: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    Mean,
    Min,
    Max,
    Last,
    Count,
}

impl Agg {
    pub const ALL: [Agg; 5] = [Agg::Mean, Agg::Min, Agg::Max, Agg::Last, Agg::Count];

    pub fn as_str(self) -> &'static str {
        match self {
            Agg::Mean => "mean",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Last => "last",
            Agg::Count => "count",
        }
    }

    fn parse(s: &str) -> Option<Agg> {
        Agg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// `last` and `count` also apply to text values; the others only to numbers.
    fn takes_text(self) -> bool {
        matches!(self, Agg::Last | Agg::Count)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// A validated history query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    pub channel: ChannelId,
    /// Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// Unix milliseconds, exclusive.
    pub to_ms: i64,
    pub data_type: Option<DataType>,
    pub point: Option<PointId>,
    /// Raw records: at most this many (a page may end up to [`PAGE_SLACK`] later).
    pub limit: u32,
    /// Downsampling: bucket width (seconds) and aggregate.
    pub bucket: Option<(u32, Agg)>,
    pub format: Format,
}

impl HistoryQuery {
    /// `start_time`/`end_time` (Unix seconds; default the hour before `now_ms`), `after`
    /// (Unix ms, exclusive: the next page), `data_type`, `point_id`, `limit`, `interval` +
    /// `agg`, `format` (`json`|`csv`).
    pub fn parse(
        channel: ChannelId,
        q: &Query,
        now_ms: i64,
        limits: &Limits,
    ) -> Result<HistoryQuery, ApiError> {
        let end = q
            .unix_secs("end_time")?
            .unwrap_or(now_ms.div_euclid(1000) + 1);
        let start = q.unix_secs("start_time")?.unwrap_or(end - 3600);
        if start >= end {
            return Err(ApiError::invalid_parameter(
                "start_time",
                &format!("must be before end_time ({start} >= {end})"),
            ));
        }
        if end - start > limits.max_range_secs {
            return Err(ApiError::invalid_parameter(
                "end_time",
                &format!(
                    "must be at most {} s after start_time (history.max_range_secs)",
                    limits.max_range_secs
                ),
            ));
        }
        let mut from_ms = start * 1000;
        let to_ms = end * 1000;
        if let Some(a) = q.get("after")? {
            let after = (!a.is_empty() && a.len() <= 15 && a.bytes().all(|b| b.is_ascii_digit()))
                .then(|| a.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| {
                    ApiError::invalid_parameter("after", "must be a Unix time in milliseconds")
                })?;
            // Past the end the page is empty; the bound stays one InfluxDB can represent.
            from_ms = from_ms.max((after + 1).min(to_ms));
        }
        let format = match q.get("format")? {
            None | Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(f) => {
                return Err(ApiError::invalid_parameter(
                    "format",
                    &format!("must be json or csv, got '{f}'"),
                ))
            }
        };
        let max_limit = match format {
            Format::Json => MAX_JSON_LIMIT,
            Format::Csv => limits.csv_max_records.max(1),
        };
        let limit = q.u32_in("limit", 1, max_limit)?.unwrap_or(match format {
            Format::Json => DEFAULT_LIMIT,
            Format::Csv => max_limit,
        });
        let interval = q.u32_in("interval", 1, 366 * 86_400)?;
        let agg = match q.get("agg")? {
            None => None,
            Some(a) => Some(Agg::parse(a).ok_or_else(|| {
                ApiError::invalid_parameter(
                    "agg",
                    &format!("must be one of mean, min, max, last, count, got '{a}'"),
                )
            })?),
        };
        let bucket = match (interval, agg) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ApiError::invalid_parameter(
                    "agg",
                    "is required with interval (mean, min, max, last or count)",
                ))
            }
            (None, Some(_)) => {
                return Err(ApiError::invalid_parameter(
                    "interval",
                    "is required with agg (bucket width in seconds)",
                ))
            }
            (Some(i), Some(a)) => {
                let buckets = (end - start + i64::from(i) - 1) / i64::from(i);
                if buckets > limits.max_buckets {
                    return Err(ApiError::invalid_parameter(
                        "interval",
                        &format!(
                            "makes {buckets} buckets; at most {} (history.max_buckets): widen the interval or narrow the range",
                            limits.max_buckets
                        ),
                    ));
                }
                Some((i, a))
            }
        };
        Ok(HistoryQuery {
            channel,
            from_ms,
            to_ms,
            data_type: q.data_type("data_type")?,
            point: q.u32_in("point_id", 0, u32::MAX)?,
            limit,
            bucket,
            format,
        })
    }

    /// The InfluxQL statement (timestamps asked for as `epoch=ms`).
    pub fn influxql(&self) -> String {
        let mut w = format!(
            "\"channel_id\" = '{}' AND time >= {}ms AND time < {}ms",
            self.channel.0, self.from_ms, self.to_ms
        );
        if let Some(t) = self.data_type {
            w.push_str(&format!(" AND \"data_type\" = '{}'", t.as_str()));
        }
        match self.bucket {
            None => {
                let fields = match self.point {
                    None => "*".to_string(),
                    Some(p) => format!("\"{p}\", \"{p}{TEXT_SUFFIX}\", \"data_type\""),
                };
                format!(
                    "SELECT {fields} FROM \"{MEASUREMENT}\" WHERE {w} ORDER BY time ASC LIMIT {}",
                    u64::from(self.limit) + u64::from(PAGE_SLACK) + 1
                )
            }
            Some((secs, agg)) => {
                let f = agg.as_str();
                let fields = match self.point {
                    None => format!("{f}(*)"),
                    Some(p) if agg.takes_text() => {
                        format!("{f}(\"{p}\") AS \"{p}\", {f}(\"{p}{TEXT_SUFFIX}\") AS \"{p}{TEXT_SUFFIX}\"")
                    }
                    Some(p) => format!("{f}(\"{p}\") AS \"{p}\""),
                };
                // Buckets start at start_time, not at the epoch's multiples of the width.
                let offset = (self.from_ms / 1000).rem_euclid(i64::from(secs));
                format!(
                    "SELECT {fields} FROM \"{MEASUREMENT}\" WHERE {w} GROUP BY time({secs}s, {offset}s), \"data_type\" fill(none)"
                )
            }
        }
    }
}

/// One record: a timestamp and data type with the values of its points.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub time_ms: i64,
    pub data_type: DataType,
    pub values: Vec<(PointId, Value)>,
}

/// What a query gave: the records (ascending) and, for raw records, whether more follow.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub records: Vec<Record>,
    /// More raw records follow the page: ask again with `after` = the last record's time.
    pub more: bool,
}

/// Why InfluxDB's answer could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAnswer(pub String);

/// Reads InfluxDB's `/query` JSON for `q` into a page.
pub fn parse_answer(q: &HistoryQuery, body: &[u8]) -> Result<Page, BadAnswer> {
    let bad = |why: &str| BadAnswer(why.to_string());
    let mut buf = body.to_vec();
    let v = simd_json::to_owned_value(&mut buf).map_err(|e| BadAnswer(e.to_string()))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(bad(e));
    }
    let result = v
        .get("results")
        .and_then(|r| r.as_array())
        .and_then(|r| r.first())
        .ok_or_else(|| bad("no results"))?;
    if let Some(e) = result.get("error").and_then(|e| e.as_str()) {
        return Err(bad(e));
    }
    let mut records = Vec::new();
    let empty = Vec::new();
    let series = result
        .get("series")
        .and_then(|s| s.as_array())
        .unwrap_or(&empty);
    for s in series {
        let tag_type = s
            .get("tags")
            .and_then(|t| t.get("data_type"))
            .and_then(|t| t.as_str())
            .and_then(DataType::parse);
        let columns: Vec<&str> = s
            .get("columns")
            .and_then(|c| c.as_array())
            .ok_or_else(|| bad("a series without columns"))?
            .iter()
            .map(|c| c.as_str().unwrap_or(""))
            .collect();
        // Each column: the point it holds and whether it is text, or the data_type tag.
        let roles: Vec<Column> = columns.iter().map(|c| Column::of(c)).collect();
        let rows = s.get("values").and_then(|r| r.as_array()).unwrap_or(&empty);
        for row in rows {
            let row = row
                .as_array()
                .ok_or_else(|| bad("a row that is not an array"))?;
            let time_ms = row
                .first()
                .and_then(|t| t.as_i64())
                .ok_or_else(|| bad("a row without an integer time"))?;
            let mut data_type = tag_type;
            let mut values = Vec::new();
            for (cell, role) in row.iter().zip(&roles).skip(1) {
                match role {
                    Column::DataType => {
                        data_type = data_type.or_else(|| cell.as_str().and_then(DataType::parse))
                    }
                    Column::Point(p, text) => {
                        if let Some(v) = value_of(cell, *text) {
                            values.push((*p, v));
                        }
                    }
                    Column::Other => {}
                }
            }
            let Some(data_type) = data_type else { continue };
            if values.is_empty() {
                continue;
            }
            values.sort_by_key(|(p, _)| *p);
            values.dedup_by_key(|(p, _)| *p);
            records.push(Record {
                time_ms,
                data_type,
                values,
            });
        }
    }
    records.sort_by_key(|r| (r.time_ms, r.data_type as u8));
    let mut more = false;
    if q.bucket.is_none() && records.len() > q.limit as usize {
        // End the page at a timestamp boundary: the records after `limit` that share the
        // last kept timestamp stay (at most PAGE_SLACK of them).
        let last = records[q.limit as usize - 1].time_ms;
        let keep = records
            .iter()
            .position(|r| r.time_ms > last)
            .unwrap_or(records.len())
            // Real answers hold at most four records (types) per timestamp; a malformed one
            // with more is still cut to the bound.
            .min(q.limit as usize + PAGE_SLACK as usize);
        more = keep < records.len();
        records.truncate(keep);
    }
    Ok(Page { records, more })
}

enum Column {
    DataType,
    Point(PointId, bool),
    Other,
}

impl Column {
    fn of(name: &str) -> Column {
        if name == "data_type" {
            return Column::DataType;
        }
        // `mean(*)` names its columns `mean_1`; explicit fields are aliased to the point.
        let bare = Agg::ALL
            .iter()
            .find_map(|a| {
                name.strip_prefix(a.as_str())
                    .and_then(|r| r.strip_prefix('_'))
            })
            .unwrap_or(name);
        let (digits, text) = match bare.strip_suffix(TEXT_SUFFIX) {
            Some(d) => (d, true),
            None => (bare, false),
        };
        match crate::model::parse_canonical_u32(digits) {
            Some(p) => Column::Point(p, text),
            None => Column::Other,
        }
    }
}

fn value_of(cell: &OwnedValue, text: bool) -> Option<Value> {
    if cell.is_null() {
        return None;
    }
    if let Some(s) = cell.as_str() {
        // Recorded text is never numeric (numbers are float fields), so it stays a string.
        return text.then(|| Value::from_redis(s));
    }
    let f = cell.cast_f64().filter(|f| f.is_finite())?;
    let mut b = ryu::Buffer::new();
    let s = b.format_finite(f);
    Some(Value::from_redis(s.strip_suffix(".0").unwrap_or(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(qs: &str) -> Result<HistoryQuery, ApiError> {
        HistoryQuery::parse(
            ChannelId(1001),
            &Query::parse(qs).unwrap(),
            1_736_841_600_000,
            &Limits::default(),
        )
    }

    fn refused(qs: &str) -> String {
        let e = parse(qs).unwrap_err();
        e.details.split(' ').next().unwrap().to_string()
    }

    #[test]
    fn the_seed_example_parses() {
        let q = parse("start_time=1736755200&end_time=1736841600&data_type=T&point_id=1&limit=100")
            .unwrap();
        assert_eq!((q.from_ms, q.to_ms), (1_736_755_200_000, 1_736_841_600_000));
        assert_eq!(
            (q.data_type, q.point, q.limit),
            (Some(DataType::Telemetry), Some(1), 100)
        );
        assert_eq!(
            q.influxql(),
            "SELECT \"1\", \"1_text\", \"data_type\" FROM \"voltage_points\" WHERE \"channel_id\" = '1001' AND time >= 1736755200000ms AND time < 1736841600000ms AND \"data_type\" = 'T' ORDER BY time ASC LIMIT 104"
        );
    }

    #[test]
    fn defaults_are_the_last_hour_and_100_records() {
        let q = parse("").unwrap();
        assert_eq!(q.to_ms - q.from_ms, 3_600_000);
        assert_eq!((q.limit, q.format, q.bucket), (100, Format::Json, None));
    }

    #[test]
    fn downsampling_starts_buckets_at_start_time() {
        let q = parse("start_time=1736755217&end_time=1736758817&interval=60&agg=mean").unwrap();
        assert_eq!(
            q.influxql(),
            "SELECT mean(*) FROM \"voltage_points\" WHERE \"channel_id\" = '1001' AND time >= 1736755217000ms AND time < 1736758817000ms GROUP BY time(60s, 17s), \"data_type\" fill(none)"
        );
        let q = parse("start_time=0&end_time=60&interval=1&agg=last&point_id=7").unwrap();
        assert!(q
            .influxql()
            .starts_with("SELECT last(\"7\") AS \"7\", last(\"7_text\") AS \"7_text\" FROM"));
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (qs, name) in [
            ("start_time=10&end_time=10", "start_time"),
            ("start_time=x", "start_time"),
            ("end_time=-1", "end_time"),
            ("start_time=0&end_time=99999999", "end_time"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("agg=mean", "interval"),
            ("interval=60", "agg"),
            ("interval=60&agg=median", "agg"),
            (
                "start_time=0&end_time=86400&interval=1&agg=mean",
                "interval",
            ),
            ("format=xml", "format"),
            ("after=soon", "after"),
            ("end_time=9999999999", "end_time"),
            ("start_time=9000000001", "start_time"),
            ("data_type=X", "data_type"),
            ("point_id=-1", "point_id"),
            ("limit=1&limit=2", "limit"),
        ] {
            assert_eq!(refused(qs), name, "{qs}");
        }
        // CSV allows more records than JSON.
        assert_eq!(parse("format=csv&limit=5000").unwrap().limit, 5000);
        assert_eq!(parse("format=csv").unwrap().limit, 100_000);
    }

    #[test]
    fn after_moves_the_start() {
        let q = parse("start_time=1736755200&end_time=1736841600&after=1736755300123").unwrap();
        assert_eq!(q.from_ms, 1_736_755_300_124);
        // Past the end: an empty page, never a bound InfluxDB cannot parse.
        let q = parse("start_time=1736755200&end_time=1736841600&after=999999999999999").unwrap();
        assert_eq!(q.from_ms, 1_736_841_600_000);
    }

    const RAW: &str = r#"{"results":[{"statement_id":0,"series":[{"name":"voltage_points","columns":["time","1","10","11_text","2","channel_id","data_type"],"values":[[1700000000100,null,1,"open",null,"1001","S"],[1700000000100,25.6,null,null,101.3,"1001","T"],[1700000000200,26,null,null,null,"1001","T"],[1700000000300,null,null,"a\nb","2",null,"S"]]}]}]}"#;

    #[test]
    fn raw_rows_become_records() {
        let q = parse("").unwrap();
        let page = parse_answer(&q, RAW.as_bytes()).unwrap();
        let shown: Vec<String> = page
            .records
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.time_ms,
                    r.data_type.as_str(),
                    String::from_utf8(crate::wire::values::values(&r.values)).unwrap()
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                r#"1700000000100 T {"1":25.6,"2":101.3}"#,
                r#"1700000000100 S {"10":1,"11":"open"}"#,
                r#"1700000000200 T {"1":26}"#,
                r#"1700000000300 S {"11":"a\nb"}"#,
            ]
        );
        assert!(!page.more);
    }

    #[test]
    fn a_page_ends_at_a_timestamp_boundary() {
        let q = parse("limit=1").unwrap();
        let page = parse_answer(&q, RAW.as_bytes()).unwrap();
        assert_eq!(page.records.len(), 2, "both records of 1700000000100");
        assert!(page.more);
        let q = parse("limit=3").unwrap();
        let page = parse_answer(&q, RAW.as_bytes()).unwrap();
        assert_eq!(page.records.len(), 3);
        assert!(page.more);
    }

    #[test]
    fn a_page_stays_bounded_whatever_the_answer() {
        let q = parse("limit=2").unwrap();
        let rows: Vec<String> = (0..20)
            .map(|i| format!(r#"[1700000000100,{i},"T"]"#))
            .collect();
        let body = format!(
            r#"{{"results":[{{"series":[{{"columns":["time","1","data_type"],"values":[{}]}}]}}]}}"#,
            rows.join(",")
        );
        let page = parse_answer(&q, body.as_bytes()).unwrap();
        assert_eq!(page.records.len(), 5);
        assert!(page.more);
    }

    #[test]
    fn aggregated_series_merge_by_time() {
        let body = r#"{"results":[{"statement_id":0,"series":[{"name":"voltage_points","tags":{"data_type":"S"},"columns":["time","mean_1","mean_10"],"values":[[1700000000000,null,0.5]]},{"name":"voltage_points","tags":{"data_type":"T"},"columns":["time","mean_1","mean_10"],"values":[[1700000000000,25.8,null],[1700000001000,26,null]]}]}]}"#;
        let q = parse("interval=1&agg=mean").unwrap();
        let page = parse_answer(&q, body.as_bytes()).unwrap();
        let types: Vec<_> = page
            .records
            .iter()
            .map(|r| (r.time_ms, r.data_type))
            .collect();
        assert_eq!(
            types,
            [
                (1_700_000_000_000, DataType::Telemetry),
                (1_700_000_000_000, DataType::Signal),
                (1_700_000_001_000, DataType::Telemetry)
            ]
        );
        assert_eq!(page.records[0].values[0].1.json(), "25.8");
    }

    #[test]
    fn errors_are_reported() {
        let q = parse("").unwrap();
        for body in [
            r#"{"error":"database not found: v"}"#,
            r#"{"results":[{"statement_id":0,"error":"boom"}]}"#,
            r#"{"results":[]}"#,
            "not json",
            r#"{"results":[{"series":[{"columns":["time"],"values":[["x"]]}]}]}"#,
        ] {
            assert!(parse_answer(&q, body.as_bytes()).is_err(), "{body}");
        }
        assert_eq!(
            parse_answer(&q, br#"{"results":[{"statement_id":0}]}"#).unwrap(),
            Page::default()
        );
    }
}
