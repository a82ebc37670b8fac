//! The HTTP client of the `/v1` management API: bearer token, JSON in and out, RFC 9457
//! problems turned into `error: <title>: <detail>` failures (exit 1), unreachable servers into
//! exit 4 with a hint, and cursor pagination.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use url::Url;

use super::{EXIT_UNREACHABLE, Failure};

/// Largest page the API serves.
pub const MAX_PAGE: u32 = 500;

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Remote {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Whether the URL came from `--url` or `SWITCHBOARD_URL` (not the default).
    pub explicit: bool,
    /// Bearer token.
    pub token: Option<String>,
}

/// A response read in full.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Body bytes.
    pub body: Vec<u8>,
    /// The `Location` header, for redirects.
    pub location: Option<String>,
}

impl Reply {
    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> anyhow::Result<Value> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the server answered {} with a body that is not JSON",
                self.status
            )
        })
    }
}

/// A client of one Switchboard server.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// Builds a client for `remote`.
    pub fn new(remote: &Remote) -> anyhow::Result<Self> {
        let base = Url::parse(&remote.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                Failure::new(
                    1,
                    format!(
                        "--url `{}` is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)",
                        remote.url
                    ),
                )
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            base,
            token: remote.token.clone().filter(|t| !t.is_empty()),
        })
    }

    /// The URL of `segments` under the base URL (each segment percent-encoded).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends a request and reads the whole response; transport failures become failures.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        authenticate: bool,
    ) -> anyhow::Result<Reply> {
        let mut request = self.http.request(method, url.clone()).headers(headers);
        if authenticate && let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        Ok(Reply {
            status,
            body: body.to_vec(),
            location,
        })
    }

    /// Calls the API: `method` on `/v1/<segments>` with an optional JSON body. Returns the JSON
    /// answer (`null` for `204`); error statuses become failures.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut path = vec!["v1"];
        path.extend_from_slice(segments);
        let mut url = self.url(&path);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut headers = HeaderMap::new();
        let body = match body {
            Some(value) => {
                headers.insert(CONTENT_TYPE, "application/json".parse()?);
                Some(serde_json::to_vec(value)?)
            }
            None => None,
        };
        let reply = self.send(method, url, headers, body, true).await?;
        if !reply.status.is_success() {
            return Err(self.api_error(&reply).into());
        }
        reply.json()
    }

    /// `GET /v1/<segments>?query`.
    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.call(Method::GET, segments, query, None).await
    }

    /// `POST /v1/<segments>` with a JSON body.
    pub async fn post(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.call(Method::POST, segments, &[], Some(body)).await
    }

    /// `PUT /v1/<segments>` with a JSON body.
    pub async fn put(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PUT, segments, &[], Some(body)).await
    }

    /// `PATCH /v1/<segments>` with a JSON merge patch.
    pub async fn patch(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PATCH, segments, &[], Some(body)).await
    }

    /// `DELETE /v1/<segments>`.
    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<()> {
        self.call(Method::DELETE, segments, &[], None)
            .await
            .map(drop)
    }

    /// A listing followed across pages: `want` items (all with `None`) from `cursor` on.
    /// Returns `{"items": [...], "next_cursor": …}` like one API page.
    pub async fn list(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        want: Option<u32>,
        cursor: Option<String>,
    ) -> anyhow::Result<Value> {
        collect_pages(want, cursor, |size, cursor| {
            let mut query = query.to_vec();
            query.push(("limit", size.to_string()));
            if let Some(cursor) = cursor {
                query.push(("cursor", cursor));
            }
            async move { self.get(segments, &query).await }
        })
        .await
    }

    /// The failure for an error response: the problem's title, detail and field errors.
    pub fn api_error(&self, reply: &Reply) -> Failure {
        let mut message = match serde_json::from_slice::<Value>(&reply.body) {
            Ok(problem) if problem["title"].is_string() || problem["detail"].is_string() => {
                problem_message(&problem, reply.status)
            }
            _ => {
                let text = String::from_utf8_lossy(&reply.body);
                let text = text.trim();
                let excerpt: String = text.chars().take(300).collect();
                if excerpt.is_empty() {
                    format!("HTTP {}", reply.status)
                } else {
                    format!("HTTP {}: {excerpt}", reply.status)
                }
            }
        };
        if reply.status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            message.push_str("\nhint: pass --token or set SWITCHBOARD_TOKEN");
        }
        Failure::new(1, message)
    }

    fn transport_error(&self, error: reqwest::Error) -> anyhow::Error {
        let mut causes = Vec::new();
        let mut source: Option<&dyn std::error::Error> = Some(&error);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !causes.iter().any(|c: &String| c.contains(&text)) {
                causes.push(text);
            }
            source = cause.source();
        }
        let cause = causes.last().cloned().unwrap_or_default();
        let base = self.base.as_str().trim_end_matches('/');
        if error.is_connect() || error.is_timeout() {
            Failure::new(
                EXIT_UNREACHABLE,
                format!(
                    "cannot reach Switchboard at {base}: {cause}\n\
                     hint: is the server running? Check --url or SWITCHBOARD_URL"
                ),
            )
            .into()
        } else {
            Failure::new(
                1,
                format!("request to {base} failed: {}", causes.join(": ")),
            )
            .into()
        }
    }
}

