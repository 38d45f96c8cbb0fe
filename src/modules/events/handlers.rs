//! HTTP handlers of the events module: parse, call the service, shape the response.

use actix_web::{HttpResponse, delete, get, http::header::ContentType, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::{
    Attendee, Event, EventFilter, EventStatus, EventsError, EventsService, MyRegistration, Person,
    Registration, When,
    domain::{EventInput, EventPatch},
    search,
    service::SharePage,
};
use crate::platform::{
    auth::AuthUser,
    html::{self, escape},
    instant,
    json::JsonBody,
    pagination::{Page, PageQuery},
    problem::{Problem, ProblemBody},
    text::is_clean_parameter,
    zone::Zone,
};

type Service = web::Data<EventsService>;

/// Registers the events module's public routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_events)
        .service(create_event)
        .service(get_event)
        .service(event_calendar)
        .service(share_page)
        .service(new_calendar_feed)
        .service(revoke_calendar_feed)
        .service(calendar_feed)
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
    /// `upcoming` (not started, earliest first) or `past` (started, newest first); every
    /// event, earliest first, when left out.
    when: Option<String>,
    /// Free text: events with a word beginning with each word of `q` in their title,
    /// description, location or category, whatever the case and accents (`ber`, `spati`).
    q: Option<String>,
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
    for (name, value) in [
        ("category", &q.category),
        ("location", &q.location),
        ("q", &q.q),
    ] {
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
        q: match q.q.as_deref() {
            Some(text) if text.chars().count() > 200 => {
                return Err(Problem::bad_request("q must be at most 200 characters").into());
            }
            Some(text) => search::query_words(text),
            None => None,
        },
        when: match q.when.as_deref() {
            None => When::All,
            Some("upcoming") => When::Upcoming,
            Some("past") => When::Past,
            Some(_) => return Err(Problem::bad_request("when must be upcoming or past").into()),
        },
        cancelled,
    };
    let (body, tags) = service.list_json(filter, page).await?;
    let mut response = body.respond(HttpResponse::Ok().content_type(ContentType::json()));
    if let Some(tags) = tags {
        response.extensions_mut().insert(tags);
    }
    Ok(response)
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
    let (json, tags) = service.event_json(id.into_inner().into()).await?;
    let mut response = json_response(json);
    if let Some(tags) = tags {
        response.extensions_mut().insert(tags);
    }
    Ok(response)
}

/// The event as an iCalendar file (RFC 5545), to add to a calendar: its times in the venue's
/// zone (with its `VTIMEZONE`), a stable `UID`, a `SEQUENCE` raised by each change of time or
/// place, `STATUS:CANCELLED` once cancelled.
#[utoipa::path(get, path = "/api/events/{id}/calendar.ics", tag = "events",
    responses((status = 200, content_type = "text/calendar", body = String), (status = 404, body = ProblemBody)))]
#[get("/api/events/{id}/calendar.ics")]
#[tracing::instrument(skip_all, fields(event_id = %id))]
async fn event_calendar(
    service: Service,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, EventsError> {
    let id = id.into_inner();
    let ics = service.calendar(id.into()).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/calendar; charset=utf-8")
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"event-{id}.ics\""),
        ))
        .body(ics))
}

/// The event's share page: what a link pasted in a chat previews (Open Graph), the time at the
/// venue, the place and the seats, and a way into the web app. Server-rendered, no script.
#[utoipa::path(get, path = "/events/{id}", tag = "events",
    responses((status = 200, content_type = "text/html", body = String), (status = 404, body = ProblemBody)))]
