//! The page shell (head, navigation, sign-out form) and small shared widgets.
//!
//! Everything is rendered with `maud`, which escapes every interpolated value: payloads, ids and
//! error texts reach the browser as text, never as markup.

use maud::{DOCTYPE, Markup, html};
use switchboard_core::time::format_rfc3339;

use super::session::Session;

/// Navigation entries: path and label.
const NAV: &[(&str, &str)] = &[
    ("/ui", "Overview"),
    ("/ui/events", "Events"),
    ("/ui/deliveries", "Deliveries"),
    ("/ui/sources", "Sources"),
    ("/ui/destinations", "Destinations"),
    ("/ui/routes", "Routes"),
    ("/ui/tenants", "Tenants"),
    ("/ui/connections", "Connections"),
    ("/ui/syncs", "Syncs"),
];

/// A full page for a signed-in user; `current` is the navigation entry to highlight.
pub fn page(session: &Session, title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(session.csrf);
                title { (title) " · Switchboard" }
                link rel="stylesheet" href="/ui/assets/ui.css";
                // No favicon request (it would 404 at the site root).
                link rel="icon" href="data:,";
                script src="/ui/assets/ui.js" defer {}
            }
            body data-live-cursor=[session.live_cursor.as_deref()] {
                header.top {
                    a.brand href="/ui" { "Switchboard" }
                    nav aria-label="Main" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if *path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/ui/sign-out" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        span.who title="Signed in with this token" {
                            (session.principal.token_id) " (" (session.principal.scope.as_str()) ")"
                        }
                        button type="submit" { "Sign out" }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A bare page (sign-in, errors before a session exists).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Switchboard" }
                link rel="stylesheet" href="/ui/assets/ui.css";
                // No favicon request (it would 404 at the site root).
                link rel="icon" href="data:,";
            }
            body.bare {
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A time as RFC 3339 (UTC), machine-readable in a `<time>` element.
pub fn time(millis: i64) -> Markup {
    let text = format_rfc3339(millis);
    html! { time datetime=(text) { (text) } }
}

/// A status word as a coloured badge (the class is chosen from a fixed list).
pub fn badge(status: &str) -> Markup {
    let class = match status {
        "succeeded" | "active" | "closed" | "receiving" | "delivering" | "matched" | "ok" => "ok",
        "failed" | "open" | "needs_reauth" | "failing" | "error" | "disabled" | "degraded" => "bad",
        "pending" | "in_flight" | "half_open" | "retrying" | "syncing" | "running" => "warn",
        _ => "neutral",
    };
    html! { span class={ "badge " (class) } { (status) } }
}

/// A "copy to clipboard" button for `text`.
pub fn copy_button(text: &str, label: &str) -> Markup {
    html! {
        button type="button" class="copy" data-copy=(text) aria-label=(label) { "Copy" }
    }
}
