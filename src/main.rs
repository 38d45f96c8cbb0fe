//! The `rsvp` binary: the monolith, plus operator commands.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use rsvp::{
    config::{Role, Settings},
    topology::{self, monolith},
};

#[derive(Parser)]
#[command(
    version,
    about = "rsvp: events, registrations and waitlists in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the whole API (the default).
    Serve,
    /// Give an existing account the admin role.
    MakeAdmin {
        /// The account's email.
        email: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match topology::settings_or_exit(|| Settings::load(Role::Monolith)) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => topology::run(monolith::build(settings).await).await,
        Command::MakeAdmin { email } => match monolith::make_admin(settings, &email).await {
            Ok(()) => {
                println!("{email} is now an admin");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("rsvp: {err}");
                ExitCode::FAILURE
            }
        },
    }
}
