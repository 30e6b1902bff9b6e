use clap::Parser;
use rsttrace::{agent, cli, correlate};

fn main() -> std::process::ExitCode {
    let mut cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            eprintln!("rsttrace: {} (see --help)", flag_error(&err));
            return std::process::ExitCode::from(2);
        }
    };
    // Before the agent's Config: correlate reads files and needs nothing the agent checks.
    if let Some(cli::Command::Correlate(args)) = cli.command.take() {
        return match correlate::run(&args.into()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) if err.is_broken_pipe() => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("rsttrace: {}", err.to_string().replace('\n', " "));
                std::process::ExitCode::from(err.exit_code())
            }
        };
    }
    let config = match cli::Config::try_from(cli) {
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

/// A flag error as one line: clap's own words, without its `error:` prefix and the usage block
/// it prints after them.
fn flag_error(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let said: Vec<&str> = text.lines().map(str::trim).take_while(|l| !l.is_empty() && !l.starts_with("Usage:")).collect();
    said.join(" ").trim_start_matches("error: ").to_string()
}
