//! Walls a test enforces, not only convention: every path a file of `src/` names (through a
//! `use`, an alias or inline) is resolved and checked against the layering
//! binaries → topology → gateway → modules → platform:
//!
//! - `platform` is the ground floor: it names no module, no gateway, no topology, no config;
//! - a module names another module only through that module's interface (the trait, its DTOs
//!   and its domain events), never its service, store or internals, and never the gateway,
//!   topology or config;
//! - the gateway names the modules only for their OpenAPI documents, never the topology or
//!   config;
//! - the topology names no module: it composes a process from the registry of declarations.
//!
//! The modules are the registry's (`rsvp::modules::MODULES`): a new one is walled in as soon as
//! it is registered.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// What other modules may name of each module (nothing, unless listed here).
const INTERFACES: &[(&str, &[&str])] = &[
    (
        "users",
        &[
            "UsersApi",
            "UsersApiError",
            "PublicProfile",
            "UserDeleted",
            "USER_DELETED",
            "PROFILE_CHANGES",
            "Contact",
        ],
    ),
    (
        "events",
        &[
            "EventsApi",
            "EventsApiError",
            "Seats",
            "EventSummary",
            "SEAT_OBTAINED",
            "SeatObtained",
            "EVENT_CANCELLED",
            "EventCancelled",
            "EVENT_CHANGED",
            "EventChanged",
        ],
    ),
    (
        "notifications",
        &[
            "NotificationsApi",
            "NotificationsApiError",
            "PasswordResetMail",
        ],
    ),
];

/// The registered modules with their interfaces.
fn modules() -> Vec<(&'static str, &'static [&'static str])> {
    rsvp::modules::MODULES
        .iter()
        .map(|m| {
            let interface = INTERFACES
                .iter()
                .find(|(name, _)| *name == m.name())
                .map_or(&[][..], |(_, interface)| *interface);
            (m.name(), interface)
        })
        .collect()
}

/// One rule: files under `within` may not name paths starting with `forbidden`, except those
/// continuing with one of `except`.
struct Wall {
    within: &'static str,
    forbidden: &'static str,
    except: &'static [&'static str],
    why: &'static str,
}

fn walls() -> Vec<Wall> {
    let mut walls = vec![];
    for layer in [
        "crate::modules",
        "crate::gateway",
        "crate::topology",
        "crate::config",
    ] {
        walls.push(Wall {
            within: "platform",
            forbidden: layer,
            except: &[],
            why: "platform is the ground floor",
        });
    }
    for layer in ["crate::gateway", "crate::topology", "crate::config"] {
        walls.push(Wall {
            within: "modules",
            forbidden: layer,
            except: &[],
            why: "a module knows nothing above it",
        });
    }
    for layer in ["crate::topology", "crate::config"] {
        walls.push(Wall {
            within: "gateway",
            forbidden: layer,
            except: &[],
            why: "the gateway is wired by the topology, not the other way round",
        });
    }
    walls.push(Wall {
        within: "gateway",
        forbidden: "crate::modules",
        except: &["api_documents"],
        why: "the gateway knows the modules only by their OpenAPI documents",
    });
    walls.push(Wall {
        within: "topology",
        forbidden: "crate::modules",
        except: &["MODULES", "hosting"],
        why: "the topology composes from the registry and names no module",
    });
    let modules = modules();
    for (module, _) in &modules {
        for (other, interface) in modules.iter().filter(|(o, _)| o != module) {
            walls.push(Wall {
                within: Box::leak(format!("modules/{module}").into_boxed_str()),
                forbidden: Box::leak(format!("crate::modules::{other}").into_boxed_str()),
                except: interface,
                why: "modules meet only through each other's interface",
            });
        }
    }
    walls
}

/// The module path of a file of `src/` (`src/modules/users/store.rs` → `crate::modules::users::store`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    let mut path = vec!["crate".to_owned()];
    path.extend(parts);
    path
}

/// Every absolute path one file names, with the line it is on.
struct Names {
    module: Vec<String>,
    aliases: HashMap<String, Vec<String>>,
    found: Vec<(Vec<String>, usize)>,
}

impl Names {
    /// Makes `segments` absolute: `crate::…`, `self::…`, `super::…` or an alias a `use` bound.
    fn resolve(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        let mut base = match first.as_str() {
            "crate" => return Some(segments.to_vec()),
            "self" => self.module.clone(),
            "super" => {
                let mut base = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                return Some(base);
            }
            alias => self.aliases.get(alias)?.clone(),
        };
        base.extend(segments[1..].iter().cloned());
        Some(base)
    }

    fn collect_use(&mut self, prefix: Vec<String>, tree: &syn::UseTree, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                let mut prefix = prefix;
                prefix.push(p.ident.to_string());
                self.collect_use(prefix, &p.tree, line);
            }
            syn::UseTree::Name(n) => self.bind(prefix, n.ident.to_string(), None, line),
            syn::UseTree::Rename(r) => self.bind(
                prefix,
                r.ident.to_string(),
                Some(r.rename.to_string()),
                line,
            ),
            syn::UseTree::Glob(_) => {
                if let Some(path) = self.resolve(&prefix) {
                    self.found.push((path, line));
                }
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.collect_use(prefix.clone(), tree, line);
                }
            }
        }
    }

    fn bind(&mut self, mut prefix: Vec<String>, name: String, rename: Option<String>, line: usize) {
        let alias = rename.unwrap_or_else(|| name.clone());
        if name != "self" {
            prefix.push(name);
        }
        if let Some(path) = self.resolve(&prefix) {
            self.aliases.insert(alias, path.clone());
            self.found.push((path, line));
        }
    }
}

