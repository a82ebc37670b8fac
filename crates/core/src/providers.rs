//! Provider templates: how to reach and authenticate against a third-party API (base URL, auth
//! modes, OAuth2 endpoints, rate-limit headers, retryable statuses, error fields).
//!
//! One TOML file per provider under `crates/core/providers/`, embedded in the binary
//! ([`builtin`]); users add or override providers with their own files. URLs may name
//! connection parameters in braces (`https://{subdomain}.zendesk.com`): defaults come from the
//! file's `params`, the rest from the connection (or from fields kept from the token response,
//! like Salesforce's `instance_url`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A provider template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Identifier used by connections (`provider = "github"`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Link to the provider's API reference.
    #[serde(default)]
    pub docs: Option<String>,
    /// Base URL of API calls; may name parameters (`{subdomain}`).
    pub base_url: String,
    /// Supported ways to authenticate; the first is the default.
    pub auth_modes: Vec<AuthMode>,
    /// Default values of URL parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Headers sent with every call (API version pins, `Accept`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// OAuth2 endpoints and behaviour (modes `oauth2` and `oauth2_client_credentials`).
    #[serde(default)]
    pub oauth2: Option<OAuth2Spec>,
    /// Where an API key goes (mode `api_key`; defaults to `Authorization: Bearer <key>`).
    #[serde(default)]
    pub api_key: Option<ApiKeySpec>,
    /// Rate-limit headers and default pacing.
    #[serde(default)]
    pub rate_limit: RateLimitSpec,
    /// Which answers are worth retrying.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Where the provider's error bodies keep their code and message.
    #[serde(default)]
    pub errors: ErrorSpec,
}

/// How a connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// OAuth2 authorization code (with PKCE where the provider supports it) and refresh tokens.
    Oauth2,
    /// OAuth2 client credentials (machine to machine).
    Oauth2ClientCredentials,
    /// A static key in a header or a query parameter.
    ApiKey,
    /// HTTP basic authentication.
    Basic,
    /// A static bearer token.
    Bearer,
}

impl AuthMode {
    /// The name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oauth2 => "oauth2",
            Self::Oauth2ClientCredentials => "oauth2_client_credentials",
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
            Self::Bearer => "bearer",
        }
    }
}

/// OAuth2 settings of a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Spec {
    /// Where users authorize (authorization code).
    pub authorize_url: String,
    /// Where codes, refresh tokens and client credentials are exchanged.
    pub token_url: String,
    /// Where tokens are revoked when a connection is deleted.
    #[serde(default)]
    pub revoke_url: Option<String>,
    /// Scopes asked for when the connection names none.
    #[serde(default)]
    pub default_scopes: Vec<String>,
    /// Scopes for client credentials, when they differ.
    #[serde(default)]
    pub client_credentials_scopes: Option<Vec<String>>,
    /// How scopes are joined (`" "` by default; Slack and Shopify use `,`).
    #[serde(default = "default_scope_separator")]
    pub scope_separator: String,
    /// How the client authenticates to the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Whether to send a PKCE (S256) challenge.
    #[serde(default = "default_true")]
    pub pkce: bool,
    /// Extra parameters of the authorize URL (`access_type = "offline"`).
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// Fields of the token response kept with the connection (usable as URL parameters).
    #[serde(default)]
    pub token_fields: Vec<String>,
    /// Header carrying the access token instead of `Authorization: Bearer`.
    #[serde(default)]
    pub token_header: Option<String>,
}

fn default_scope_separator() -> String {
    " ".into()
}

fn default_true() -> bool {
    true
}

/// How an OAuth2 client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP basic with the client id and secret (RFC 6749's preferred way).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// Where an API key goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    /// Header carrying the key.
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter carrying the key.
    #[serde(default)]
    pub query: Option<String>,
    /// Text before the key in the header (`"Bearer "`).
    #[serde(default)]
    pub prefix: Option<String>,
}

