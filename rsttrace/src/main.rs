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
            // One line: the error and its causes, each said once (some errors repeat their
            // source in their own message).
            let mut line = String::new();
            for cause in err.chain().map(|c| c.to_string()) {
                if !line.contains(&cause) {
                    if !line.is_empty() {
                        line.push_str(": ");
                    }
                    line.push_str(&cause);
                }
            }
            eprintln!("rsttrace: {}", line.replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