impl<'ast> Visit<'ast> for Names {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let line = item.use_token.span.start().line;
        self.collect_use(Vec::new(), &item.tree, line);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1
            && let Some(absolute) = self.resolve(&segments)
        {
            let line = path
                .segments
                .first()
                .map_or(0, |s| s.ident.span().start().line);
            self.found.push((absolute, line));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro calls (`tracing::info!`, `json!`) are tokens, not syntax: the code
        // they expand to is checked where it is written.
        self.visit_path(&mac.path);
    }
}

/// The walls `source` (the file at `relative` under `src/`) breaks, one message each.
fn violations(relative: &Path, source: &str) -> Vec<String> {
    let file = match syn::parse_file(source) {
        Ok(file) => file,
        Err(err) => return vec![format!("{}: does not parse: {err}", relative.display())],
    };
    let mut names = Names {
        module: module_path(relative),
        aliases: HashMap::new(),
        found: Vec::new(),
    };
    names.visit_file(&file);
    let within = relative.to_string_lossy().replace('\\', "/");
    let mut broken = Vec::new();
    for wall in walls() {
        if !within.starts_with(wall.within) {
            continue;
        }
        for (path, line) in &names.found {
            let joined = path.join("::");
            let Some(rest) = joined.strip_prefix(wall.forbidden) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with("::")) {
                continue;
            }
            let rest = rest.trim_start_matches("::");
            let names_a_module = rest.is_empty()
                || (wall.forbidden == "crate::modules" && rsvp::modules::module(rest).is_some());
            if names_a_module && !wall.except.is_empty() {
                continue; // naming the module itself; what is used of it is checked too
            }
            let allowed = wall
                .except
                .iter()
                .any(|item| rest == *item || rest.starts_with(&format!("{item}::")));
            if !allowed {
                broken.push(format!(
                    "src/{}:{line}: names {joined} ({})",
                    within, wall.why
                ));
            }
        }
    }
    broken.sort();
    broken.dedup();
    broken
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

crate::tests!(
    every_layer_keeps_to_its_walls,
    breaches_are_caught_however_they_are_spelled
);

async fn every_layer_keeps_to_its_walls() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let broken: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let relative = file.strip_prefix(&src).unwrap();
            violations(relative, &std::fs::read_to_string(file).unwrap())
        })
        .collect();
    assert!(files.len() > 40, "found only {} files", files.len());
    assert!(broken.is_empty(), "walls broken:\n{}", broken.join("\n"));
}

/// The checker itself: each kind of breach is caught, however it is spelled.
async fn breaches_are_caught_however_they_are_spelled() {
    let events = Path::new("modules/events/service.rs");
    for (source, breach) in [
        (
            "use crate::modules::users::UsersService;",
            "users::UsersService",
        ),
        (
            "use crate::modules::users; fn f(_: users::UsersService) {}",
            "users::UsersService",
        ),
        (
            "use crate::modules::{users::{self, store}};",
            "users::store",
        ),
        (
            "fn f() { crate::modules::users::UsersService::new(); }",
            "users::UsersService",
        ),
        ("use super::super::users::UsersError;", "users::UsersError"),
        (
            "use crate::gateway::HttpShell;",
            "crate::gateway::HttpShell",
        ),
        ("use crate::config::Settings;", "crate::config::Settings"),
    ] {
        let found = violations(events, source);
        assert!(
            found.iter().any(|v| v.contains(breach)),
            "{source:?} not caught: {found:?}"
        );
    }
    for fine in [
        "use crate::modules::users::{USER_DELETED, UserDeleted, UsersApi};",
        "use crate::platform::db::Db; use super::store;",
        "fn f(users: &dyn crate::modules::users::UsersApi) {}",
    ] {
        assert_eq!(violations(events, fine), Vec::<String>::new(), "{fine:?}");
    }
    let platform = Path::new("platform/db.rs");
    assert!(!violations(platform, "use crate::gateway::TrustedProxies;").is_empty());
    assert!(!violations(platform, "use crate::modules::users::UsersApi;").is_empty());
    let gateway = Path::new("gateway/openapi.rs");
    assert!(violations(gateway, "fn d() { crate::modules::api_documents(); }").is_empty());
    assert!(!violations(gateway, "use crate::modules::users::UsersService;").is_empty());
    assert!(!violations(gateway, "use crate::modules::users::ApiDoc;").is_empty());
    let topology = Path::new("topology/split.rs");
    assert!(
        violations(
            topology,
            "use crate::modules::{MODULES, hosting::Process}; fn f() {}"
        )
        .is_empty()
    );
    for breach in [
        "use crate::modules::users::UsersApiRemote;",
        "use crate::modules::events; fn f() { events::MODULE; }",
    ] {
        assert!(!violations(topology, breach).is_empty(), "{breach:?}");
    }
}
