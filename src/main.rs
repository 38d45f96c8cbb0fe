//! The `rsvp` binary: the monolith, plus operator commands.

use clap::{Parser, Subcommand};
use rsvp::{
    platform::{config::Settings, telemetry},
    topology::monolith,
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
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("rsvp: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match monolith::build(settings).await {
            Ok(app) => app.run_until_stopped().await.map_err(|e| e.to_string()),
            Err(err) => Err(err),
        },
        Command::MakeAdmin { email } => monolith::make_admin(settings, &email)
            .await
            .map(|()| println!("{email} is now an admin")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "rsvp stopped");
            eprintln!("rsvp: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
