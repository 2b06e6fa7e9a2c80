//! Request bodies as JSON: bounded in nesting before the parser sees them (it recurses per
//! level and has no limit of its own), refused with `INVALID_JSON` and what was expected.

use crate::error::{ApiError, ErrorCode};

/// A request body as JSON, within `max_depth` nesting (checked first, with one linear scan:
/// the parser recurses per level). `shape` says what the body must be, for the error.
pub fn parse_body(
    body: &[u8],
    max_depth: usize,
    shape: &str,
) -> Result<simd_json::OwnedValue, ApiError> {
    if !crate::json::nesting_within(body, max_depth) {
        return Err(ErrorCode::InvalidJson.context(format!(
            "the body nests arrays/objects deeper than {max_depth} levels"
        )));
    }
    let mut buf = body.to_vec();
    simd_json::to_owned_value(&mut buf)
        .map_err(|_| ErrorCode::InvalidJson.context(format!("the body must be {shape}")))
}
