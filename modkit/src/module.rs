//! What a module declares about itself once, and what a process needs to compose modules it
//! knows only from their declarations.
//!
//! - [`Declaration`]: a module's name, the public path prefixes it serves, the domain events it
//!   publishes and consumes, where its service listens by default. An application keeps one
//!   list of them (its registry); every other list of modules — which ones a process hosts, the
//!   gateway's routes and upstreams, the migrations run, the processes a test starts — is
//!   derived from it, and [`check_registry`] refuses an inconsistent one at start.
//! - [`Apis`]: the interfaces the modules of one process offer each other, by trait. A module
//!   hosted here provides itself (`Arc<dyn Trait>` of its service); a module hosted elsewhere is
//!   provided by its generated `<Trait>Remote` client. A module that needs another asks for the
//!   trait and never learns which one it got.

use std::{
    any::{Any, TypeId, type_name},
    collections::HashMap,
    sync::{Arc, RwLock},
};

/// What a module says about itself, once.
#[derive(Debug, Clone, Copy)]
pub struct Declaration {
    /// Lowercase name (`users`): its binary, its settings and its upstream key carry it.
    pub name: &'static str,
    /// Public path prefixes the module serves (`/api/users`); a gateway routes them to it.
    pub routes: &'static [&'static str],
    /// Domain event topics the module publishes, through its outbox.
    pub publishes: &'static [&'static str],
    /// Domain event topics the module consumes.
    pub consumes: &'static [&'static str],
    /// Where its service listens when nothing says otherwise (`http://127.0.0.1:9091`).
    pub default_url: &'static str,
}

