//! Per-client-IP rate limit on `/api/auth/*`, where every request may cost a bcrypt hash. The
//! client is the peer, or whom a trusted proxy forwards for (see [`super::client_address`]).

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use actix_web::{
    Error, HttpMessage, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::Next,
    web,
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use super::ClientAddress;
use crate::platform::problem::Problem;

/// The limiter, or none when `gateway.auth_rate_per_minute` is 0.
#[derive(Clone)]
pub struct AuthRateLimit(Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>);

impl AuthRateLimit {
    pub fn per_minute(rate: u32) -> Self {
        let Some(rate) = NonZeroU32::new(rate) else {
            return Self(None);
        };
        let limiter = Arc::new(RateLimiter::keyed(Quota::per_minute(rate)));
        // Forget idle clients now and then so the key map does not grow without bound.
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(limiter) = weak.upgrade() else { break };
                limiter.retain_recent();
            }
        });
        Self(Some(limiter))
    }

    /// Seconds until `ip` may try again, or `None` when it may go ahead now.
    fn wait_for(&self, ip: IpAddr) -> Option<u64> {
        let limiter = self.0.as_ref()?;
        limiter.check_key(&ip).err().map(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

pub async fn limit_auth_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let client = req.extensions().get::<ClientAddress>().map(|c| c.ip);
    let limited = match (req.app_data::<web::Data<AuthRateLimit>>(), client) {
        (Some(limit), Some(ip)) if req.path().starts_with("/api/auth/") => limit.wait_for(ip),
        _ => None,
    };
    if let Some(retry_after) = limited {
        let problem = Problem {
            retry_after_secs: Some(retry_after.max(1)),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "too many authentication requests from this address; retry later",
            )
        };
        return Ok(req
            .into_response(problem.error_response())
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
