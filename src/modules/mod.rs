//! The domain modules. Each owns its tables and exposes only its public interface.

pub mod events;
pub mod users;
