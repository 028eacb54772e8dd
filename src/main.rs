//! `fleet-optimization`: the command line of the fleet rebalancing optimizer
//! (DESIGN.md section 6). Each subcommand lives in [`cli`]; this file only
//! parses arguments and turns outcomes into exit codes: 0 success, 2 bad
//! input, 1 anything else.

mod cli;
mod export;
mod stream;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exact fleet rebalancing: moves idle vehicles to where demand will be.
#[derive(Debug, Parser)]
#[command(name = "fleet-optimization", version, arg_required_else_help = true)]
#[command(after_help = "Exit codes: 0 success, 2 bad input, 1 any other failure.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(cli::serve::ServeArgs),
    Migrate(cli::serve::MigrateArgs),
    Solve(cli::solve::SolveArgs),
    NycProblem(cli::nyc::NycArgs),
    Replay(cli::replay::ReplayArgs),
    Backtest(cli::backtest::BacktestArgs),
    ReplayEvents(cli::serve::ReplayEventsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The commands never panic on any input; should a bug make them, answer
    // with exit code 1 rather than Rust's 101.
    let outcome = std::panic::catch_unwind(|| match &cli.command {
        Command::Serve(args) => cli::serve::run_serve(args),
        Command::Migrate(args) => cli::serve::run_migrate(args),
        Command::Solve(args) => cli::solve::run(args),
        Command::NycProblem(args) => cli::nyc::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Backtest(args) => cli::backtest::run(args),
        Command::ReplayEvents(args) => cli::serve::run_replay_events(args),
    });
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => failure.report(),
        Err(_) => {
            eprintln!(
                "error: internal failure (a bug; please report it with the input that caused it)"
            );
            ExitCode::from(1)
        }
    }
}
