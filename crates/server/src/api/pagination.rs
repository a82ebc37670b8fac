//! Cursor pagination: `limit` (1–500, default 50) and an opaque `cursor`; responses carry
//! `next_cursor` (`null` on the last page). Listings are ordered newest first by arrival, which
//! is stable: new items never shift later pages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::problem::{FieldError, Problem};

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 500;

/// One page of a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// Items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Validates `limit`.
pub fn limit(requested: Option<u32>) -> Result<u32, Problem> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Problem::validation(
            format!("limit must be between 1 and {MAX_LIMIT}"),
            vec![FieldError {
                field: "limit".into(),
                message: format!("must be between 1 and {MAX_LIMIT}"),
            }],
        )),
    }
}

/// Decodes a cursor into the sequence number to continue below.
pub fn decode(cursor: Option<&str>) -> Result<Option<i64>, Problem> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("s:").and_then(|n| n.parse::<i64>().ok()))
        .map(Some)
        .ok_or_else(|| {
            Problem::validation(
                "cursor is not one this server issued",
                vec![FieldError {
                    field: "cursor".into(),
                    message: "invalid cursor".into(),
                }],
            )
        })
}

/// Builds a page: fetches `limit + 1` rows to know whether another page exists.
pub fn page<R, T>(
    mut rows: Vec<R>,
    limit: u32,
    seq: impl Fn(&R) -> i64,
    map: impl Fn(R) -> T,
) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| {
            rows.last()
                .map(|r| URL_SAFE_NO_PAD.encode(format!("s:{}", seq(r))))
        })
        .flatten();
    Page {
        items: rows.into_iter().map(map).collect(),
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let page = page(vec![5i64, 4, 3], 2, |r| *r, |r| r);
        assert_eq!(page.items, vec![5, 4]);
        assert_eq!(decode(page.next_cursor.as_deref()).expect("valid"), Some(4));
        assert!(decode(Some("nope")).is_err());
        assert!(limit(Some(0)).is_err() && limit(Some(501)).is_err());
        assert_eq!(limit(None).expect("default"), DEFAULT_LIMIT);
        let last = super::page(vec![1i64], 2, |r| *r, |r| r);
        assert!(last.next_cursor.is_none());
    }
}
