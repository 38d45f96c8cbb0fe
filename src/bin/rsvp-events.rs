//! The events service (default :9000): events, registrations, capacity and the waitlist.

fn main() -> std::process::ExitCode {
    rsvp::topology::split::main(rsvp::config::Role::Service("events"))
}
