//! The `rsvp` binary: the monolith, plus operator commands.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use rsvp::{
    config::{Role, Settings},
    modules::users,
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
    /// List the modules of this build, one name per line (each ships as `rsvp-<name>` in the
    /// split topology).
    Modules,
    /// Exit 0 when the process on this configuration's `server.bind` answers `path` with 200:
    /// the container health check of every binary.
    Probe {
        /// `/healthz` (alive) or `/readyz` (ready).
        #[arg(default_value = "/healthz")]
        path: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Modules) = &cli.command {
        for module in rsvp::modules::MODULES {
            println!("{}", module.name());
        }
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Probe { path }) = &cli.command {
        // No logging set up: a health check prints only why it failed.
        return match Settings::load(Role::Monolith) {
            Ok(settings) => match topology::probe(settings.server.bind, path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(why) => {
                    eprintln!("rsvp probe: {why}");
                    ExitCode::FAILURE
                }
            },
            Err(err) => {
                eprintln!("rsvp: {err}");
                ExitCode::from(2)
            }
        };
    }
    let settings = match topology::settings_or_exit(|| Settings::load(Role::Monolith)) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => topology::run(monolith::build(settings).await).await,
        Command::MakeAdmin { email } => match make_admin(&settings, &email).await {
            Ok(()) => {
                println!("{email} is now an admin");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("rsvp: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Probe { .. } | Command::Modules => {
            unreachable!("answered before the settings were loaded")
        }
    }
}

/// Gives the account with `email` the admin role.
async fn make_admin(settings: &Settings, email: &str) -> Result<(), String> {
    let process = topology::process(settings, &[&users::MODULE])
        .await
        .map_err(|e| e.to_string())?;
    let service = users::service(&process).await.map_err(|e| e.to_string())?;
    service.promote_to_admin(email).await.map_err(|e| match e {
        users::UsersError::NotFound => format!("no account with email {email}"),
        other => other.to_string(),
    })
}
