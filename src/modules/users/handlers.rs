//! HTTP handlers of the users module: parse, call the service, shape the response.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::{PublicProfile, TokenPair, User, UsersError, UsersService, service::ProfileChange};
use crate::platform::{
    auth::{AuthUser, JwkSet},
    json::JsonBody,
    pagination::{Page, PageQuery},
    problem::ProblemBody,
};

type Service = web::Data<UsersService>;

/// Registers the users module's public routes. `/api/users/me` must precede `/api/users/{id}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(register)
        .service(login)
        .service(refresh)
        .service(logout)
        .service(password_reset)
        .service(password_reset_confirm)
        .service(get_me)
        .service(update_me)
        .service(delete_me)
        .service(list_users)
        .service(get_user)
        .service(delete_user)
        .service(jwks);
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com")]
    email: String,
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordResetConfirmation {
    /// The token of the mailed link.
    token: String,
    #[schema(min_length = 8, max_length = 128)]
    password: String,
}

/// The answer to every reset request.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct PasswordResetAccepted {
    detail: &'static str,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMeRequest {
    name: Option<String>,
    password: Option<String>,
    current_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteMeRequest {
    current_password: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    limit: Option<i64>,
    cursor: Option<String>,
    /// Only the account with this email (compared case-insensitively).
    email: Option<String>,
}

/// Create an account.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = User), (status = 409, body = ProblemBody, description = "email taken"),
        (status = 422, body = ProblemBody), (status = 429, body = ProblemBody)))]
#[post("/api/auth/register")]
#[tracing::instrument(skip_all)]
async fn register(
    service: Service,
    body: JsonBody<RegisterRequest>,
) -> Result<HttpResponse, UsersError> {
    let body = body.into_inner();
    let user = service
        .register(&body.email, &body.password, &body.name)
        .await?;
    Ok(HttpResponse::Created().json(user))
}

/// Exchange email and password for a token pair.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenPair),
        (status = 401, body = ProblemBody, description = "same answer for unknown email and wrong password"),
        (status = 429, body = ProblemBody)))]
#[post("/api/auth/login")]
#[tracing::instrument(skip_all)]
async fn login(service: Service, body: JsonBody<LoginRequest>) -> Result<HttpResponse, UsersError> {
    let body = body.into_inner();
    Ok(tokens(service.login(&body.email, &body.password).await?))
}

/// Rotate a refresh token. Presenting a used token revokes its whole family.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ProblemBody)))]
#[post("/api/auth/refresh")]
#[tracing::instrument(skip_all)]
async fn refresh(
    service: Service,
    body: JsonBody<RefreshRequest>,
) -> Result<HttpResponse, UsersError> {
    Ok(tokens(
        service.refresh(&body.into_inner().refresh_token).await?,
    ))
}

/// Revoke a refresh token's session. Unknown tokens are accepted silently.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204)))]
#[post("/api/auth/logout")]
#[tracing::instrument(skip_all)]
async fn logout(
    service: Service,
    body: JsonBody<RefreshRequest>,
) -> Result<HttpResponse, UsersError> {
    service.logout(&body.into_inner().refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ask for a password-reset link by mail. The same answer, as fast, whether or not an account
/// has this email.
#[utoipa::path(post, path = "/api/auth/password-reset", tag = "auth", request_body = PasswordResetRequest,
    responses((status = 202, body = PasswordResetAccepted), (status = 429, body = ProblemBody)))]
#[post("/api/auth/password-reset")]
#[tracing::instrument(skip_all)]
async fn password_reset(
    service: Service,
    body: JsonBody<PasswordResetRequest>,
) -> Result<HttpResponse, UsersError> {
    service
        .into_inner()
        .request_password_reset(body.into_inner().email);
    Ok(HttpResponse::Accepted().json(PasswordResetAccepted {
        detail: "If an account has this email, a link to choose a new password is on its way.",
    }))
}

