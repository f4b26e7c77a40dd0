//! sitecar: parse the command line, then hand over to the library crates. Wiring only.

mod cli;
mod validate;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(a) => validate::run(&a.file, a.json, &a.settings),
        other => not_yet(&other),
    }
}

/// A subcommand whose issue has not landed: refuse plainly, never pretend success.
fn not_yet(command: &Command) -> ExitCode {
    let name = format!("{command:?}");
    let name = name.split(['(', ' ']).next().unwrap_or("this command").to_ascii_lowercase();
    eprintln!("sitecar {name}: not yet available in this build");
    ExitCode::from(2)
}
