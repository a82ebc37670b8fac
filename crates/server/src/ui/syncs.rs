//! `/ui/syncs`: every sync job with its newest run (progress while it runs), a run history per
//! job, and "Run now" / "Cancel" buttons, all through the same functions as `/v1/syncs`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};

use serde::Deserialize;

use super::layout::{self, badge, csrf, time};
use super::session::Session;
use super::{UiResult, enc, html_response, see_other};
use crate::api::internal;
use crate::api::syncs::{self, SyncRun};
use crate::state::AppState;

/// Runs shown on a sync's page.
const HISTORY: u32 = 50;

/// The counts of a run, in a line.
fn counts(run: &SyncRun) -> Markup {
    html! {
        (run.pages) " pages, " (run.fetched) " read: "
        (run.created) " created, " (run.updated) " updated, " (run.deleted) " deleted, "
        (run.unchanged) " unchanged"
        @if run.failed > 0 { ", " strong { (run.failed) " failed" } }
    }
}

/// A run's progress: an indeterminate bar while it runs (the listing's size is not known
/// before its end), then its counts.
fn progress(run: &SyncRun) -> Markup {
    html! {
        @if run.status == "running" {
            progress aria-label={ "Sync run " (run.id) " in progress" } {}
            " "
        }
        (counts(run))
    }
}

/// `GET /ui/syncs`
pub async fn list(session: Session, State(state): State<Arc<AppState>>) -> UiResult<Response> {
    let all = syncs::all(&state).await?;
    let body = html! {
        table.list aria-label="Sync jobs" {
            thead { tr { th { "Sync" } th { "Mode" } th { "Destination" } th { "Schedule" } th { "Last run" } th { "Progress" } th { "Actions" } } }
            tbody {
                @for s in &all {
                    tr {
                        td { a href={ "/ui/syncs/" (enc(&s.id)) } { code { (s.id) } } }
                        td { (s.mode) }
                        td { (s.destination) }
                        td { (s.schedule.as_deref().unwrap_or("on demand")) }
                        td {
                            @match &s.last_run {
                                Some(run) => { (badge(&run.status)) " " (run.started_at) }
                                None => { "never run" }
                            }
                        }
                        td {
                            @if let Some(run) = &s.last_run { (progress(run)) }
                            @if let Some(error) = s.last_run.as_ref().and_then(|r| r.error.as_deref()) {
                                div.error { (error) }
                            }
                        }
                        td { (actions(&session, &s.id, s.running)) }
                    }
                }
            }
        }
        @if all.is_empty() { p.empty { "No sync jobs yet (add [[syncs]] to the configuration or POST /v1/syncs)." } }
    };
    Ok(html_response(layout::page(
        &session,
        "Syncs",
        "/ui/syncs",
        body,
    )))
}

fn actions(session: &Session, id: &str, running: bool) -> Markup {
    html! {
        @if session.can_write() {
            @if running {
                form.inline method="post" action={ "/ui/syncs/" (enc(id)) "/cancel" } {
                    (csrf(session))
                    button type="submit" aria-label={ "Cancel the run of " (id) } { "Cancel" }
                }
            } @else {
                form.inline method="post" action={ "/ui/syncs/" (enc(id)) "/run" } {
                    (csrf(session))
                    button type="submit" aria-label={ "Run " (id) " now" } { "Run now" }
                }
            }
        }
    }
}

