//! The users module's internal API (split build): what other services may call, behind the
//! service credential. Never routed by the gateway.

use actix_web::{HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{UsersApi, UsersService};
use crate::platform::{
    json::JsonBody,
    problem::{FieldError, Problem},
    service_auth::ServiceCaller,
};

/// Largest batch one call may ask for (a page is at most 100 rows).
pub const MAX_BATCH: usize = 1000;

/// The path of [`profiles`], shared with the client.
pub const PROFILES_PATH: &str = "/internal/users/profiles";

/// The ids whose public profiles another service asks for.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProfilesRequest {
    pub ids: Vec<Uuid>,
}

/// Registers the internal routes (service credential required).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(profiles);
}

/// Public profiles of a batch of ids; unknown ids are left out.
#[post("/internal/users/profiles")]
#[tracing::instrument(skip_all)]
async fn profiles(
    _caller: ServiceCaller,
    service: web::Data<UsersService>,
    body: JsonBody<ProfilesRequest>,
) -> Result<HttpResponse, Problem> {
    let ids = body.into_inner().ids;
    if ids.len() > MAX_BATCH {
        return Err(Problem::validation(vec![FieldError::new(
            "ids",
            format!("at most {MAX_BATCH} ids per call"),
        )]));
    }
    let profiles = service
        .public_profiles(&ids)
        .await
        .map_err(|e| Problem::unavailable(e.to_string(), 5))?;
    Ok(HttpResponse::Ok().json(profiles))
}
