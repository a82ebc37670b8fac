//! The committed API documents match the code: `docs/openapi.json` is the OpenAPI document that
//! `switchboard_server::api::openapi()` generates (and `/v1/openapi.json` serves), and
//! `docs/api.md` is the Markdown reference rendered from it.
//!
//! After changing the API, regenerate both with
//! `SWITCHBOARD_UPDATE_OPENAPI=1 cargo test -p switchboard-server --test openapi`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{Map, Value};
use switchboard_server::api;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

const UPDATE_VAR: &str = "SWITCHBOARD_UPDATE_OPENAPI";

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// The document as committed: pretty JSON with a trailing newline.
fn openapi_text() -> String {
    let document = serde_json::to_string_pretty(&api::openapi()).expect("serialize OpenAPI");
    format!("{document}\n")
}

/// Compares `expected` with the committed file, or rewrites the file when asked to.
fn check_or_update(file: &str, expected: &str) {
    let path = docs_dir().join(file);
    if std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1") {
        std::fs::write(&path, expected).expect("write the generated document");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != expected {
        let line = committed
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(expected.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "docs/{file} is out of date with the code (first difference at line {line}).\n\
             Regenerate it with `{UPDATE_VAR}=1 cargo test -p switchboard-server --test openapi` \
             and commit the result."
        );
    }
}

#[test]
fn committed_openapi_matches_the_code() {
    check_or_update("openapi.json", &openapi_text());
}

#[test]
fn committed_api_reference_matches_the_code() {
    let document: Value = serde_json::from_str(&openapi_text()).expect("parse OpenAPI");
    check_or_update("api.md", &render_markdown(&document));
}

#[test]
fn document_is_openapi_3_1_and_every_operation_is_documented() {
    let document: Value = serde_json::from_str(&openapi_text()).expect("parse OpenAPI");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.keys().all(|p| p.starts_with("/v1/")), "all under /v1");
    let mut operation_ids = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in operations(item) {
            let what = format!("{method} {path}");
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(
                operation_ids.insert(id.to_owned()),
                "{what}: operationId {id} is unique"
            );
            if method == "post" {
                assert!(
                    operation["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key")),
                    "{what} documents Idempotency-Key"
                );
            }
            assert!(
                operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{what} has a tag"
            );
            assert!(
                operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{what} has a summary"
            );
            assert!(
                operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty()),
                "{what} requires a token"
            );
            let responses = operation["responses"].as_object().expect("responses");
            assert!(responses.contains_key("401"), "{what} documents 401");
            for (status, response) in responses {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{what} {status} has a description (required by OpenAPI)"
                );
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{what} {status} is application/problem+json"
                    );
                }
            }
        }
    }
}

// --- Markdown rendering -------------------------------------------------------------------------

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn operations(item: &Value) -> Vec<(&'static str, &Value)> {
    METHODS
        .iter()
        .filter_map(|m| item.get(*m).map(|op| (*m, op)))
        .collect()
}

/// Name of a `$ref`'d schema.
fn ref_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// A one-line rendering of a schema: `string`, `integer (int32)`, `[Source]`, `Page_Delivery`.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = ref_name(reference);
        return format!("[`{name}`](#schema-{})", name.to_ascii_lowercase());
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema.get(combinator).and_then(Value::as_array) {
            let rendered: Vec<String> = parts.iter().map(type_of).collect();
            let joiner = if combinator == "allOf" { " & " } else { " | " };
            return rendered.join(joiner);
        }
    }
    let types: Vec<String> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let number = |key: &str| schema.get(key).and_then(Value::as_i64);
    let range = |min: Option<i64>, max: Option<i64>, unit: &str| match (min, max) {
        (Some(min), Some(max)) => Some(format!("{min}–{max}{unit}")),
        (Some(min), None) if min > 0 => Some(format!("≥ {min}{unit}")),
        (None, Some(max)) => Some(format!("≤ {max}{unit}")),
        _ => None,
    };
    let mut rendered: Vec<String> = types
        .iter()
        .map(|t| {
            let mut notes: Vec<String> = Vec::new();
            let base = match t.as_str() {
                "array" => {
                    notes.extend(range(number("minItems"), number("maxItems"), " items"));
                    format!(
                        "array of {}",
                        schema.get("items").map_or_else(|| "any".into(), type_of)
                    )
                }
                "object" => match schema.get("additionalProperties") {
                    Some(inner) if inner.is_object() => format!("map of {}", type_of(inner)),
                    _ => "object".into(),
                },
                "null" => return "null".to_owned(),
                other => {
                    notes.extend(
                        schema
                            .get("format")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    );
                    notes.extend(range(number("minimum"), number("maximum"), ""));
                    notes.extend(range(number("minLength"), number("maxLength"), " chars"));
                    notes.extend(
                        schema
                            .get("pattern")
                            .and_then(Value::as_str)
                            .map(|p| format!("pattern `{p}`")),
                    );
                    other.to_owned()
                }
            };
            if notes.is_empty() {
                base
            } else {
                format!("{base} ({})", notes.join(", "))
            }
        })
        .collect();
    if rendered.is_empty() {
        rendered.push("any".into());
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        rendered.push(format!("one of {}", values.join(", ")));
    }
    rendered.join(" or ")
}

