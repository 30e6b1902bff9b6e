use clap::Parser;
use rsttrace::{agent, cli};

fn main() -> std::process::ExitCode {
    let config = match cli::Config::try_from(cli::Cli::parse()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("rsttrace: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("rsttrace: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes.
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("rsttrace: {}", chain.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}
