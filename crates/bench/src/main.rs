//! `wsgate-bench`: parses the command line, builds the runtime, runs one workload, prints its
//! report and maps the outcome to an exit code (0: no errors, 1: errors, 2: bad usage).

use clap::Parser;
use wsgate_bench::cli::{Cli, Command};
use wsgate_bench::report::{Report, Value};
use wsgate_bench::{connect, echo, echo_server, idle, pipe, RunError, EXIT_ERRORS, EXIT_OK, EXIT_USAGE};

fn main() {
    // Usage errors exit with 2 here (clap's convention); --help and --version with 0.
    let cli = Cli::parse();
    std::process::exit(run(cli.command));
}

fn run(command: Command) -> i32 {
    let server = match &command {
        Command::EchoServer(args) => Some(("echo-server", echo_server::run(args))),
        Command::Pipe(args) => Some(("pipe", pipe::run(args))),
        _ => None,
    };
    if let Some((name, outcome)) = server {
        return match outcome {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("wsgate-bench {name}: {e}");
                EXIT_ERRORS
            }
        };
    }
    // Many sessions need many descriptors: every client workload may use up to the hard limit.
    let _ = wsgate_bench::process::raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate-bench: cannot start the runtime: {e}");
            return EXIT_ERRORS;
        }
    };
    let (result, json) = runtime.block_on(async {
        match &command {
            Command::Echo(args) => (echo::run(args).await, args.json),
            Command::Connect(args) => (connect::run(args).await, args.json),
            Command::Idle(args) => (idle::run(args).await, args.json),
            Command::EchoServer(_) | Command::Pipe(_) => unreachable!("handled above"),
        }
    });
    // Sessions still closing in the background must not hold the process.
    runtime.shutdown_background();
    match result {
        Ok(report) => finish(&report, json),
        Err(e @ RunError::Usage(_)) => {
            eprintln!("wsgate-bench: {e}");
            EXIT_USAGE
        }
        Err(e @ RunError::Failed(_)) => {
            eprintln!("wsgate-bench: {e}");
            EXIT_ERRORS
        }
    }
}

fn finish(report: &Report, json: bool) -> i32 {
    if let Err(e) = report.print(json) {
        eprintln!("wsgate-bench: cannot write the report: {e}");
        return EXIT_ERRORS;
    }
    match report.get("errors") {
        Some(Value::Int(0)) => EXIT_OK,
        _ => EXIT_ERRORS,
    }
}
