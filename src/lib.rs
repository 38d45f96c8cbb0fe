//! rsvp: an events platform built as a modular monolith that can split into services.
//!
//! Where a request goes: [`gateway`] (the public entry) → a module's handlers in
//! [`modules::users`] or [`modules::events`] → its service (rules) → its store (diesel).
//! [`topology`] assembles the pieces into a binary from the [`config`]; [`platform`] is what all
//! of them share.

pub mod config;
pub mod gateway;
pub mod modules;
pub mod platform;
pub mod topology;

/// Every binary of rsvp (and its tests) allocates through mimalloc: a request makes dozens of
/// short-lived allocations, which glibc's allocator served at a tenth of the split gateway's
/// CPU, and its per-thread arenas grew the monolith's resident memory under blocking work.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
