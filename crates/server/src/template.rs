//! String templates with jq placeholders: `https://api.example.com/{{ .body.repo }}/issues`.
//!
//! A destination's URL, headers, e-mail subject and recipients, object keys… may contain
//! `{{ <jq> }}` placeholders. Each is compiled once (a bad expression is refused when the
//! destination is configured, with its position) and evaluated per delivery against the same
//! input as route filters (`{"body", "headers", "type", "source", "received_at"}`). A string
//! result is inserted as is, any other value as compact JSON, `null` as nothing. Use jq's
//! formats to escape: `{{ .body.name | @uri }}`. `{{{{` writes a literal `{{`.
//!
//! Rendering runs jq, so it happens with the route transform on the blocking pool
//! ([`TemplateSet::render`]), bounded by the same limits.

use serde_json::Value;

/// One parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Expr(switchboard_jq::Program),
}

impl Template {
    /// Parses `source`; the error names the placeholder and the jq error.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            text.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            if let Some(literal) = after.strip_prefix("{{") {
                text.push_str("{{");
                rest = literal;
                continue;
            }
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "unclosed `{{{{` at byte {} of template `{source}`",
                    source.len() - rest.len() + open
                )
            })?;
            let expr = after[..close].trim();
            if expr.is_empty() {
                return Err(format!("empty placeholder in template `{source}`"));
            }
            let program = switchboard_jq::Program::compile(expr)
                .map_err(|e| format!("placeholder `{{{{ {expr} }}}}`: {e}"))?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Expr(program));
            rest = &after[close + 2..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text, when the template has no placeholder.
    pub fn as_static(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// Renders against `input` (blocking: runs jq under `limits`).
    pub fn render(&self, input: &Value, limits: &switchboard_jq::Limits) -> Result<String, String> {
        switchboard_jq::with_eval_stack(|| {
            self.render_on(&switchboard_jq::Input::new(input), limits)
        })
    }

    /// Renders against an input converted once (blocking).
    pub fn render_on(
        &self,
        input: &switchboard_jq::Input,
        limits: &switchboard_jq::Limits,
    ) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(program) => {
                    for value in program
                        .run_on(input, limits)
                        .map_err(|e| format!("template `{}`: {e}", self.source))?
                    {
                        match value {
                            Value::Null => {}
                            Value::String(s) => out.push_str(&s),
                            other => out.push_str(&other.to_string()),
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The named templates of a destination, rendered together per delivery.
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    templates: Vec<(String, Template)>,
}

impl TemplateSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `source` and adds it under `name`; the error names the setting.
    pub fn add(&mut self, name: impl Into<String>, source: &str) -> Result<(), String> {
        let name = name.into();
        let template = Template::parse(source).map_err(|e| format!("{name}: {e}"))?;
        self.templates.push((name, template));
        Ok(())
    }

    /// Whether any template has a placeholder (only then is an input built per delivery).
    pub fn is_dynamic(&self) -> bool {
        self.templates.iter().any(|(_, t)| t.as_static().is_none())
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Renders every template against `input` (blocking; one conversion of the input).
    pub fn render(&self, input: &Value) -> Result<Rendered, String> {
        let limits = crate::transform::limits();
        switchboard_jq::with_eval_stack(|| {
            let mut converted = None;
            let mut values = Vec::with_capacity(self.templates.len());
            for (name, template) in &self.templates {
                let value = match template.as_static() {
                    Some(text) => text.to_owned(),
                    None => template.render_on(
                        converted.get_or_insert_with(|| switchboard_jq::Input::new(input)),
                        &limits,
                    )?,
                };
                values.push((name.clone(), value));
            }
            Ok(Rendered(values))
        })
    }

    /// The values without an input: every template must be static.
    pub fn render_static(&self) -> Option<Rendered> {
        let mut values = Vec::with_capacity(self.templates.len());
        for (name, template) in &self.templates {
            values.push((name.clone(), template.as_static()?.to_owned()));
        }
        Some(Rendered(values))
    }
}

/// Rendered templates by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered(Vec<(String, String)>);

impl Rendered {
    /// The value rendered for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` whose name starts with `prefix`, with the prefix removed.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0
            .iter()
            .filter_map(move |(n, v)| Some((n.strip_prefix(prefix)?, v.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str, input: Value) -> String {
        Template::parse(source)
            .expect("valid")
            .render(&input, &crate::transform::limits())
            .expect("valid")
    }

    #[test]
    fn placeholders_are_replaced_by_jq_results() {
        let input = json!({"body": {"repo": "acme/app", "n": 7, "tags": ["a"], "gone": null}});
        assert_eq!(
            render(
                "https://x/{{ .body.repo }}/issues/{{.body.n}}",
                input.clone()
            ),
            "https://x/acme/app/issues/7"
        );
        assert_eq!(render("{{ .body.tags }}", input.clone()), r#"["a"]"#);
        assert_eq!(render("[{{ .body.gone }}]", input.clone()), "[]");
        assert_eq!(
            render("{{ .body.repo | @uri }}", input.clone()),
            "acme%2Fapp"
        );
        assert_eq!(render("literal {{{{ kept", input), "literal {{ kept");
    }

    #[test]
    fn static_templates_need_no_input() {
        let template = Template::parse("https://example.com/hook").expect("valid");
        assert_eq!(template.as_static(), Some("https://example.com/hook"));
        let mut set = TemplateSet::new();
        set.add("url", "https://example.com/hook").expect("valid");
        assert!(!set.is_dynamic());
        assert_eq!(
            set.render_static().expect("valid").get("url"),
            Some("https://example.com/hook")
        );
        set.add("header:x-repo", "{{ .body.repo }}").expect("valid");
        assert!(set.is_dynamic());
        assert!(set.render_static().is_none());
        let rendered = set.render(&json!({"body": {"repo": "r"}})).expect("valid");
        assert_eq!(
            rendered.with_prefix("header:").collect::<Vec<_>>(),
            vec![("x-repo", "r")]
        );
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let error = Template::parse("https://x/{{ .body.repo").expect_err("must be refused");
        assert!(error.contains("unclosed"), "{error}");
        let error = Template::parse("{{ .body | }}").expect_err("must be refused");
        assert!(error.contains("placeholder `{{ .body | }}`"), "{error}");
        let mut set = TemplateSet::new();
        let error = set.add("subject", "{{ }}").expect_err("must be refused");
        assert!(error.starts_with("subject: empty placeholder"), "{error}");
        let error = Template::parse("{{ error(\"boom\") }}")
            .expect("valid")
            .render(&json!({}), &crate::transform::limits())
            .expect_err("must be refused");
        assert!(error.contains("boom"), "{error}");
    }
}
