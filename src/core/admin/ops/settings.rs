//! Settings of the whole configuration (today: `unmatched_status`).

use serde_json::Value;

use super::{body_object, known, merge_patch, Applied};
use crate::core::admin::error::ApiError;
use crate::core::admin::state::{State, DEFAULT_UNMATCHED_STATUS};
use crate::core::admin::views;

pub fn replace(state: &mut State, body: &Value, patch: bool) -> Result<Applied, ApiError> {
    body_object(body)?;
    let input = if patch {
        let mut cur = views::settings(state);
        merge_patch(&mut cur, body);
        cur
    } else {
        body.clone()
    };
    let obj = body_object(&input)?;
    known(obj, &["unmatched_status"])?;
    state.settings.unmatched_status = match obj.get("unmatched_status") {
        None | Some(Value::Null) => DEFAULT_UNMATCHED_STATUS,
        Some(v) => match v.as_u64() {
            Some(s @ (401 | 404)) => s as u16,
            _ => return Err(ApiError::invalid("unmatched_status", "must be 401 or 404")),
        },
    };
    let mut a = Applied::new(
        200,
        "settings.update",
        "settings".into(),
        views::settings(state),
    );
    a.doc_path = Some(String::new());
    Ok(a)
}