/// Table cells must not break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn intro() -> String {
    format!(
        "\
# Management API reference

<!-- Generated from the OpenAPI document by crates/server/tests/openapi.rs; do not edit.
     Regenerate: SWITCHBOARD_UPDATE_OPENAPI=1 cargo test -p switchboard-server --test openapi -->

The management API lives under `/v1` on the same listener as ingest (`/in/{{source}}`). The
machine-readable OpenAPI 3.1 document is served at `/v1/openapi.json` and committed as
[`openapi.json`](openapi.json); this page is rendered from it.

## Conventions

**Authentication.** Every `/v1` operation needs `Authorization: Bearer <token>`. Tokens are
created through `POST /v1/tokens` (shown once, prefixed `sb_`, stored hashed) or come from the
bootstrap admin token (`SWITCHBOARD_ADMIN_TOKEN` or `[server] admin_token`; when neither is set,
the first start creates an admin token and prints it once). Scopes: `read` (inspect), `write`
(also change resources and replay), `admin` (also manage tokens); each includes the ones before
it. Reading (`GET`) needs `read`; creating, replacing, deleting and replaying need `write`, and so
does revealing a destination's secret; `/v1/tokens` needs `admin`. A missing, unknown or revoked token is answered `401` with `WWW-Authenticate: Bearer`; a
token whose scope is too low gets `403`. `/in/*`, `/healthz` and `/readyz` need no token;
`/metrics` needs a `read` token when `server.metrics_require_token = true`.

**Errors.** Every error is an RFC 9457 problem, `content-type: application/problem+json`:
`type`, `title`, `status`, `detail` and a stable `code` for programs (`unauthorized`,
`forbidden`, `not_found`, `validation_failed`, `managed_by_config`, `already_exists`, `in_use`,
`idempotency_key_reused`, `payload_too_large`, `unsupported_media_type`, `bad_request`, …).
Validation errors (`422 validation_failed`) list the offending fields in `errors[]` as
`{{\"field\", \"message\"}}`; unknown fields in request bodies and unknown query parameters are
rejected by name.

**Resources from the configuration file.** Sources, destinations and routes defined in the
configuration file are applied at every start and show `\"managed_by\": \"config\"`; they are
read-only here (`409 managed_by_config`). Resources created through the API show
`\"managed_by\": \"api\"` and persist in the store, secrets sealed at rest. Destination secrets are
shown as `********`; `GET /v1/destinations/{{id}}/secret` (write scope) reveals one.

**Changing part of a resource.** `PATCH /v1/sources/{{id}}`, `/v1/destinations/{{id}}` and
`/v1/routes/{{id}}` take a JSON merge patch (RFC 7396) of the body `PUT` takes: the keys given
replace theirs, objects merge key by key, `null` removes a key. `{{\"enabled\": false}}` pauses the
resource. Secrets and credentials are shown as `********` (in a source's `verifier`, in a
kind's `settings`, an HTTP destination's `secret`); sent back unchanged, in a `PUT` or a
`PATCH`, the marker keeps the current value, so a `GET`–edit–`PUT` never loses a secret. In a
list that grew or shrank, the markers stand for the current values in order: a source patched
with `{{\"verifier\": {{\"secrets\": [\"new\", \"********\"]}}}}` verifies with the new secret and the old
one (a rotation).

**Pausing.** `enabled: false` on a source, destination or route pauses it without losing
anything: a webhook source answers `503 source_disabled` with `Retry-After: 300` (the sender
keeps the event and retries), a fetching source stops fetching (its broker or API keeps what it
holds); a destination keeps its deliveries `pending` and sends them once enabled again; a route
creates no deliveries for events that arrive meanwhile (replay them later to send them). The
same key works in the configuration file.

**Pagination.** Listings of events and deliveries are pages ordered newest first by arrival:
`limit` ({min}–{max}, default {default}) and `cursor`. A response carries `next_cursor` when
another page exists; pass it as `cursor` to continue. New arrivals never shift later pages. An
out-of-range `limit` or a cursor this server did not issue is `422`.

**Idempotency.** A `POST` may carry `Idempotency-Key: <1–255 visible ASCII characters>`. The
first response to a key (per token, method and path) is recorded; repeating the request with the
same key and the same body returns the recorded response with `idempotent-replayed: true` and
does nothing again. The same key with a different body is `422 idempotency_key_reused`; a key
whose first request is still running is `409 idempotency_in_progress`. Server errors are not
recorded, so such a request may be retried with the same key.

**Limits.** Request bodies up to {body} bytes (256 KiB; larger: `413`), JSON nested at most
{depth} levels deep (deeper: `400`), request bodies must be `application/json` (otherwise
`415`), page size {min}–{max}. Requests must arrive completely within `server.request_timeout`
(default 30 s), or they are answered `408`.

",
        min = 1,
        max = api::pagination::MAX_LIMIT,
        default = api::pagination::DEFAULT_LIMIT,
        body = api::MAX_BODY_BYTES,
        depth = api::extract::MAX_JSON_DEPTH,
    )
}

