//! `switchboard check-config FILE`: validates a configuration without starting anything, with
//! the file and line of each problem, and optionally (`--connect`) whether its database answers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use switchboard_core::Config;

use super::Failure;
use super::output::write_out;

/// `check-config` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file to check.
    pub file: PathBuf,
    /// Also apply `SWITCHBOARD_*` environment overrides, as `serve` does.
    #[arg(long)]
    pub env: bool,
    /// Also connect to the configured database (PostgreSQL `database_url`, or the SQLite data
    /// directory) and report whether it answers and its schema version.
    #[arg(long)]
    pub connect: bool,
}

/// Runs the check; prints a summary on success.
pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let shown = args.file.display().to_string();
    let mut config = Config::from_toml(&text).map_err(|e| parse_failure(&shown, &e.to_string()))?;
    if args.env {
        config
            .apply_env(std::env::vars())
            .map_err(|e| Failure::new(1, format!("{shown}: environment: {e}")))?;
    }
    if let Err(message) = switchboard_server::runtime::check(&config) {
        let at = locate(&text, &message)
            .map(|line| format!("{shown}:{line}"))
            .unwrap_or(shown);
        return Err(Failure::new(1, format!("{at}: {message}")).into());
    }
    write_out(format_args!(
        "{}: ok ({} sources, {} destinations, {} routes)\n",
        args.file.display(),
        config.sources.len(),
        config.destinations.len(),
        config.routes.len()
    ));
    if args.connect {
        connect(&config, &args.file).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A TOML error as `file:line:column: message` (the parser's own excerpt follows).
fn parse_failure(file: &str, error: &str) -> Failure {
    // The toml crate starts with "TOML parse error at line L, column C".
    let position = error
        .lines()
        .next()
        .and_then(|first| first.strip_prefix("TOML parse error at line "))
        .and_then(|rest| {
            let (line, column) = rest.split_once(", column ")?;
            Some(format!("{line}:{}", column.trim()))
        });
    let detail: Vec<&str> = error.lines().skip(1).collect();
    match position {
        Some(position) => Failure::new(1, format!("{file}:{position}: {}", detail.join("\n"))),
        None => Failure::new(1, format!("{file}: {error}")),
    }
}

/// The line of the table a validation message is about: messages name resources as
/// ``source `x` `` / ``destination `x` `` / ``route `x` ``; the line is that of `id = "x"`
/// (routes without an id: their `destination = "…"` line).
fn locate(text: &str, message: &str) -> Option<usize> {
    // The resource the message is about is the first one it names.
    let id = ["source `", "destination `", "route `", "endpoint `"]
        .iter()
        .filter_map(|prefix| {
            let start = message.find(prefix)? + prefix.len();
            let end = message[start..].find('`')?;
            Some((start, &message[start..start + end]))
        })
        .min_by_key(|(start, _)| *start)
        .map(|(_, id)| id)?;
    let quoted = [format!("\"{id}\""), format!("'{id}'")];
    let matches = |line: &str, key: &str| {
        let line = line.trim_start();
        line.strip_prefix(key)
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::trim)
            .is_some_and(|value| quoted.iter().any(|q| value.starts_with(q.as_str())))
    };
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .position(|line| matches(line, "id"))
        .or_else(|| {
            // A route named `{source}-{destination}`: find its destination line.
            let (_, destination) = id.split_once('-')?;
            let quoted = format!("\"{destination}\"");
            lines.iter().position(|line| {
                let line = line.trim_start();
                line.starts_with("destination") && line.contains(&quoted)
            })
        })
        .map(|index| index + 1)
}

async fn connect(config: &Config, file: &Path) -> anyhow::Result<()> {
    let store = switchboard_server::open_store(config).await.map_err(|e| {
        Failure::new(
            1,
            format!("{}: the database does not answer: {e}", file.display()),
        )
    })?;
    store
        .ping()
        .await
        .map_err(|e| Failure::new(1, format!("{}: database ping failed: {e}", file.display())))?;
    let what = match &config.server.database_url {
        Some(url) => switchboard_core::config::redact_url_password(url),
        None => config
            .server
            .data_dir
            .join("switchboard.db")
            .display()
            .to_string(),
    };
    write_out(format_args!(
        "{}: database answers ({what})\n",
        file.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_point_at_the_table() {
        let text = "[[sources]]\nid = \"gh\"\n\n[[destinations]]\nkind = \"http\"\nid = 'out'\nurl = \"x\"\n";
        assert_eq!(locate(text, "destination `out`: url must start"), Some(6));
        assert_eq!(locate(text, "source `gh`: verifier"), Some(2));
        assert_eq!(locate(text, "route `gh-out`: unknown"), None);
        let text = "[[routes]]\nsource = \"gh\"\ndestination = \"out\"\n";
        assert_eq!(locate(text, "route `gh-out`: filter: …"), Some(3));
    }

    #[test]
    fn parse_errors_keep_line_and_column() {
        let error = Config::from_toml("[server]\nlisten = 5\n").expect_err("bad type");
        let failure = parse_failure("f.toml", &error.to_string());
        assert!(
            failure.to_string().starts_with("f.toml:2:10: "),
            "{failure}"
        );
    }
}
