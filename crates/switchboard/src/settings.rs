//! Loads the configuration: defaults, then the file, then `SWITCHBOARD_*`, then flags.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use switchboard_core::Config;

/// Where the configuration and store live, as given on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML).
    #[arg(long, short = 'c', env = "SWITCHBOARD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory holding the SQLite database (overrides `server.data_dir`).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// Reads and validates the configuration.
pub fn load(args: &ConfigArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => read(path)?,
        None => Config::default(),
    };
    config.apply_env(std::env::vars())?;
    if let Some(dir) = &args.data_dir {
        config.server.data_dir = dir.clone();
    }
    config.validate()?;
    Ok(config)
}

fn read(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    Config::from_toml(&text).with_context(|| format!("in {}", path.display()))
}
