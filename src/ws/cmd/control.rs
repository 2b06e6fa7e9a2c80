//! `control {channel_id, point_id, command_type, value, …}`: until the control path exists,
//! answered with `error SERVICE_UNAVAILABLE` carrying the `request_id`.

use super::Ctx;
use crate::error::{ApiError, ErrorCode};
use simd_json::BorrowedValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control;

impl Control {
    pub fn parse(_data: Option<&BorrowedValue>) -> Result<Control, ApiError> {
        Ok(Control)
    }

    pub fn apply(self, ctx: &mut Ctx<'_>) {
        ctx.error(&ApiError::new(
            ErrorCode::ServiceUnavailable,
            "Control unavailable",
            "the control path is not enabled on this gateway yet",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::LIMITS;
    use super::super::{parse, Command};
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            parse(r#"{"type":"control","data":{}}"#, &LIMITS)
                .command
                .unwrap(),
            Command::Control(Control)
        );
    }
}
