//! Small pieces shared by the dashboard's edit forms: reading optional numbers and JSON from
//! form fields (with the field named in the error), and the enable/disable and delete buttons.

use std::str::FromStr;

use maud::{Markup, html};
use serde_json::Value;

use super::enc;
use super::layout::csrf;
use super::session::Session;
use crate::problem::Problem;

/// An optional number from a form field: empty is `None`; anything else must parse.
pub fn number<T: FromStr>(field: &str, text: &str) -> Result<Option<T>, Problem> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| Problem::field(field, format!("`{text}` is not a valid number here")))
}

/// Optional JSON from a form field: empty is `None`; anything else must parse.
pub fn json(field: &str, text: &str) -> Result<Option<Value>, Problem> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Problem::field(field, format!("not valid JSON: {e}")))
}

/// Header lines for a textarea, one `Name: value` each.
pub fn header_lines(headers: &std::collections::BTreeMap<String, String>) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Name: value` lines (blank lines ignored) as a header map.
pub fn parse_headers(text: &str) -> Result<std::collections::BTreeMap<String, String>, Problem> {
    let mut headers = std::collections::BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Problem::field(
                "headers",
                format!("line {}: write `Name: value`", number + 1),
            ));
        };
        headers.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok(headers)
}

/// A JSON value as indented text for a textarea (empty for `null`).
pub fn pretty(value: &Value) -> String {
    if value.is_null() {
        return String::new();
    }
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A number field's text from a document value (empty when absent).
pub fn text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The form posting to `{base}/{id}/enable` or `…/disable`, whichever changes `enabled`;
/// disabling asks first, with `pause_note` saying what a pause does to this kind of resource.
pub fn enable_toggle(
    session: &Session,
    base: &str,
    id: &str,
    enabled: bool,
    pause_note: &str,
) -> Markup {
    let (action, label, confirm) = if enabled {
        (
            "disable",
            "Disable",
            Some(format!("Disable {id}? {pause_note}")),
        )
    } else {
        ("enable", "Enable", None)
    };
    html! {
        form.inline method="post" action={ (base) "/" (enc(id)) "/" (action) } {
            (csrf(session))
            button type="submit" aria-label={ (label) " " (id) } data-confirm=[confirm] { (label) }
        }
    }
}

/// The `enabled` value an `…/enable` or `…/disable` action asks for.
pub fn toggle(action: &str) -> Result<bool, Problem> {
    match action {
        "enable" => Ok(true),
        "disable" => Ok(false),
        other => Err(Problem::not_found(format!("no action `{other}`"))),
    }
}

/// The form posting to `{base}/{id}/delete`, behind a confirmation.
pub fn delete_button(session: &Session, base: &str, id: &str, what: &str) -> Markup {
    html! {
        form.inline method="post" action={ (base) "/" (enc(id)) "/delete" } {
            (csrf(session))
            button.danger type="submit" aria-label={ "Delete " (what) " " (id) }
                data-confirm={ "Delete " (what) " " (id) "? This cannot be undone." } { "Delete" }
        }
    }
}

/// Where a resource is managed, and what that means for editing it here.
pub fn managed_note(managed_by: &str) -> Markup {
    html! {
        @if managed_by == "config" {
            p.hint role="note" {
                "Defined in the configuration file: change it there and reload. The dashboard edits, pauses and deletes resources created through the API or here."
            }
        }
    }
}

/// Whether a refused change is the user's to fix (invalid input, a conflict), so its form is
/// shown again with the input and the reason, rather than an error page.
pub fn shown_again(problem: &Problem) -> bool {
    matches!(problem.status, 409 | 422)
}

/// A page that shows a refused form again answers with the problem's status.
pub fn with_status_of(
    mut response: axum::response::Response,
    problem: Option<&Problem>,
) -> axum::response::Response {
    if let Some(problem) = problem {
        *response.status_mut() = axum::http::StatusCode::from_u16(problem.status)
            .unwrap_or(axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    }
    response
}

/// An inline error above a form that was sent back with the user's input.
pub fn error_box(problem: Option<&Problem>) -> Markup {
    html! {
        @if let Some(problem) = problem {
            div.error role="alert" {
                p { (problem.detail) }
                @if !problem.errors.is_empty() {
                    ul { @for e in &problem.errors { li { code { (e.field) } ": " (e.message) } } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_json_name_their_field() {
        assert_eq!(number::<u64>("max", " ").expect("empty"), None);
        assert_eq!(number::<u64>("max", "12").expect("ok"), Some(12));
        let problem = number::<u64>("max", "1e").expect_err("bad");
        assert_eq!(problem.errors[0].field, "max");
        assert_eq!(json("settings", "").expect("empty"), None);
        let problem = json("settings", "{nope").expect_err("bad");
        assert_eq!(problem.errors[0].field, "settings");
        assert_eq!(pretty(&Value::Null), "");
        assert_eq!(text_of(&serde_json::json!(5)), "5");
        assert_eq!(text_of(&serde_json::json!("15s")), "15s");
    }

    #[test]
    fn header_lines_parse_and_bad_lines_are_named() {
        let headers =
            parse_headers("X-Team: billing\n\n Authorization : Bearer a:b \n").expect("ok");
        assert_eq!(headers["X-Team"], "billing");
        assert_eq!(headers["Authorization"], "Bearer a:b");
        assert_eq!(
            parse_headers(&header_lines(&headers)).expect("again"),
            headers
        );
        let problem = parse_headers("ok: 1\nno colon").expect_err("bad");
        assert!(problem.detail.contains("line 2"), "{}", problem.detail);
    }
}
