//! Subcommands of the binary and what they share: reading input, printing
//! JSON, and failures with their exit codes (DESIGN.md section 6).

pub mod backtest;
pub mod nyc;
pub mod replay;
pub mod serve;
pub mod solve;

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use fleet_engine::problem_file::ErrorReport;
use serde::Serialize;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Bad input data: the JSON answer goes to stdout, a one-line hint to
    /// stderr; exit code 2.
    Invalid { report: ErrorReport, hint: String },
    /// Bad arguments or unusable input without a JSON answer: the message
    /// goes to stderr; exit code 2.
    Usage(String),
    /// Anything else (missing file, IO error): the message, which says what
    /// to do, goes to stderr; exit code 1.
    Other(String),
}

impl Failure {
    /// Invalid input naming `field`; the hint repeats it for people.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>, what: &str) -> Self {
        let report = ErrorReport::invalid(field, message);
        let hint = format!(
            "error: invalid {what}: {}: {}",
            report.error.field, report.error.message
        );
        Failure::Invalid { report, hint }
    }

    /// Prints the failure and returns its exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Invalid { report, hint } => {
                // Best effort: the exit code already says what happened.
                let _ = print_json(&report);
                eprintln!("{hint}");
                ExitCode::from(2)
            }
            Failure::Usage(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
            Failure::Other(message) => {
                eprintln!("error: {message}");
                ExitCode::from(1)
            }
        }
    }
}

/// Reads `path` (`-` = standard input) as UTF-8 text.
pub fn read_input(path: &Path, what: &str) -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    let shown = path.display();
    read.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Failure::Other(format!(
            "cannot read {what} {shown}: no such file; check the path (relative paths start at the \
             current directory), or pass `--input -` to read standard input"
        )),
        _ => Failure::Other(format!("cannot read {what} {shown}: {e}")),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        Failure::invalid(
            "input",
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
            what,
        )
    })
}

/// Prints `value` as pretty JSON and a newline to stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Other(format!("cannot write the answer to standard output: {e}")))
}
