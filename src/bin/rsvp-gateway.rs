//! The split topology's public entry (default :8000): proxies to the users and events services,
//! or hosts some modules itself when `topology.local_modules` says so.

fn main() -> std::process::ExitCode {
    rsvp::topology::split::main(rsvp::config::Role::Gateway)
}
