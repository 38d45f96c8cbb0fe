//! The OpenAPI document of the public contract, assembled from the modules' annotated handlers.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        Content, Ref, RefOr, Response,
        path::{Operation, ParameterIn},
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

#[derive(OpenApi)]
#[openapi(
    info(title = "rsvp", description = "Events platform: accounts, events, registrations with capacity and a waitlist. \
Every error is application/problem+json (RFC 9457). List endpoints use keyset pagination (limit 1..100, opaque cursor). \
Text answers of 1 KiB or more are compressed (br or gzip) when Accept-Encoding accepts it."),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "events"), (name = "registrations"), (name = "notifications"))
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
    for part in crate::modules::api_documents() {
        doc.merge(part);
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            document_gateway_errors(path, operation);
        }
    }
    doc
}

/// Handlers document the errors of their domain; the answers every route can get from the
/// gateway and the extractors in front of it are added here, so no handler can forget them.
/// Every error is `application/problem+json`.
fn document_gateway_errors(path: &str, operation: &mut Operation) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_path = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let has_body = operation.request_body.is_some();
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut common = vec![(
        "503",
        "A module or the database is unavailable; see Retry-After",
    )];
    // Any path may fail to decode cleanly (a control character, `..` above the root).
    common.push((
        "400",
        "Malformed request: a path that does not decode cleanly, a malformed JSON body or query parameter",
    ));
    if has_body {
        common.push((
            "408",
            "The body did not arrive within `server.body_timeout_ms`",
        ));
        common.push(("413", "Body larger than the configured limit"));
        common.push(("415", "Body is not application/json"));
        common.push(("422", "A field is invalid; `errors` names it"));
    }
    if secured {
        common.push(("401", "Missing, invalid or expired access token"));
    }
    if has_path {
        common.push(("404", "No such resource"));
    }
    // Every request that checks a password shares the per-address and per-account limit.
    if path.starts_with("/api/auth/") || (path == "/api/users/me" && has_body) {
        common.push(("429", "Too many password attempts; see Retry-After"));
    }
    common.push(("414", "Request target longer than 8 KiB"));
    common.push(("431", "Header section larger than 16 KiB"));
    let responses = &mut operation.responses.responses;
    for (status, description) in common {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.parse::<u16>().is_ok_and(|code| code >= 400);
        if let (true, RefOr::T(response)) = (is_error, response) {
            response.content.clear();
            response.content.insert(
                "application/problem+json".to_owned(),
                Content::new(Some(Ref::from_schema_name("ProblemBody"))),
            );
        }
    }
}
