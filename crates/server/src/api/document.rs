//! Conventions applied to the generated OpenAPI document as a whole, so that it describes what
//! the server really sends and stays valid for code generators and schema-driven testers:
//!
//! - error responses are `application/problem+json` (the handlers' `body = Problem` would
//!   otherwise be documented as `application/json`);
//! - every response has a `description` (required by OpenAPI);
//! - operation ids are unique (utoipa uses the handler's name, and every resource has a `list`);
//! - every `POST` documents the optional `Idempotency-Key` header and its `400`/`409`/`422`;
//! - operations with a JSON body document `400`, `413` and `415`.

use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder};

use super::MAX_BODY_BYTES;
use super::extract::MAX_JSON_DEPTH;
use super::idempotency::HEADER as IDEMPOTENCY_KEY;

const PROBLEM_JSON: &str = "application/problem+json";

/// Applies the conventions above.
pub fn apply(api: &mut OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        let resource: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != "v1" && !s.starts_with('{'))
            .collect();
        for (operation, is_post) in [
            (item.get.as_mut(), false),
            (item.post.as_mut(), true),
            (item.put.as_mut(), false),
            (item.patch.as_mut(), false),
            (item.delete.as_mut(), false),
        ]
        .into_iter()
        .filter_map(|(op, post)| op.map(|op| (op, post)))
        {
            unique_operation_id(operation, &resource);
            if operation.request_body.is_some() {
                add_body_errors(operation);
            }
            if is_post {
                add_idempotency_key(operation);
            }
            describe_responses(operation);
        }
    }
}

/// `{handler}_{resource path}`: `list_sources`, `get_destinations`, `list_sources_rejections`;
/// a handler named like its last path segment is not repeated (`replay`, `attempts`).
fn unique_operation_id(operation: &mut Operation, resource: &[&str]) {
    let handler = operation.operation_id.clone().unwrap_or_default();
    let mut parts = vec![handler.as_str()];
    let resource = match resource.split_last() {
        Some((last, rest)) if *last == handler => rest,
        _ => resource,
    };
    parts.extend_from_slice(resource);
    operation.operation_id = Some(parts.join("_"));
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn add_body_errors(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    let add = [
        (
            "400",
            format!("The body is not JSON, or is nested deeper than {MAX_JSON_DEPTH} levels."),
        ),
        (
            "413",
            format!("The body is larger than {MAX_BODY_BYTES} bytes."),
        ),
        ("415", "The body is not `application/json`.".to_owned()),
    ];
    for (status, description) in add {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(&description));
    }
}

fn add_idempotency_key(operation: &mut Operation) {
    let parameter = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes the request safe to retry: the first response to a key is recorded and \
             returned again (with `idempotent-replayed: true`) for the same body; the same key \
             with a different body is `422 idempotency_key_reused`.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[\\x21-\\x7e]+$")),
        ))
        .build();
    debug_assert_eq!(parameter.name.to_ascii_lowercase(), IDEMPOTENCY_KEY);
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(parameter));
    let responses = &mut operation.responses.responses;
    responses.entry("400".to_owned()).or_insert_with(|| {
        problem_response("The Idempotency-Key header is not 1–255 visible ASCII characters.")
    });
    responses.entry("409".to_owned()).or_insert_with(|| {
        problem_response(
            "A request with this Idempotency-Key is still being processed \
             (`idempotency_in_progress`).",
        )
    });
    responses.entry("422".to_owned()).or_insert_with(|| {
        problem_response("This Idempotency-Key was used with a different body.")
    });
}

/// Default descriptions, and problem responses as `application/problem+json`.
fn describe_responses(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if response.description.is_empty() {
            response.description = match status.as_str() {
                "200" => "OK.",
                "201" => "Created.",
                "204" => "Done; no content.",
                "400" => "Malformed request.",
                "401" => "Missing, unknown or revoked token (`WWW-Authenticate: Bearer`).",
                "403" => "The token's scope does not allow this operation.",
                "404" => "No such resource.",
                "409" => {
                    "Conflict: `managed_by_config`, `already_exists`, `in_use` or \
                     `idempotency_in_progress` (see `code`)."
                }
                "422" => "Validation failed: see `code`, `detail` and `errors[]`.",
                _ => "See the problem's `code`.",
            }
            .to_owned();
        }
        if status.starts_with('4') || status.starts_with('5') {
            response.content = std::mem::take(&mut response.content)
                .into_iter()
                .map(|(media_type, content)| {
                    if media_type == "application/json" {
                        (PROBLEM_JSON.to_owned(), content)
                    } else {
                        (media_type, content)
                    }
                })
                .collect();
        }
    }
}
