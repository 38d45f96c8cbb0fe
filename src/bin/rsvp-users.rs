//! The users service (default :9091): accounts, tokens, the JWKS and the internal profile API.

fn main() -> std::process::ExitCode {
    rsvp::topology::split::main(rsvp::config::Role::Service("users"))
}
