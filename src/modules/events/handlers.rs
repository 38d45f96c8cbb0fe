//! HTTP handlers of the events module: parse, call the service, shape the response.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};
use uuid::Uuid;

use super::{
    Attendee, Event, EventFilter, EventsError, EventsService, MyRegistration, Person, Registration,
    domain::{EventInput, EventPatch},
};
use crate::platform::{
    auth::AuthUser,
    instant,
    json::JsonBody,
    pagination::{Page, PageQuery},
    problem::{Problem, ProblemBody},
    text::is_clean_parameter,
};

type Service = web::Data<EventsService>;

/// Registers the events module's public routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_events)
        .service(create_event)
        .service(get_event)
        .service(update_event)
        .service(cancel_event)
        .service(sign_up)
        .service(withdraw)
        .service(attendees)
        .service(my_registrations);
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    limit: Option<i64>,
    cursor: Option<String>,
    /// Earliest `starts_at` (inclusive), RFC 3339.
    #[serde(default, deserialize_with = "instant::optional")]
    from: Option<DateTime<Utc>>,
    /// Latest `starts_at` (inclusive), RFC 3339.
    #[serde(default, deserialize_with = "instant::optional")]
    to: Option<DateTime<Utc>>,
    organizer_id: Option<Uuid>,
    /// Exact match, case-insensitive.
    category: Option<String>,
    /// Exact match, case-insensitive.
    location: Option<String>,
    /// `scheduled` (default) or `cancelled`.
    status: Option<String>,
}

/// Upcoming (or cancelled) events, ordered by `starts_at`, then `id`.
#[utoipa::path(get, path = "/api/events", tag = "events", params(ListEventsQuery),
    responses((status = 200, body = inline(Page<Event>)), (status = 400, body = ProblemBody)))]
#[get("/api/events")]
#[tracing::instrument(skip_all)]
async fn list_events(
    service: Service,
    query: web::Query<ListEventsQuery>,
) -> Result<HttpResponse, EventsError> {
    let q = query.into_inner();
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    let cancelled = match q.status.as_deref() {
        None | Some("scheduled") => false,
        Some("cancelled") => true,
        Some(_) => {
            return Err(Problem::bad_request("status must be scheduled or cancelled").into());
        }
    };
    for (name, value) in [("category", &q.category), ("location", &q.location)] {
        if value.as_deref().is_some_and(|v| !is_clean_parameter(v)) {
            return Err(Problem::bad_request(format!(
                "{name} must not contain control characters"
            ))
            .into());
        }
    }
    let filter = EventFilter {
        from: q.from,
        to: q.to,
        organizer_id: q.organizer_id,
        category: q.category,
        location: q.location,
        cancelled,
    };
    Ok(json_response(service.list_json(filter, page).await?))
}

/// Publish an event; the caller becomes its organiser.
#[utoipa::path(post, path = "/api/events", tag = "events", security(("bearer" = [])), request_body = EventInput,
    responses((status = 201, body = Event), (status = 401, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[post("/api/events")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn create_event(
    service: Service,
    caller: AuthUser,
    body: JsonBody<EventInput>,
) -> Result<HttpResponse, EventsError> {
    Ok(HttpResponse::Created().json(service.create(caller, body.into_inner()).await?))
}

#[utoipa::path(get, path = "/api/events/{id}", tag = "events",
    responses((status = 200, body = Event), (status = 404, body = ProblemBody)))]
#[get("/api/events/{id}")]
#[tracing::instrument(skip_all, fields(event_id = %id))]
async fn get_event(service: Service, id: web::Path<Uuid>) -> Result<HttpResponse, EventsError> {
    Ok(json_response(
        service.event_json(id.into_inner().into()).await?,
    ))
}

/// Change an event (organiser or admin). Capacity can not go below `seats_taken`; a larger
/// capacity promotes waitlisted registrations at once.
#[utoipa::path(patch, path = "/api/events/{id}", tag = "events", security(("bearer" = [])), request_body = EventPatch,
    responses((status = 200, body = Event), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody),
        (status = 409, body = ProblemBody), (status = 422, body = ProblemBody)))]
#[patch("/api/events/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, event_id = %id))]
async fn update_event(
    service: Service,
    caller: AuthUser,
    id: web::Path<Uuid>,
    body: JsonBody<EventPatch>,
) -> Result<HttpResponse, EventsError> {
    Ok(HttpResponse::Ok().json(
        service
            .update(caller, id.into_inner().into(), body.into_inner())
            .await?,
    ))
}

/// Cancel an event (organiser or admin). It stays readable with status `cancelled`.
#[utoipa::path(delete, path = "/api/events/{id}", tag = "events", security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody)))]
#[delete("/api/events/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, event_id = %id))]
async fn cancel_event(
    service: Service,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, EventsError> {
    service.cancel(caller, id.into_inner().into()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Register the caller: `confirmed` while seats are left, `waitlisted` after.
#[utoipa::path(post, path = "/api/events/{id}/registrations", tag = "registrations", security(("bearer" = [])),
    responses((status = 201, body = Registration), (status = 404, body = ProblemBody),
        (status = 409, body = ProblemBody, description = "already registered, cancelled or started")))]
#[post("/api/events/{id}/registrations")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, event_id = %id))]
async fn sign_up(
    service: Service,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, EventsError> {
    Ok(HttpResponse::Created().json(service.register(caller, id.into_inner().into()).await?))
}

/// Withdraw the caller's registration; a freed seat goes to the longest-waiting person.
#[utoipa::path(delete, path = "/api/events/{id}/registrations/me", tag = "registrations", security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ProblemBody)))]
#[delete("/api/events/{id}/registrations/me")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, event_id = %id))]
async fn withdraw(
    service: Service,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, EventsError> {
    service.unregister(caller, id.into_inner().into()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The attendee list (organiser or admin), in registration order.
#[utoipa::path(get, path = "/api/events/{id}/registrations", tag = "registrations", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = inline(Page<Attendee>)), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody)))]
#[get("/api/events/{id}/registrations")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id, event_id = %id))]
async fn attendees(
    service: Service,
    caller: AuthUser,
    id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, EventsError> {
    let page = query.validate()?;
    let id = id.into_inner().into();
    Ok(json_response(
        service.attendees_json(caller, id, page).await?,
    ))
}

/// The caller's registrations with their events, in registration order.
#[utoipa::path(get, path = "/api/users/me/registrations", tag = "registrations", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = inline(Page<MyRegistration>)), (status = 401, body = ProblemBody)))]
#[get("/api/users/me/registrations")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn my_registrations(
    service: Service,
    caller: AuthUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, EventsError> {
    let page = query.validate()?;
    Ok(HttpResponse::Ok().json(service.registrations_of(caller, page).await?))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        list_events,
        create_event,
        get_event,
        update_event,
        cancel_event,
        sign_up,
        withdraw,
        attendees,
        my_registrations
    ),
    components(schemas(
        Event,
        Person,
        Registration,
        Attendee,
        MyRegistration,
        EventInput,
        EventPatch,
        ProblemBody
    ))
)]
/// The events module's part of the OpenAPI document.
pub struct ApiDoc;

/// `200` with JSON the service already rendered (a cached read).
fn json_response(json: bytes::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(json)
}
