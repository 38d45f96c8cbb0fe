//! The notifications service (default :9092): in-app notifications, mail and its queue.

fn main() -> std::process::ExitCode {
    rsvp::topology::split::main(rsvp::config::Role::Service("notifications"))
}
