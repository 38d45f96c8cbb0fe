//! HTTP handlers of the notifications module: parse, call the service, shape the response.

use actix_web::{HttpResponse, get, patch, post, put, web};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::{
    EmailSettings, Kind, Notification, NotificationPage, NotificationSettings, NotificationsError,
    NotificationsService,
};
use crate::platform::{
    auth::AuthUser,
    json::JsonBody,
    pagination::PageQuery,
    problem::{Problem, ProblemBody},
};

type Service = web::Data<NotificationsService>;

/// Registers the notifications module's public routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(mark)
        .service(get_settings)
        .service(put_settings)
        .service(unsubscribe_page)
        .service(unsubscribe);
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    /// `true`: read; `false`: unread again.
    read: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnsubscribeQuery {
    /// The token of the mail's link.
    token: Option<String>,
}

/// The caller's notifications, newest first, with how many are unread.
#[utoipa::path(get, path = "/api/users/me/notifications", tag = "notifications", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = NotificationPage), (status = 401, body = ProblemBody)))]
#[get("/api/users/me/notifications")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn list(
    service: Service,
    caller: AuthUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, NotificationsError> {
    let page = query.validate()?;
    Ok(HttpResponse::Ok().json(service.list(caller.id.as_uuid(), page).await?))
}

/// Mark one of the caller's notifications read (or unread).
#[utoipa::path(patch, path = "/api/users/me/notifications/{id}", tag = "notifications",
    security(("bearer" = [])), request_body = MarkRequest,
    responses((status = 200, body = Notification), (status = 401, body = ProblemBody),
        (status = 404, body = ProblemBody, description = "no such notification of the caller's")))]
#[patch("/api/users/me/notifications/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn mark(
    service: Service,
    caller: AuthUser,
    id: web::Path<Uuid>,
    body: JsonBody<MarkRequest>,
) -> Result<HttpResponse, NotificationsError> {
    let read = body.into_inner().read;
    let notification = service
        .mark(caller.id.as_uuid(), id.into_inner(), read)
        .await?;
    Ok(HttpResponse::Ok().json(notification))
}

/// Which kinds of mail the caller gets (in-app notifications always come).
#[utoipa::path(get, path = "/api/users/me/notification-settings", tag = "notifications",
    security(("bearer" = [])),
    responses((status = 200, body = NotificationSettings), (status = 401, body = ProblemBody)))]
#[get("/api/users/me/notification-settings")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn get_settings(
    service: Service,
    caller: AuthUser,
) -> Result<HttpResponse, NotificationsError> {
    let email = service.settings(caller.id.as_uuid()).await?;
    Ok(HttpResponse::Ok().json(NotificationSettings { email }))
}

/// Replace the caller's mail settings.
#[utoipa::path(put, path = "/api/users/me/notification-settings", tag = "notifications",
    security(("bearer" = [])), request_body = NotificationSettings,
    responses((status = 200, body = NotificationSettings), (status = 401, body = ProblemBody),
        (status = 422, body = ProblemBody)))]
#[put("/api/users/me/notification-settings")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn put_settings(
    service: Service,
    caller: AuthUser,
    body: JsonBody<NotificationSettings>,
) -> Result<HttpResponse, NotificationsError> {
    let email = service
        .save_settings(caller.id.as_uuid(), body.into_inner().email)
        .await?;
    Ok(HttpResponse::Ok().json(NotificationSettings { email }))
}

/// The page a mail's unsubscribe link opens: a button that switches that kind of mail off
/// (a link alone changes nothing: mail scanners follow links).
#[utoipa::path(get, path = "/api/notifications/unsubscribe", tag = "notifications",
    params(UnsubscribeQuery), responses((status = 200, description = "an HTML page with the button")))]
#[get("/api/notifications/unsubscribe")]
async fn unsubscribe_page(query: web::Query<UnsubscribeQuery>) -> HttpResponse {
    let token = query.into_inner().token.unwrap_or_default();
    let token: String = token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    html(&format!(
        "<h1>Unsubscribe</h1><p>Stop getting this kind of mail from rsvp?</p>\
         <form method=\"post\" action=\"/api/notifications/unsubscribe?token={token}\">\
         <button type=\"submit\">Unsubscribe</button></form>"
    ))
}

/// One-click unsubscribe (RFC 8058): switches off the kind of mail the link came with.
#[utoipa::path(post, path = "/api/notifications/unsubscribe", tag = "notifications",
    params(UnsubscribeQuery),
    responses((status = 200, description = "switched off (an HTML page says which)"),
        (status = 404, body = ProblemBody, description = "not a link this server sent")))]
#[post("/api/notifications/unsubscribe")]
#[tracing::instrument(skip_all)]
async fn unsubscribe(
    service: Service,
    query: web::Query<UnsubscribeQuery>,
) -> Result<HttpResponse, NotificationsError> {
    let token = query
        .into_inner()
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Problem::bad_request("token is required"))?;
    // Only what this server issues (URL-safe base64) reaches the database: anything else (a NUL,
    // a megabyte) is simply not one of our links.
    let ours = token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ours {
        return Err(NotificationsError::UnknownUnsubscribe);
    }
    let kind = service.unsubscribe(token).await?;
    let what = match kind {
        Kind::Promotion => "seats you get from a waitlist",
        Kind::Cancellation => "cancelled events",
        Kind::Changes => "events that change their time or place",
        Kind::Reminders => "reminders",
        Kind::PasswordReset => "password resets",
    };
    Ok(html(&format!(
        "<h1>Unsubscribed</h1><p>You will get no more mail about {what}. You still see it in \
         the app, and can switch mail on again in your notification settings.</p>"
    )))
}

/// A small page of this module's, under the same strict policy as the web app.
fn html(body: &str) -> HttpResponse {
    crate::platform::html::page("rsvp", "", body)
}

#[derive(OpenApi)]
#[openapi(
    paths(list, mark, get_settings, put_settings, unsubscribe_page, unsubscribe),
    components(schemas(
        Notification,
        NotificationPage,
        NotificationSettings,
        EmailSettings,
        Kind,
        MarkRequest,
        ProblemBody
    ))
)]
/// The notifications module's part of the OpenAPI document.
pub struct ApiDoc;