/// Why a registry of declarations does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two modules share a name.
    #[error("two modules are named {0}")]
    DuplicateName(&'static str),
    /// Two modules claim one public path prefix.
    #[error("{prefix} is claimed by both {first} and {second}")]
    DuplicateRoute {
        /// The prefix claimed twice.
        prefix: &'static str,
        /// The module listed first.
        first: &'static str,
        /// The module listed second.
        second: &'static str,
    },
    /// A module consumes a topic no module publishes: its handler would never run.
    #[error("{module} consumes {topic}, which no module publishes")]
    Unpublished {
        /// The consuming module.
        module: &'static str,
        /// The topic.
        topic: &'static str,
    },
    /// A name that could not be a binary's, a setting's or a host's part.
    #[error("{0:?} is not a lowercase name (a-z, 0-9, -)")]
    BadName(&'static str),
}

/// Checks that `modules` hold together: unique well-formed names, each public prefix claimed
/// once, each consumed topic published by some module.
pub fn check_registry(modules: &[Declaration]) -> Result<(), RegistryError> {
    for (i, module) in modules.iter().enumerate() {
        let well_formed = !module.name.is_empty()
            && module
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed {
            return Err(RegistryError::BadName(module.name));
        }
        for earlier in &modules[..i] {
            if earlier.name == module.name {
                return Err(RegistryError::DuplicateName(module.name));
            }
            if let Some(prefix) = module.routes.iter().find(|p| earlier.routes.contains(p)) {
                return Err(RegistryError::DuplicateRoute {
                    prefix,
                    first: earlier.name,
                    second: module.name,
                });
            }
        }
        for topic in module.consumes {
            if !modules.iter().any(|m| m.publishes.contains(topic)) {
                return Err(RegistryError::Unpublished {
                    module: module.name,
                    topic,
                });
            }
        }
    }
    Ok(())
}

/// The route table the declarations imply, `prefix=module` entries joined by commas (the form
/// a gateway's configuration takes), in registry order.
pub fn route_table(modules: &[Declaration]) -> String {
    modules
        .iter()
        .flat_map(|m| {
            m.routes
                .iter()
                .map(move |prefix| format!("{prefix}={}", m.name))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The interfaces a process's modules offer each other, one implementation per trait. Clones
/// share one table: a module may keep a clone and ask for an interface when it needs it, so two
/// modules may call each other whichever is stood up first.
///
/// ```
/// use std::sync::Arc;
/// trait Greeter: Send + Sync { fn greet(&self) -> String; }
/// struct Here;
/// impl Greeter for Here { fn greet(&self) -> String { "hello".into() } }
///
/// let apis = modkit::Apis::default();
/// apis.provide::<dyn Greeter>(Arc::new(Here));
/// assert_eq!(apis.get::<dyn Greeter>().unwrap().greet(), "hello");
/// ```
#[derive(Default, Clone)]
pub struct Apis {
    by_type: Arc<RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

/// Asked for an interface no module of the process provided: a module is missing from the
/// registry, or listed before the module it needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no module provides {0}")]
pub struct MissingApi(pub &'static str);

impl Apis {
    /// Offers `api` as the implementation of `T` (usually `dyn Trait`), replacing any earlier.
    pub fn provide<T: ?Sized + Send + Sync + 'static>(&self, api: Arc<T>) {
        self.by_type
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(TypeId::of::<T>(), Arc::new(api));
    }

    /// The implementation of `T` a module provided.
    pub fn get<T: ?Sized + Send + Sync + 'static>(&self) -> Result<Arc<T>, MissingApi> {
        self.by_type
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&TypeId::of::<T>())
            .and_then(|api| api.downcast_ref::<Arc<T>>())
            .cloned()
            .ok_or(MissingApi(type_name::<T>()))
    }
}

impl std::fmt::Debug for Apis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apis")
            .field(
                "provided",
                &self
                    .by_type
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn module(
        name: &'static str,
        routes: &'static [&'static str],
        publishes: &'static [&'static str],
        consumes: &'static [&'static str],
    ) -> Declaration {
        Declaration {
            name,
            routes,
            publishes,
            consumes,
            default_url: "http://127.0.0.1:1",
        }
    }

    #[test]
    fn a_consistent_registry_passes_and_yields_its_route_table() {
        let modules = [
            module(
                "users",
                &["/api/users", "/api/auth"],
                &["user.deleted"],
                &[],
            ),
            module("events", &["/api/events"], &[], &["user.deleted"]),
        ];
        assert_eq!(check_registry(&modules), Ok(()));
        assert_eq!(
            route_table(&modules),
            "/api/users=users,/api/auth=users,/api/events=events"
        );
    }

    #[test]
    fn inconsistent_registries_are_refused_naming_the_culprit() {
        let users = module("users", &["/api/users"], &["user.deleted"], &[]);
        for (modules, expected) in [
            (
                vec![users, module("users", &[], &[], &[])],
                RegistryError::DuplicateName("users"),
            ),
            (
                vec![users, module("accounts", &["/api/users"], &[], &[])],
                RegistryError::DuplicateRoute {
                    prefix: "/api/users",
                    first: "users",
                    second: "accounts",
                },
            ),
            (
                vec![users, module("mail", &[], &[], &["event.cancelled"])],
                RegistryError::Unpublished {
                    module: "mail",
                    topic: "event.cancelled",
                },
            ),
            (
                vec![module("Users", &[], &[], &[])],
                RegistryError::BadName("Users"),
            ),
        ] {
            assert_eq!(check_registry(&modules), Err(expected));
        }
    }

    trait Named: Send + Sync {
        fn name(&self) -> &'static str;
    }
    struct A;
    impl Named for A {
        fn name(&self) -> &'static str {
            "a"
        }
    }

    #[test]
    fn apis_hand_out_what_was_provided_by_trait_and_name_what_is_missing() {
        let apis = Apis::default();
        let kept_early = apis.clone();
        let missing = apis.get::<dyn Named>().err().unwrap();
        assert!(missing.to_string().contains("Named"), "{missing}");
        apis.provide::<dyn Named>(Arc::new(A));
        assert_eq!(apis.get::<dyn Named>().unwrap().name(), "a");
        // A clone taken before the interface was provided finds it later.
        assert_eq!(kept_early.get::<dyn Named>().unwrap().name(), "a");
        assert!(apis.get::<String>().is_err());
    }
}
