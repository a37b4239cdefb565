//! Entry point: parse the command line, load the configuration, set up logging, run.

use clap::Parser;
use model_lens_sync::cli::{self, Cli, Command};
use model_lens_sync::config::Config;
use model_lens_sync::telemetry;

fn main() {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    let serve = matches!(cli.command, Command::Serve);
    let defaults = telemetry::LogDefaults {
        json: serve,
        quiet_on_terminal: !serve,
        verbosity: cli.verbose,
    };
    let _log_guards = match telemetry::init_logging(&config.logging, defaults) {
        Ok(guards) => guards,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(2);
        }
    };
    let code = match runtime.block_on(cli::run(cli.command, config)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            2
        }
    };
    drop(_log_guards);
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    std::process::exit(code);
}
