//! A sync job's settings compiled once (jq programs, cron, headers) and the paging state
//! machine: which request comes next, and what a page says about the one after it.

use croner::Cron;
use jiff::tz::TimeZone;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_core::config::{Pagination, SyncConfig};
use switchboard_jq::{Limits, Program};

use crate::connections::client::ApiRequest;

/// Bounds for the `records` program on a whole page.
pub fn page_limits() -> Limits {
    Limits {
        timeout: std::time::Duration::from_secs(5),
        max_output_bytes: 256 << 20,
        max_outputs: 100_000,
    }
}

/// Bounds for per-record programs (key, mapping, cursor).
pub fn record_limits() -> Limits {
    Limits {
        timeout: std::time::Duration::from_millis(250),
        max_output_bytes: 4 << 20,
        max_outputs: 1,
    }
}

/// The compiled parts of a [`SyncConfig`].
#[derive(Debug)]
pub struct Plan {
    /// Selects a page's records.
    pub records: Program,
    /// A record's primary key.
    pub key: Program,
    /// A record's destination shape.
    pub mapping: Option<Program>,
    /// A record's incremental cursor value.
    pub cursor_field: Option<Program>,
    /// The next-page token of `cursor` pagination.
    pub cursor_path: Option<Program>,
    /// When runs start by themselves.
    pub schedule: Option<(Cron, TimeZone)>,
    /// Extra request headers.
    pub headers: HeaderMap,
}

impl Plan {
    /// Compiles `config`'s programs and parses its schedule and headers.
    pub fn new(config: &SyncConfig) -> Result<Self, String> {
        let compile = |what: &str, source: &str| {
            Program::compile(source).map_err(|e| format!("sync `{}`: {what}: {e}", config.id))
        };
        let schedule = match &config.schedule {
            None => None,
            Some(expression) => {
                let cron = crate::sources::schedule::parse_cron(expression)
                    .map_err(|e| format!("sync `{}`: {e}", config.id))?;
                let zone = match &config.timezone {
                    None => TimeZone::UTC,
                    Some(name) => TimeZone::get(name).map_err(|e| {
                        format!("sync `{}`: timezone `{name}` is unknown ({e})", config.id)
                    })?,
                };
                Some((cron, zone))
            }
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("sync `{}`: `{name}` is not a header name", config.id))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                format!(
                    "sync `{}`: the value of header `{name}` is not valid",
                    config.id
                )
            })?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        Ok(Self {
            records: compile("records", &config.records)?,
            key: compile("key", &config.key)?,
            mapping: config
                .mapping
                .as_deref()
                .map(|m| compile("mapping", m))
                .transpose()?,
            cursor_field: config
                .incremental
                .as_ref()
                .map(|i| compile("incremental.cursor_field", &i.cursor_field))
                .transpose()?,
            cursor_path: match &config.pagination {
                Pagination::Cursor { cursor_path, .. } => {
                    Some(compile("pagination.cursor_path", cursor_path)?)
                }
                _ => None,
            },
            schedule,
            headers,
        })
    }
}

/// Where the listing stands: the request to make next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Next {
    /// The first page.
    Start,
    /// A `cursor` page with this token.
    Cursor {
        /// The token.
        token: String,
    },
    /// An `offset` page.
    Offset {
        /// The offset.
        offset: u64,
    },
    /// A `page` page.
    Page {
        /// The page number.
        page: u64,
    },
    /// A `link` page: path and query below the connection's base URL.
    Link {
        /// Path below the base URL.
        path: String,
        /// Query string.
        query: Option<String>,
    },
}

/// Builds the request for `next`. `since` is the incremental starting point (sent as
/// `param`), `None` on a full listing.
pub fn request(
    config: &SyncConfig,
    plan: &Plan,
    next: &Next,
    since: Option<(&str, &str)>,
) -> ApiRequest {
    let (path, base_query) = match config.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (config.path.as_str(), None),
    };
    let mut params: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: String| params.push((name.to_owned(), value));
    let (path, base_query) = match next {
        // A next link is complete: it carries every parameter of the listing.
        Next::Link { path, query } => (path.as_str(), query.as_deref()),
        _ => {
            if let Some((param, value)) = since {
                add(param, value.to_owned());
            }
            match (&config.pagination, next) {
                (
                    Pagination::Cursor {
                        cursor_param,
                        limit_param,
                        page_size,
                        ..
                    },
                    _,
                ) => {
                    if let Some(limit) = limit_param {
                        add(limit, page_size.to_string());
                    }
                    if let Next::Cursor { token } = next {
                        add(cursor_param, token.clone());
                    }
                }
                (
                    Pagination::Offset {
                        offset_param,
                        limit_param,
                        page_size,
                    },
                    _,
                ) => {
                    let offset = match next {
                        Next::Offset { offset } => *offset,
                        _ => 0,
                    };
                    add(offset_param, offset.to_string());
                    add(limit_param, page_size.to_string());
                }
                (
                    Pagination::Page {
                        page_param,
                        first_page,
                        limit_param,
                        page_size,
                    },
                    _,
                ) => {
                    let page = match next {
                        Next::Page { page } => *page,
                        _ => *first_page,
                    };
                    add(page_param, page.to_string());
                    if let Some(limit) = limit_param {
                        add(limit, page_size.to_string());
                    }
                }
                (
                    Pagination::Link {
                        limit_param: Some(limit),
                        page_size,
                    },
                    _,
                ) => add(limit, page_size.to_string()),
                _ => {}
            }
            (path, base_query)
        }
    };
    let mut query = base_query.unwrap_or_default().to_owned();
    if !params.is_empty() {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&encoded);
    }
    let mut request = ApiRequest::new(reqwest::Method::GET, path);
    request.query = (!query.is_empty()).then_some(query);
    request.headers = plan.headers.clone();
    request
}

