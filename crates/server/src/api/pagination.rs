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

/// Prefix of cursors holding a sequence number (listings by arrival).
const SEQ: &str = "s:";
/// Prefix of cursors holding a text key (listings by id or key, such as sync runs and
/// conflicts).
const KEY: &str = "r:";

fn encode(prefix: &str, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{prefix}{value}"))
}

/// The `422` for a cursor this server did not issue.
fn invalid_cursor() -> Problem {
    Problem::validation(
        "cursor is not one this server issued",
        vec![FieldError {
            field: "cursor".into(),
            message: "invalid cursor".into(),
        }],
    )
}

/// The text after `prefix` in a cursor this server issued.
fn decode_with(prefix: &str, cursor: &str) -> Result<String, Problem> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(prefix).map(str::to_owned))
        .ok_or_else(invalid_cursor)
}

/// The cursor that continues below sequence number `seq`.
pub fn encode_seq(seq: i64) -> String {
    encode(SEQ, &seq.to_string())
}

/// Decodes a cursor into the sequence number to continue below.
pub fn decode(cursor: Option<&str>) -> Result<Option<i64>, Problem> {
    cursor
        .map(|cursor| {
            decode_with(SEQ, cursor)?
                .parse::<i64>()
                .map_err(|_| invalid_cursor())
        })
        .transpose()
}

/// Decodes a cursor into the text key to continue after (or before, as the listing goes).
pub fn decode_key(cursor: Option<&str>) -> Result<Option<String>, Problem> {
    cursor.map(|cursor| decode_with(KEY, cursor)).transpose()
}

/// Builds a page from `limit + 1` rows: the rows beyond `limit` only say that another page
/// exists, whose cursor is made by `cursor` from the page's last row.
fn page_with<R, T>(
    mut rows: Vec<R>,
    limit: u32,
    cursor: impl Fn(&R) -> String,
    map: impl Fn(R) -> T,
) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last().map(&cursor)).flatten();
    Page {
        items: rows.into_iter().map(map).collect(),
        next_cursor,
    }
}

/// Builds a page: fetches `limit + 1` rows to know whether another page exists.
pub fn page<R, T>(
    rows: Vec<R>,
    limit: u32,
    seq: impl Fn(&R) -> i64,
    map: impl Fn(R) -> T,
) -> Page<T> {
    page_with(rows, limit, |r| encode_seq(seq(r)), map)
}

/// [`page`] for listings paged by a text key (see [`decode_key`]).
pub fn page_by_key<R, T>(
    rows: Vec<R>,
    limit: u32,
    key: impl Fn(&R) -> &str,
    map: impl Fn(R) -> T,
) -> Page<T> {
    page_with(rows, limit, |r| encode(KEY, key(r)), map)
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
        assert!(decode(Some(&encode(SEQ, "x"))).is_err());
    }

    #[test]
    fn key_cursors_round_trip_and_stay_apart_from_seq_cursors() {
        let rows = vec!["run-c".to_owned(), "run-b".into(), "run-a".into()];
        let page = page_by_key(rows, 2, |r| r.as_str(), |r| r);
        assert_eq!(page.items, ["run-c", "run-b"]);
        let cursor = page.next_cursor.expect("more");
        assert_eq!(
            decode_key(Some(&cursor)).expect("valid").as_deref(),
            Some("run-b")
        );
        assert!(decode(Some(&cursor)).is_err());
        assert!(decode_key(Some(&encode_seq(4))).is_err());
        assert_eq!(decode_key(None).expect("none"), None);
        assert_eq!(decode(Some(&encode_seq(-3))).expect("valid"), Some(-3));
    }
}
