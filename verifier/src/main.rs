//! `sworn-verify`: the auditor's command line. Parses flags, runs one command from the
//! library, prints the report, exits 0 / 1 / 2 / 3 (see `report`).

use clap::Parser;
use sworn_verifier::cli::{Cli, Command};
use sworn_verifier::commands::{self, CommandError};
use sworn_verifier::render;
use sworn_verifier::report::EXIT_USAGE;

/// mimalloc rather than glibc malloc: the audit allocates per entry on every core.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("sworn-verify: cannot render JSON: {e}"),
    }
}

fn run(cli: &Cli) -> Result<i32, CommandError> {
    let rt = commands::runtime()?;
    let (json, code) = match &cli.command {
        Command::Receipt(a) => (a.output.json, Output::Report(commands::receipt(a, &rt)?)),
        Command::Content(a) => (a.output.json, Output::Report(commands::content(a, &rt)?)),
        Command::Checkpoint(a) => (a.output.json, Output::Report(commands::checkpoint(a, &rt)?)),
        Command::Audit(a) => (
            a.output.json,
            Output::Audit(Box::new(commands::audit(a, &rt)?)),
        ),
    };
    Ok(match code {
        Output::Report(r) => {
            if json {
                print_json(&render::json(&r));
            } else {
                print!("{}", render::human(&r));
            }
            r.exit_code()
        }
        Output::Audit(a) => {
            if json {
                print_json(&render::json_audit(&a));
            } else {
                print!("{}", render::human_audit(&a));
            }
            a.report.exit_code()
        }
    })
}

enum Output {
    Report(sworn_verifier::report::Report),
    Audit(Box<sworn_verifier::audit::AuditOutcome>),
}

fn main() {
    let cli = Cli::parse();
    let code = match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sworn-verify: {e}");
            EXIT_USAGE
        }
    };
    std::process::exit(code);
}