/// Choose a new password with a mailed link's token; every session of the account ends.
#[utoipa::path(post, path = "/api/auth/password-reset/confirm", tag = "auth",
    request_body = PasswordResetConfirmation,
    responses((status = 204), (status = 400, body = ProblemBody, description = "a used, expired or unknown token"),
        (status = 422, body = ProblemBody), (status = 429, body = ProblemBody)))]
#[post("/api/auth/password-reset/confirm")]
#[tracing::instrument(skip_all)]
async fn password_reset_confirm(
    service: Service,
    body: JsonBody<PasswordResetConfirmation>,
) -> Result<HttpResponse, UsersError> {
    let body = body.into_inner();
    service
        .confirm_password_reset(&body.token, &body.password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's account.
#[utoipa::path(get, path = "/api/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ProblemBody)))]
#[get("/api/users/me")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn get_me(service: Service, caller: AuthUser) -> Result<HttpResponse, UsersError> {
    let json = service.me_json(caller.id.as_uuid()).await?;
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(json))
}

/// Change the caller's name and/or password; `current_password` is always required.
/// A new password revokes every refresh token of the account.
#[utoipa::path(patch, path = "/api/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateMeRequest,
    responses((status = 200, body = User), (status = 403, body = ProblemBody, description = "wrong current_password"),
        (status = 422, body = ProblemBody)))]
#[patch("/api/users/me")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn update_me(
    service: Service,
    caller: AuthUser,
    body: JsonBody<UpdateMeRequest>,
) -> Result<HttpResponse, UsersError> {
    let body = body.into_inner();
    let change = ProfileChange {
        name: body.name,
        password: body.password,
        current_password: body.current_password,
    };
    Ok(HttpResponse::Ok().json(service.update_me(caller.id.as_uuid(), change).await?))
}

/// Delete the caller's account: their registrations are removed and their events cancelled.
#[utoipa::path(delete, path = "/api/users/me", tag = "users", security(("bearer" = [])), request_body = DeleteMeRequest,
    responses((status = 204), (status = 403, body = ProblemBody, description = "wrong current_password")))]
#[delete("/api/users/me")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn delete_me(
    service: Service,
    caller: AuthUser,
    body: JsonBody<DeleteMeRequest>,
) -> Result<HttpResponse, UsersError> {
    service
        .delete_me(caller.id.as_uuid(), body.into_inner().current_password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List accounts (admin).
#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = [])), params(ListUsersQuery),
    responses((status = 200, body = inline(Page<User>)), (status = 403, body = ProblemBody)))]
#[get("/api/users")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn list_users(
    service: Service,
    caller: AuthUser,
    query: web::Query<ListUsersQuery>,
) -> Result<HttpResponse, UsersError> {
    caller.require_admin()?;
    let query = query.into_inner();
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .validate()?;
    Ok(HttpResponse::Ok().json(service.list(query.email, page).await?))
}

/// Anyone's public profile.
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = PublicProfile), (status = 404, body = ProblemBody)))]
#[get("/api/users/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn get_user(
    service: Service,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, UsersError> {
    let _ = caller;
    Ok(HttpResponse::Ok().json(service.public_profile(id.into_inner()).await?))
}

/// Delete any account (admin), with the same cascade as deleting one's own.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody)))]
#[delete("/api/users/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %caller.id))]
async fn delete_user(
    service: Service,
    caller: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, UsersError> {
    caller.require_admin()?;
    service.delete_account(id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = JwkSet)))]
#[get("/.well-known/jwks.json")]
async fn jwks(service: Service) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(service.keys().jwks())
}

#[derive(OpenApi)]
#[openapi(
    paths(
        register,
        login,
        refresh,
        logout,
        password_reset,
        password_reset_confirm,
        get_me,
        update_me,
        delete_me,
        list_users,
        get_user,
        delete_user,
        jwks
    ),
    components(schemas(
        User,
        PublicProfile,
        TokenPair,
        ProblemBody,
        JwkSet,
        PasswordResetRequest,
        PasswordResetConfirmation,
        PasswordResetAccepted
    ))
)]
/// The users module's part of the OpenAPI document.
pub struct ApiDoc;

/// A token pair's answer: never stored by a cache on the way, nor by the browser.
fn tokens(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(pair)
}
