//! The OpenAPI document of the public contract, assembled from the modules' annotated handlers.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

use crate::modules::{events, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "rsvp", description = "Events platform: accounts, events, registrations with capacity and a waitlist. \
Every error is application/problem+json (RFC 9457). List endpoints use keyset pagination (limit 1..100, opaque cursor)."),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "events"), (name = "registrations"))
)]
struct PublicApi;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole public API: the same document in every topology.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc = PublicApi::openapi();
    doc.merge(users::ApiDoc::openapi());
    doc.merge(events::ApiDoc::openapi());
    doc
}
