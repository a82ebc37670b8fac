//! `cargo bench -p switchboard-jq`: prints ns per evaluation for a few filters, including a
//! typical transform of a GitHub `pull_request` event.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_jq::{Limits, Program};

fn user(login: &str, id: u64) -> Value {
    json!({
        "login": login, "id": id, "node_id": "MDQ6VXNlcjE=",
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "type": "User", "site_admin": false
    })
}

fn repo() -> Value {
    json!({
        "id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": "Hello-World",
        "full_name": "octocat/Hello-World", "private": false, "owner": user("octocat", 1),
        "html_url": "https://github.com/octocat/Hello-World",
        "description": "This your first repo!", "fork": false,
        "url": "https://api.github.com/repos/octocat/Hello-World",
        "created_at": "2011-01-26T19:01:12Z", "updated_at": "2011-01-26T19:14:43Z",
        "pushed_at": "2011-01-26T19:06:43Z", "homepage": "https://github.com",
        "size": 108, "stargazers_count": 80, "watchers_count": 80, "language": "C",
        "has_issues": true, "has_projects": true, "has_wiki": true, "forks_count": 9,
        "open_issues_count": 0, "default_branch": "main", "topics": ["octocat", "api"],
        "visibility": "public"
    })
}

/// Shape of a GitHub `pull_request` webhook as the gateway passes it to filters.
fn pull_request_event() -> Value {
    let body = json!({
        "action": "opened",
        "number": 1347,
        "pull_request": {
            "url": "https://api.github.com/repos/octocat/Hello-World/pulls/1347",
            "id": 1, "node_id": "MDExOlB1bGxSZXF1ZXN0MQ==",
            "html_url": "https://github.com/octocat/Hello-World/pull/1347",
            "diff_url": "https://github.com/octocat/Hello-World/pull/1347.diff",
            "number": 1347, "state": "open", "locked": false,
            "title": "Amazing new feature",
            "user": user("octocat", 1),
            "body": "Please pull these awesome changes in!\n\nIt fixes #1 and #2.",
            "labels": [
                {"id": 208045946, "name": "bug", "color": "f29513", "default": true},
                {"id": 208045947, "name": "enhancement", "color": "a2eeef", "default": false}
            ],
            "created_at": "2011-01-26T19:01:12Z", "updated_at": "2011-01-26T19:01:12Z",
            "closed_at": null, "merged_at": null, "merge_commit_sha": null,
            "assignees": [user("hubot", 2)], "requested_reviewers": [user("other_user", 3)],
            "head": {"label": "octocat:new-topic", "ref": "new-topic", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "user": user("octocat", 1), "repo": repo()},
            "base": {"label": "octocat:main", "ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "user": user("octocat", 1), "repo": repo()},
            "draft": false, "merged": false, "mergeable": true, "comments": 10,
            "review_comments": 0, "commits": 3, "additions": 100, "deletions": 3,
            "changed_files": 5
        },
        "repository": repo(),
        "sender": user("octocat", 1)
    });
    json!({
        "source": "github",
        "headers": {"x-github-event": "pull_request", "content-type": "application/json"},
        "body": body
    })
}

fn bench(name: &str, source: &str, input: &Value) {
    let program = Program::compile(source).unwrap();
    let limits = Limits::default();
    // warm up, then run for about half a second
    for _ in 0..100 {
        black_box(program.run(black_box(input), &limits).unwrap());
    }
    let mut iterations = 0_u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        for _ in 0..100 {
            black_box(program.run(black_box(input), &limits).unwrap());
        }
        iterations += 100;
    }
    let ns = started.elapsed().as_nanos() / u128::from(iterations);
    println!("{name:<40} {ns:>8} ns/eval");
}

/// A route's filter and transform on one event: run separately (two conversions, two stacks)
/// and together (one `Input`, one `with_eval_stack`), as the delivery path now does.
fn bench_route(event: &Value) {
    let filter = Program::compile(r#".body.action == "opened""#).unwrap();
    let transform = Program::compile(
        r#"{text: "PR #\(.body.number) \(.body.pull_request.title) by \(.body.sender.login)"}"#,
    )
    .unwrap();
    let limits = Limits::default();
    let separate = || {
        black_box(filter.run_bool(black_box(event), &limits).unwrap());
        black_box(transform.run_one(black_box(event), &limits).unwrap());
    };
    let shared = || {
        switchboard_jq::with_eval_stack(|| {
            let input = switchboard_jq::Input::new(black_box(event));
            black_box(filter.run_bool_on(&input, &limits).unwrap());
            black_box(transform.run_one_on(&input, &limits).unwrap());
        })
    };
    for (name, run) in [
        ("route filter + transform, separate", &separate as &dyn Fn()),
        ("route filter + transform, shared input", &shared),
    ] {
        for _ in 0..100 {
            run();
        }
        let mut iterations = 0_u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(500) {
            for _ in 0..100 {
                run();
            }
            iterations += 100;
        }
        let ns = started.elapsed().as_nanos() / u128::from(iterations);
        println!("{name:<40} {ns:>8} ns/route");
    }
}

fn main() {
    let event = pull_request_event();
    println!(
        "pull_request event: {} bytes of JSON",
        serde_json::to_vec(&event).unwrap().len()
    );

    let started = Instant::now();
    let n = 200;
    for _ in 0..n {
        black_box(Program::compile(black_box("{text: .body.number}")).unwrap());
    }
    println!(
        "{:<40} {:>8} ns",
        "compile (with standard library)",
        started.elapsed().as_nanos() / n
    );

    bench("constant `1` on null (fixed overhead)", "1", &Value::Null);
    bench("identity on pull_request event", ".", &event);
    bench(
        "pull_request text transform",
        r#"{text: "PR #\(.body.number) \(.body.pull_request.title) by \(.body.sender.login)"}"#,
        &event,
    );
    bench(
        "route predicate",
        r#".headers["x-github-event"] == "pull_request" and (.body.pull_request.labels | any(.name == "bug"))"#,
        &event,
    );
    bench_route(&event);
}