/// What follows a page: `None` when the listing is complete.
///
/// `count` is the number of records the page held; `base` the connection's base URL (next
/// links must stay below it: the connection's credentials go with them).
pub fn after(
    config: &SyncConfig,
    plan: &Plan,
    current: &Next,
    body: &Value,
    link_header: Option<&str>,
    count: usize,
    base: &str,
) -> Result<Option<Next>, String> {
    Ok(match &config.pagination {
        Pagination::None => None,
        Pagination::Cursor { .. } => {
            let Some(program) = &plan.cursor_path else {
                return Err("cursor pagination without cursor_path".into());
            };
            let token = program
                .run_one(body, &record_limits())
                .map_err(|e| format!("pagination.cursor_path: {e}"))?;
            match token {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(Next::Cursor { token: s }),
                Value::Number(n) => Some(Next::Cursor {
                    token: n.to_string(),
                }),
                other => {
                    return Err(format!(
                        "pagination.cursor_path must yield a string, a number or null, not {}",
                        kind_of(&other)
                    ));
                }
            }
        }
        Pagination::Offset { page_size, .. } => {
            if count < *page_size as usize {
                None
            } else {
                let offset = match current {
                    Next::Offset { offset } => *offset,
                    _ => 0,
                };
                Some(Next::Offset {
                    offset: offset + count as u64,
                })
            }
        }
        Pagination::Page {
            page_size,
            first_page,
            ..
        } => {
            if count < *page_size as usize {
                None
            } else {
                let page = match current {
                    Next::Page { page } => *page,
                    _ => *first_page,
                };
                Some(Next::Page { page: page + 1 })
            }
        }
        Pagination::Link { .. } => match link_header.and_then(next_link) {
            None => None,
            Some(url) => Some(below_base(&url, base)?),
        },
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
pub fn next_link(header: &str) -> Option<String> {
    // Links are separated by commas outside `<…>`; URLs may contain commas.
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let after = &rest[end + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &after[params_end..];
    }
}

/// `url` as a path and query below `base`; refused when it points elsewhere.
fn below_base(url: &str, base: &str) -> Result<Next, String> {
    let target = url::Url::parse(url).map_err(|e| format!("next link `{url}`: {e}"))?;
    let base_url = url::Url::parse(base).map_err(|e| format!("base URL: {e}"))?;
    let base_path = base_url.path().trim_end_matches('/');
    let below = target.path() == base_path
        || target
            .path()
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.starts_with('/'));
    if target.origin() != base_url.origin() || !below {
        return Err(format!(
            "the next link `{}` leaves the connection's base URL; it is not followed (the \
             connection's credentials would go with it)",
            target.origin().ascii_serialization()
        ));
    }
    Ok(Next::Link {
        path: target.path()[base_path.len()..].to_owned(),
        query: target.query().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found_among_others() {
        let header = r#"<https://api.example.com/items?page=1>; rel="prev", <https://api.example.com/items?page=3&a=b,c>; rel="next", <https://api.example.com/items?page=9>; rel="last""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.example.com/items?page=3&a=b,c")
        );
        assert_eq!(next_link(r#"<https://x/y>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(
            next_link("<https://x/y?p=2>; rel=next").as_deref(),
            Some("https://x/y?p=2")
        );
    }

    #[test]
    fn next_links_stay_below_the_base_url() {
        assert_eq!(
            below_base(
                "http://127.0.0.1:9/v1/items?page=2",
                "http://127.0.0.1:9/v1"
            )
            .expect("below"),
            Next::Link {
                path: "/items".into(),
                query: Some("page=2".into())
            }
        );
        for elsewhere in [
            "http://evil.example/v1/items",
            "http://127.0.0.1:10/v1/items",
            "http://127.0.0.1:9/v2/items",
            "http://127.0.0.1:9/v1x/items",
        ] {
            assert!(
                below_base(elsewhere, "http://127.0.0.1:9/v1").is_err(),
                "{elsewhere}"
            );
        }
    }
}