/// How a provider announces its limits, and the pace to keep before it says no.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Header with the window's limit.
    #[serde(default)]
    pub limit_header: Option<String>,
    /// Header with the calls left in the window.
    #[serde(default)]
    pub remaining_header: Option<String>,
    /// Header saying when the window resets.
    #[serde(default)]
    pub reset_header: Option<String>,
    /// How to read the reset header.
    #[serde(default)]
    pub reset_format: ResetFormat,
    /// Default pace (calls per second) per connection, in all: nodes sharing a database each
    /// take their share.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Default burst, in all (shared between nodes like the pace).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// The format of a rate-limit reset header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetFormat {
    /// Unix time in seconds.
    #[default]
    UnixSeconds,
    /// Unix time in milliseconds.
    UnixMillis,
    /// Seconds from now.
    Seconds,
    /// An HTTP date.
    HttpDate,
    /// The window's length in milliseconds (HubSpot).
    WindowMillis,
    /// `used/limit` in one header (Shopify's leaky bucket).
    UsedOfLimit,
}

/// Which answers are retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Statuses worth retrying (idempotent calls, or POSTs with an `Idempotency-Key`).
    pub statuses: Vec<u16>,
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            statuses: vec![429, 500, 502, 503, 504],
        }
    }
}

/// Where error bodies keep their code and message (JSON pointers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    /// Pointer to the provider's error code.
    #[serde(default)]
    pub code: Option<String>,
    /// Pointer to the human-readable message.
    #[serde(default)]
    pub message: Option<String>,
}

/// The provider files shipped with Switchboard, as `(file name, text)`.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    ("github.toml", include_str!("../providers/github.toml")),
    ("gitlab.toml", include_str!("../providers/gitlab.toml")),
    ("slack.toml", include_str!("../providers/slack.toml")),
    ("google.toml", include_str!("../providers/google.toml")),
    (
        "microsoft.toml",
        include_str!("../providers/microsoft.toml"),
    ),
    (
        "salesforce.toml",
        include_str!("../providers/salesforce.toml"),
    ),
    ("hubspot.toml", include_str!("../providers/hubspot.toml")),
    ("stripe.toml", include_str!("../providers/stripe.toml")),
    ("shopify.toml", include_str!("../providers/shopify.toml")),
    ("twilio.toml", include_str!("../providers/twilio.toml")),
    ("sendgrid.toml", include_str!("../providers/sendgrid.toml")),
    ("notion.toml", include_str!("../providers/notion.toml")),
    ("linear.toml", include_str!("../providers/linear.toml")),
    ("jira.toml", include_str!("../providers/jira.toml")),
    ("zendesk.toml", include_str!("../providers/zendesk.toml")),
];

/// A provider file that is not usable.
#[derive(Debug, thiserror::Error)]
#[error("provider file `{file}`: {message}")]
pub struct ProviderError {
    /// The file (or provider id).
    pub file: String,
    /// What is wrong.
    pub message: String,
}

impl ProviderSpec {
    /// Parses and checks one provider file.
    pub fn from_toml(file: &str, text: &str) -> Result<Self, ProviderError> {
        let error = |message: String| ProviderError {
            file: file.to_owned(),
            message,
        };
        let spec: Self = toml::from_str(text).map_err(|e| error(e.to_string()))?;
        spec.validate().map_err(error)?;
        Ok(spec)
    }

    /// Checks what a file must say for its auth modes, and its URLs.
    pub fn validate(&self) -> Result<(), String> {
        if !crate::ids::is_valid_resource_id(&self.id) {
            return Err(format!("id `{}` is not a valid identifier", self.id));
        }
        if self.auth_modes.is_empty() {
            return Err("auth_modes must name at least one mode".into());
        }
        check_url("base_url", &self.base_url)?;
        let oauth = self
            .auth_modes
            .iter()
            .any(|m| matches!(m, AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials));
        match (&self.oauth2, oauth) {
            (None, true) => return Err("an oauth2 auth mode needs an [oauth2] table".into()),
            (Some(o), _) => {
                check_url("oauth2.authorize_url", &o.authorize_url)?;
                check_url("oauth2.token_url", &o.token_url)?;
                if let Some(url) = &o.revoke_url {
                    check_url("oauth2.revoke_url", url)?;
                }
            }
            (None, false) => {}
        }
        if let Some(key) = &self.api_key
            && key.header.is_some() == key.query.is_some()
        {
            return Err("[api_key] takes `header` or `query` (exactly one)".into());
        }
        if let Some(rate) = self.rate_limit.requests_per_second
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err("rate_limit.requests_per_second must be a positive number".into());
        }
        Ok(())
    }

    /// Parameters the connection must supply: placeholders of the URLs with no default and not
    /// filled from the token response.
    pub fn required_params(&self) -> BTreeSet<String> {
        let mut urls = vec![self.base_url.as_str()];
        if let Some(o) = &self.oauth2 {
            urls.push(&o.authorize_url);
            urls.push(&o.token_url);
        }
        let kept: BTreeSet<&str> = self
            .oauth2
            .iter()
            .flat_map(|o| o.token_fields.iter().map(String::as_str))
            .collect();
        urls.into_iter()
            .flat_map(placeholders)
            .filter(|p| !self.params.contains_key(p) && !kept.contains(p.as_str()))
            .collect()
    }
}

