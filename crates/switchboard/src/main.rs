//! The `switchboard` binary: command-line parsing, configuration loading, logging, exit codes.
//! Everything else lives in the library crates.

mod cli;
mod settings;

use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, remote) = cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::dispatch(cli, remote)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            cli::exit_code(&error)
        }
    }
}