/// `GET /ui/syncs/{id}`: the run history.
pub async fn detail(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let sync = syncs::all(&state)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| crate::problem::Problem::not_found(format!("no sync `{id}`")))?;
    let runs: Vec<SyncRun> = state
        .store
        .list_sync_runs(&id, None, HISTORY)
        .await
        .map_err(internal)?
        .into_iter()
        .map(SyncRun::from)
        .collect();
    let conflicts = state
        .store
        .list_sync_conflicts(&id, None, CONFLICTS_SHOWN)
        .await
        .map_err(internal)?;
    let body = html! {
        p { "Mode " (sync.mode) ", into " (sync.destination) " through connection " code { (sync.connection) } ", "
            (sync.schedule.as_deref().map_or("on demand".to_owned(), |s| format!("schedule `{s}`"))) "." }
        p { (actions(&session, &sync.id, sync.running)) }
        table.list aria-label={ "Runs of " (sync.id) } {
            thead { tr { th { "Run" } th { "Status" } th { "Trigger" } th { "Started" } th { "Finished" } th { "Records" } th { "Error" } } }
            tbody {
                @for run in &runs {
                    tr {
                        td { code { (run.id) } }
                        td { (badge(&run.status)) }
                        td { (run.trigger) }
                        td { (run.started_at) }
                        td { (run.finished_at.as_deref().unwrap_or("—")) }
                        td { (progress(run)) }
                        td { (run.error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        @if runs.is_empty() { p.empty { "No runs yet." } }
        @if !conflicts.is_empty() {
            section aria-labelledby="conflicts-h" {
                h2 #conflicts-h { "Conflicts parked for review" }
                p.hint { "Changed on both sides since they last agreed. Choose the version that wins: a run writes it to the other side (if either side changes again first, the record is a conflict again)." }
                table.list aria-label={ "Conflicts of " (sync.id) } {
                    thead { tr { th { "Key" } th { "Source's version" } th { "Destination's version" } th { "Found" } th { "Resolve" } } }
                    tbody {
                        @for c in &conflicts {
                            tr {
                                td { code { (c.record_key) } }
                                td { pre.inline { (c.source.as_deref().unwrap_or("(deleted)")) } }
                                td { pre.inline { (c.destination.as_deref().unwrap_or("(deleted)")) } }
                                td { (time(c.detected_at)) }
                                td {
                                    @if session.can_write() {
                                        @for (take, label) in [("source", "Keep source"), ("destination", "Keep destination")] {
                                            form.inline method="post" action={ "/ui/syncs/" (enc(&sync.id)) "/resolve" } {
                                                (csrf(&session))
                                                input type="hidden" name="key" value=(c.record_key);
                                                input type="hidden" name="take" value=(take);
                                                button type="submit" aria-label={ (label) " for key " (c.record_key) } { (label) }
                                            }
                                            " "
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(layout::page(
        &session,
        &format!("Sync {id}"),
        "/ui/syncs",
        body,
    )))
}

/// `POST /ui/syncs/{id}/run`
pub async fn run(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    syncs::start_run(&state, &id).await?;
    Ok(see_other(&format!("/ui/syncs/{}", enc(&id))))
}

/// Conflicts shown on a sync's page at most (the API pages through all of them).
const CONFLICTS_SHOWN: u32 = 100;

/// The resolve form: a parked conflict's key (as stored: its JSON text) and the side that wins.
#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    /// The key's JSON text.
    key: String,
    /// `source` or `destination`.
    take: syncs::Take,
}

/// `POST /ui/syncs/{id}/resolve`: resolves one conflict and starts a run to apply it.
pub async fn resolve(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    let form: ResolveForm = session.form(&body)?;
    session.require_write()?;
    let key = serde_json::from_str(&form.key)
        .map_err(|_| crate::problem::Problem::field("key", "not a conflict's key"))?;
    syncs::resolve_conflict(
        &state,
        &id,
        syncs::ResolveInput {
            key,
            take: form.take,
            run: Some(true),
        },
    )
    .await?;
    Ok(see_other(&format!("/ui/syncs/{}", enc(&id))))
}

/// `POST /ui/syncs/{id}/cancel`
pub async fn cancel(
    session: Session,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> UiResult {
    session.button(&body)?;
    syncs::cancel_run(&state, &id).await?;
    Ok(see_other(&format!("/ui/syncs/{}", enc(&id))))
}