fn check_url(what: &str, url: &str) -> Result<(), String> {
    let resolved = expand(url, &|_| Some("x".into()))?;
    if resolved.starts_with("https://") || resolved.starts_with("http://") {
        Ok(())
    } else if url.starts_with('{') {
        // The whole origin comes from a parameter (Salesforce's instance_url).
        Ok(())
    } else {
        Err(format!("{what} must be an http(s) URL"))
    }
}

/// The `{name}` placeholders of a template, in order.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(rest[open + 1..open + close].to_owned());
        rest = &rest[open + close + 1..];
    }
    out
}

/// Fills `{name}` placeholders from `lookup`; an unknown name is an error naming it.
pub fn expand(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in `{template}`"))?;
        let name = &rest[open + 1..open + close];
        let value = lookup(name).ok_or_else(|| format!("parameter `{name}` is not set"))?;
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The providers shipped with Switchboard, by id.
pub fn builtin() -> Result<BTreeMap<String, ProviderSpec>, ProviderError> {
    let mut out = BTreeMap::new();
    for (file, text) in BUILTIN_FILES {
        let spec = ProviderSpec::from_toml(file, text)?;
        out.insert(spec.id.clone(), spec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_provider_parses_and_is_complete() {
        let providers = builtin().expect("builtin providers");
        let ids: Vec<&str> = providers.keys().map(String::as_str).collect();
        for id in [
            "github",
            "gitlab",
            "slack",
            "google",
            "microsoft",
            "salesforce",
            "hubspot",
            "stripe",
            "shopify",
            "twilio",
            "sendgrid",
            "notion",
            "linear",
            "jira",
            "zendesk",
        ] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        for (file, _) in BUILTIN_FILES {
            let id = file.trim_end_matches(".toml");
            assert!(providers.contains_key(id), "file {file} declares id {id}");
        }
    }

    #[test]
    fn parameters_come_from_defaults_token_fields_or_the_connection() {
        let providers = builtin().expect("builtin providers");
        assert!(providers["github"].required_params().is_empty());
        assert_eq!(
            providers["zendesk"].required_params(),
            BTreeSet::from(["subdomain".to_owned()])
        );
        // Salesforce's instance_url arrives with the token; login_host has a default.
        assert!(providers["salesforce"].required_params().is_empty());
        assert_eq!(
            providers["twilio"].required_params(),
            BTreeSet::from(["account_sid".to_owned()])
        );
        let url = expand(&providers["zendesk"].base_url, &|name| {
            (name == "subdomain").then(|| "acme".to_owned())
        })
        .expect("expand");
        assert_eq!(url, "https://acme.zendesk.com/api/v2");
        let error = expand("https://{shop}.myshopify.com", &|_| None).expect_err("unset");
        assert!(error.contains("`shop`"), "{error}");
    }

    #[test]
    fn incomplete_files_are_refused_with_the_reason() {
        let error = ProviderSpec::from_toml(
            "x.toml",
            "id = \"x\"\nname = \"X\"\nbase_url = \"https://x\"\nauth_modes = [\"oauth2\"]\n",
        )
        .expect_err("no oauth2 table");
        assert!(error.to_string().contains("[oauth2]"), "{error}");
        let error = ProviderSpec::from_toml(
            "x.toml",
            "id = \"x\"\nname = \"X\"\nbase_url = \"ftp://x\"\nauth_modes = [\"bearer\"]\n",
        )
        .expect_err("bad url");
        assert!(error.to_string().contains("base_url"), "{error}");
        let error = ProviderSpec::from_toml(
            "x.toml",
            "id = \"x\"\nname = \"X\"\nbase_url = \"https://x\"\nauth_modes = [\"bearer\"]\nbase = 1\n",
        )
        .expect_err("unknown key");
        assert!(error.to_string().contains("base"), "{error}");
    }
}
