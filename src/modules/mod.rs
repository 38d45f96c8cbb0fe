//! The domain modules. Each owns its tables and exposes only its public interface, and declares
//! itself once ([`hosting::Module`]); [`MODULES`] is the one list of them.

pub mod events;
pub mod hosting;
pub mod notifications;
pub mod users;

use hosting::Module;

/// Every module, in the order a process stands them up: a module comes after those whose
/// interfaces it calls. Every other list of modules (hosting, routes, upstreams, migrations,
/// OpenAPI, the tests' processes) derives from this one.
pub static MODULES: &[&Module] = &[&users::MODULE, &events::MODULE, &notifications::MODULE];

/// The module named `name`.
pub fn module(name: &str) -> Option<&'static Module> {
    MODULES.iter().copied().find(|m| m.name() == name)
}

/// The declarations of [`MODULES`], for the kit's checks and tables.
pub fn declarations() -> Vec<modkit::Declaration> {
    MODULES.iter().map(|m| m.declaration).collect()
}

/// The modules' parts of the public OpenAPI document.
pub fn api_documents() -> impl Iterator<Item = utoipa::openapi::OpenApi> {
    MODULES.iter().map(|m| (m.api_doc)())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_registry_holds_together() {
        assert_eq!(modkit::check_registry(&super::declarations()), Ok(()));
    }
}