/// `<title>: <detail>` and one indented line per field error.
pub fn problem_message(problem: &Value, status: StatusCode) -> String {
    let title = problem["title"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| status.to_string());
    let mut message = match problem["detail"].as_str().filter(|d| !d.is_empty()) {
        Some(detail) => format!("{title}: {detail}"),
        None => title,
    };
    for error in problem["errors"].as_array().into_iter().flatten() {
        let field = error["field"].as_str().unwrap_or_default();
        let text = error["message"].as_str().unwrap_or_default();
        if field.is_empty() {
            message.push_str(&format!("\n  - {text}"));
        } else {
            message.push_str(&format!("\n  - {field}: {text}"));
        }
    }
    message
}

/// Follows `next_cursor`: calls `fetch(page_size, cursor)` until `want` items (all with `None`)
/// are collected or the listing ends.
pub async fn collect_pages<F, Fut>(
    want: Option<u32>,
    mut cursor: Option<String>,
    mut fetch: F,
) -> anyhow::Result<Value>
where
    F: FnMut(u32, Option<String>) -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    let mut items: Vec<Value> = Vec::new();
    loop {
        let remaining = want.map_or(MAX_PAGE, |w| w.saturating_sub(items.len() as u32));
        let page = fetch(remaining.clamp(1, MAX_PAGE), cursor.take()).await?;
        if let Some(page_items) = page["items"].as_array() {
            items.extend(page_items.iter().cloned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        let enough = want.is_some_and(|w| items.len() as u32 >= w);
        if cursor.is_none() || enough {
            break;
        }
    }
    let mut page = json!({ "items": items });
    if let Some(cursor) = cursor {
        page["next_cursor"] = json!(cursor);
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_as_title_detail_and_fields() {
        let problem = json!({
            "title": "Validation failed",
            "detail": "invalid resource",
            "errors": [{"field": "url", "message": "expected a URL"}, {"field": "", "message": "x"}]
        });
        assert_eq!(
            problem_message(&problem, StatusCode::UNPROCESSABLE_ENTITY),
            "Validation failed: invalid resource\n  - url: expected a URL\n  - x"
        );
    }

    #[tokio::test]
    async fn pages_are_followed_until_enough() {
        let fetch = |size: u32, cursor: Option<String>| async move {
            let start: u32 = cursor.as_deref().map_or(0, |c| c.parse().unwrap_or(0));
            let end = (start + size).min(7);
            let mut page = json!({ "items": (start..end).collect::<Vec<_>>() });
            if end < 7 {
                page["next_cursor"] = json!(end.to_string());
            }
            Ok(page)
        };
        let all = collect_pages(None, None, fetch).await.expect("all");
        assert_eq!(all["items"].as_array().map(Vec::len), Some(7));
        assert!(all.get("next_cursor").is_none());
        let some = collect_pages(Some(3), None, fetch).await.expect("three");
        assert_eq!(some, json!({"items": [0, 1, 2], "next_cursor": "3"}));
    }
}
