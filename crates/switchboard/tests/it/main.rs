//! End-to-end tests: the real server on a loopback port, a real SQLite file in a temp dir, and
//! real HTTP receivers on loopback. One test binary; modules by topic.

mod support;

mod api;
mod audit;
mod cli;
mod cli_outbound;
mod connections;
mod crash;
mod delivery;
mod email;
mod ingest;
mod keys;
mod live;
mod mock;
mod multinode;
mod notify;
mod observability;
mod outbound;
mod pause;
mod providers;
mod queue;
mod receivers;
mod recipes;
mod retention;
mod retries;
mod routes;
mod shutdown;
mod sms;
mod store_sinks;
mod streams;
mod syncs;
mod transfer;
mod trigger;
mod ui;
mod ui_browser;
mod ui_edit;
mod ui_store;