/// Renders the reference: conventions, then each tag's operations, then the schemas.
fn render_markdown(document: &Value) -> String {
    let mut out = intro();
    let empty = Map::new();
    let paths = document["paths"].as_object().unwrap_or(&empty);
    let tags: Vec<(String, String)> = document["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or_default().to_owned(),
                        t["description"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();

    out.push_str("## Operations\n\n");
    for (tag, _) in &tags {
        for (path, item) in paths {
            for (method, operation) in operations(item) {
                if has_tag(operation, tag) {
                    let _ = writeln!(
                        out,
                        "- [`{} {path}`](#{}) — {}",
                        method.to_ascii_uppercase(),
                        anchor(method, path),
                        operation["summary"].as_str().unwrap_or_default()
                    );
                }
            }
        }
    }
    out.push('\n');

    for (tag, description) in &tags {
        let _ = writeln!(out, "## {}\n", title_case(tag));
        if !description.is_empty() {
            let _ = writeln!(out, "{description}.\n");
        }
        for (path, item) in paths {
            for (method, operation) in operations(item) {
                if has_tag(operation, tag) {
                    render_operation(&mut out, method, path, operation);
                }
            }
        }
    }

    out.push_str("## Schemas\n\n");
    let order = property_order();
    if let Some(schemas) = document["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let fields = order.get(name).map_or(&[][..], Vec::as_slice);
            render_schema(&mut out, name, schema, fields);
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn has_tag(operation: &Value, tag: &str) -> bool {
    operation["tags"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t == tag))
}

fn title_case(tag: &str) -> String {
    let mut chars = tag.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The anchor GitHub derives from an operation heading.
fn anchor(method: &str, path: &str) -> String {
    format!("{method}-{path}")
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

fn render_operation(out: &mut String, method: &str, path: &str, operation: &Value) {
    let _ = writeln!(out, "### {} {path}\n", method.to_ascii_uppercase());
    if let Some(summary) = operation["summary"].as_str() {
        let _ = writeln!(out, "{summary}\n");
    }
    if let Some(description) = operation["description"].as_str()
        && Some(description) != operation["summary"].as_str()
    {
        let _ = writeln!(out, "{description}\n");
    }
    let scopes: Vec<&str> = operation["security"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys())
        })
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if !scopes.is_empty() {
        let _ = writeln!(out, "Authentication: `Authorization: Bearer <token>`.\n");
    }
    if let Some(parameters) = operation["parameters"].as_array()
        && !parameters.is_empty()
    {
        out.push_str("| Parameter | In | Required | Type | Description |\n");
        out.push_str("|---|---|---|---|---|\n");
        for parameter in parameters {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                parameter["name"].as_str().unwrap_or_default(),
                parameter["in"].as_str().unwrap_or_default(),
                if parameter["required"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                },
                cell(&type_of(&parameter["schema"])),
                cell(parameter["description"].as_str().unwrap_or_default()),
            );
        }
        out.push('\n');
    }
    if let Some(content) = operation["requestBody"]["content"].as_object() {
        for (media_type, body) in content {
            let _ = writeln!(
                out,
                "Request body (`{media_type}`): {}\n",
                type_of(&body["schema"])
            );
        }
    }
    if let Some(responses) = operation["responses"].as_object() {
        out.push_str("| Status | Description | Body |\n|---|---|---|\n");
        for (status, response) in responses {
            let body = response["content"]
                .as_object()
                .map(|content| {
                    content
                        .iter()
                        .map(|(media_type, c)| {
                            format!("{} (`{media_type}`)", type_of(&c["schema"]))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {status} | {} | {} |",
                cell(response["description"].as_str().unwrap_or_default()),
                cell(&body)
            );
        }
        out.push('\n');
    }
}

/// Declaration order of each component schema's properties (a `serde_json::Value` map sorts
/// its keys; utoipa's document keeps the order of the Rust fields).
fn property_order() -> HashMap<String, Vec<String>> {
    fn names(schema: &RefOr<Schema>, out: &mut Vec<String>) {
        match schema {
            RefOr::T(Schema::Object(object)) => out.extend(object.properties.keys().cloned()),
            RefOr::T(Schema::AllOf(all)) => all.items.iter().for_each(|item| names(item, out)),
            _ => {}
        }
    }
    let document = api::openapi();
    let mut order = HashMap::new();
    for (name, schema) in document.components.iter().flat_map(|c| &c.schemas) {
        let mut fields = Vec::new();
        names(schema, &mut fields);
        order.insert(name.clone(), fields);
    }
    order
}

fn render_schema(out: &mut String, name: &str, schema: &Value, order: &[String]) {
    let _ = writeln!(
        out,
        "<a id=\"schema-{}\"></a>\n### {name}\n",
        name.to_ascii_lowercase()
    );
    if let Some(description) = schema["description"].as_str() {
        let _ = writeln!(out, "{description}\n");
    }
    let mut rows = Vec::new();
    collect_properties(schema, &mut rows);
    rows.sort_by_key(|(field, ..)| {
        order
            .iter()
            .position(|f| f == field)
            .map_or(usize::MAX, |i| i + 1)
            .min(if field == "…" { 0 } else { usize::MAX })
    });
    if rows.is_empty() {
        let _ = writeln!(out, "Type: {}\n", type_of(schema));
        return;
    }
    out.push_str("| Field | Type | Required | Description |\n|---|---|---|---|\n");
    for (field, ty, required, description) in rows {
        let _ = writeln!(
            out,
            "| `{field}` | {} | {} | {} |",
            cell(&ty),
            if required { "yes" } else { "no" },
            cell(&description)
        );
    }
    out.push('\n');
}

/// Properties of an object schema, including those of `allOf` parts (flattened structs).
fn collect_properties(schema: &Value, rows: &mut Vec<(String, String, bool, String)>) {
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            if let Some(reference) = part.get("$ref").and_then(Value::as_str) {
                rows.push((
                    "…".into(),
                    type_of(part),
                    true,
                    format!("all fields of `{}`", ref_name(reference)),
                ));
            } else {
                collect_properties(part, rows);
            }
        }
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = schema["properties"].as_object() {
        for (field, property) in properties {
            rows.push((
                field.clone(),
                type_of(property),
                required.contains(&field.as_str()),
                property["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
}