#[get("/events/{id}")]
#[tracing::instrument(skip_all, fields(event_id = %id))]
async fn share_page(service: Service, id: web::Path<Uuid>) -> Result<HttpResponse, EventsError> {
    let SharePage { event, url } = service.share_page(id.into_inner().into()).await?;
    let zone = Zone::or_utc(&event.time_zone);
    let when = zone.describe_span(event.starts_at, event.ends_at);
    let cancelled = event.status == EventStatus::Cancelled;
    let seats = format!("{} of {} seats taken", event.seats_taken, event.capacity)
        + &match event.waitlist_length {
            0 => String::new(),
            n => format!(" · {n} on the waitlist"),
        };
    let summary = [
        cancelled.then(|| "Cancelled".to_owned()),
        Some(when.clone()),
        event.location.clone(),
        (!cancelled).then(|| seats.clone()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ");
    let meta = |property: &str, content: &str| {
        format!(
            "<meta property=\"{property}\" content=\"{}\">",
            escape(content)
        )
    };
    let head = [
        format!(
            "<meta name=\"description\" content=\"{}\">",
            escape(&summary)
        ),
        meta("og:type", "website"),
        meta("og:site_name", "rsvp"),
        meta("og:title", &event.title),
        meta("og:description", &summary),
        meta("og:url", &url),
        "<meta name=\"twitter:card\" content=\"summary\">".to_owned(),
        format!("<link rel=\"canonical\" href=\"{}\">", escape(&url)),
        "<link rel=\"stylesheet\" href=\"/assets/app.css\">".to_owned(),
    ]
    .concat();
    let paragraph = |class: &str, html: String| format!("<p class=\"{class}\">{html}</p>");
    let body = [
        "<main class=\"share\"><article class=\"card\">".to_owned(),
        format!(
            "<h1 dir=\"auto\">{}{}</h1>",
            escape(&event.title),
            if cancelled { " <span class=\"badge cancelled\">Cancelled</span>" } else { "" }
        ),
        paragraph("meta", format!("<time datetime=\"{}\">{}</time>", event.starts_at.to_rfc3339(), escape(&when))),
        event
            .location
            .as_deref()
            .map(|l| paragraph("meta", linked(l)))
            .unwrap_or_default(),
        paragraph("meta", escape(&seats)),
        event
            .description
            .as_deref()
            .map(|d| paragraph("description", linked(d)))
            .unwrap_or_default(),
        format!(
            "<p class=\"actions\"><a class=\"button\" href=\"/#/events/{0}\">Open in rsvp</a> \
             <a class=\"button secondary\" href=\"/api/events/{0}/calendar.ics\">Add to calendar</a></p>",
            event.id
        ),
        "</article></main>".to_owned(),
    ]
    .concat();
    Ok(html::page(&format!("{} · rsvp", event.title), &head, &body))
}

/// `text` escaped, with its http(s) links made clickable (opened without telling the target
/// where from, or giving it this page); anything else that looks like a link stays text.
fn linked(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest
        .find("http://")
        .into_iter()
        .chain(rest.find("https://"))
        .min()
    {
        out.push_str(&escape(&rest[..start]));
        let link = &rest[start..];
        let end = link
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(link.len());
        // A sentence's closing punctuation is not part of the address.
        let url = link[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')']);
        if url.len() > "https://".len() {
            out.push_str(&format!(
                "<a href=\"{0}\" rel=\"noopener noreferrer nofollow\">{0}</a>",
                escape(url)
            ));
        } else {
            out.push_str(&escape(url));
        }
        rest = &link[url.len()..];
    }
    out.push_str(&escape(rest));
    out
}

/// The caller's calendar feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarFeed {
    /// The feed's secret address, for a calendar app to subscribe to: anyone with it sees the
    /// events the caller registered for. Shown once; a new one stops the old.
    pub url: String,
}

/// A new secret address for a calendar app to subscribe to: the events the caller registered
/// for (waitlisted ones tentative). Any earlier address stops working.
#[utoipa::path(post, path = "/api/users/me/calendar-feed", tag = "events", security(("bearer" = [])),
    responses((status = 201, body = CalendarFeed), (status = 401, body = ProblemBody)))]
#[post("/api/users/me/calendar-feed")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn new_calendar_feed(
    service: Service,
    caller: AuthUser,
) -> Result<HttpResponse, EventsError> {
    let url = service.new_feed(caller).await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(CalendarFeed { url }))
}

/// Stops the caller's calendar feed (its address answers `404` from now on).
#[utoipa::path(delete, path = "/api/users/me/calendar-feed", tag = "events", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemBody), (status = 404, body = ProblemBody)))]
#[delete("/api/users/me/calendar-feed")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn revoke_calendar_feed(
    service: Service,
    caller: AuthUser,
) -> Result<HttpResponse, EventsError> {
    if service.revoke_feed(caller).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(Problem::not_found("you have no calendar feed").into())
    }
}

/// A calendar feed (iCalendar): the events its owner registered for, by its secret address.
#[utoipa::path(get, path = "/api/calendar/{secret}.ics", tag = "events",
    responses((status = 200, content_type = "text/calendar", body = String), (status = 404, body = ProblemBody)))]
#[get("/api/calendar/{secret}.ics")]
#[tracing::instrument(skip_all)]
async fn calendar_feed(
    service: Service,
    secret: web::Path<String>,
) -> Result<HttpResponse, EventsError> {
    let secret = secret.into_inner();
    // Only what this server issues (43 URL-safe characters) reaches the database.
    let ours = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let feed = if ours {
        service.feed(&secret).await?
    } else {
        None
    };
    let feed = feed.ok_or_else(|| Problem::not_found("no calendar feed has this address"))?;
    Ok(HttpResponse::Ok()
        .content_type("text/calendar; charset=utf-8")
        .insert_header(("cache-control", "private, max-age=300"))
        .body(feed))
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
        event_calendar,
        share_page,
        new_calendar_feed,
        revoke_calendar_feed,
        calendar_feed,
        update_event,
        cancel_event,
        sign_up,
        withdraw,
        attendees,
        my_registrations
    ),
    components(schemas(
        CalendarFeed,
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
        .content_type(ContentType::json())
        .body(json)
}

#[cfg(test)]
mod tests {
    use super::linked;

    #[test]
    fn only_http_links_become_links_and_everything_else_stays_text() {
        assert_eq!(
            linked("See https://example.org/a?b=1&c=2. Or http://x.test!"),
            "See <a href=\"https://example.org/a?b=1&amp;c=2\" rel=\"noopener noreferrer nofollow\">\
             https://example.org/a?b=1&amp;c=2</a>. Or <a href=\"http://x.test\" \
             rel=\"noopener noreferrer nofollow\">http://x.test</a>!"
        );
        for text in [
            "javascript:alert(1)",
            "<script>x</script>",
            "https://",
            "data:text/html,x",
        ] {
            assert!(!linked(text).contains("<a "), "{text}");
            assert!(
                !linked(text).contains('<') || linked(text).contains("&lt;"),
                "{text}"
            );
        }
        assert_eq!(
            linked("https://a.test/\"onmouseover=\"x"),
            "<a href=\"https://a.test/\" rel=\"noopener noreferrer nofollow\">https://a.test/</a>&quot;onmouseover=&quot;x"
        );
    }
}
