//! Per-client rate limit on every request that may cost a bcrypt hash: `/api/auth/*`, and the
//! changes of one's own account that check the current password (`PATCH`/`DELETE
//! /api/users/me`). The client is the peer, or whom a trusted proxy forwards for (see
//! [`super::client_address`]), and an IPv6 client is its /64: one host commonly holds a whole
//! /64, so counting its addresses one by one would grant it 2^64 quotas. (The users module adds
//! a limit per account, whatever the address.)
//!
//! One gateway counts alone, in memory. Several instances behind a load balancer would each
//! grant the whole quota, so with `gateway.rate_limit_redis_url` they count together in Redis,
//! with the same algorithm (GCRA: a burst of `rate`, then one request per `60 s / rate`). When
//! Redis does not answer, each instance falls back to counting alone rather than refusing logins
//! or letting them through unchecked.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpMessage, ResponseError,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, StatusCode},
    middleware::Next,
    web,
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::ClientAddress;
use crate::platform::problem::Problem;

/// Why the shared rate limit could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("gateway.rate_limit_redis_url: {0}")]
pub struct RateLimitError(#[from] redis::RedisError);

/// The limiter, or none when `gateway.auth_rate_per_minute` is 0.
#[derive(Clone)]
pub struct AuthRateLimit(Option<Arc<Limiter>>);

struct Limiter {
    local: DefaultKeyedRateLimiter<IpAddr>,
    shared: Option<SharedCount>,
}

impl AuthRateLimit {
    /// No `redis_url`: this instance counts alone. Must run inside the tokio runtime.
    pub fn new(rate: u32, redis_url: Option<&str>) -> Result<Self, RateLimitError> {
        let Some(rate) = NonZeroU32::new(rate) else {
            return Ok(Self(None));
        };
        let shared = redis_url
            .map(|url| SharedCount::new(url, rate))
            .transpose()?;
        let limiter = Arc::new(Limiter {
            local: RateLimiter::keyed(Quota::per_minute(rate)),
            shared,
        });
        // Forget idle clients now and then so the key map does not grow without bound.
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(limiter) = weak.upgrade() else { break };
                limiter.local.retain_recent();
            }
        });
        Ok(Self(Some(limiter)))
    }

    /// Seconds until `ip` may try again, or `None` when it may go ahead now.
    async fn wait_for(&self, ip: IpAddr) -> Option<u64> {
        let limiter = self.0.as_ref()?;
        if let Some(shared) = &limiter.shared
            && let Some(wait) = shared.wait_for(ip).await
        {
            return wait.map(whole_seconds);
        }
        limiter
            .local
            .check_key(&ip)
            .err()
            .map(|not_until| whole_seconds(not_until.wait_time_from(DefaultClock::default().now())))
    }
}

fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// GCRA over Redis, atomic in one script and timed by the Redis server's clock, so instances
/// with skewed clocks still agree. Returns the milliseconds to wait, 0 when allowed.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = now_parts[1] * 1000 + math.floor(now_parts[2] / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return wait end
tat = tat + interval
redis.call('SET', KEYS[1], tat, 'PX', tat - now)
return 0
";

/// How long a request may wait for Redis, and how long Redis is left alone after it failed.
const REDIS_DEADLINE: Duration = Duration::from_millis(250);
const REDIS_BACK_OFF: Duration = Duration::from_secs(1);

struct SharedCount {
    redis: ConnectionManager,
    script: redis::Script,
    interval_ms: u64,
    burst: u32,
    /// While set, Redis failed recently: count locally without waiting on it.
    skip_until_ms: AtomicU64,
    degraded: AtomicBool,
    started: Instant,
}

impl SharedCount {
    fn new(url: &str, rate: NonZeroU32) -> Result<Self, RateLimitError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_DEADLINE))
            .set_response_timeout(Some(REDIS_DEADLINE))
            .set_number_of_retries(1);
        // Lazy: a gateway starts (and counts locally) while Redis is still down.
        let redis = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            redis,
            script: redis::Script::new(GCRA),
            // At least 1 ms: Redis refuses a zero expiry.
            interval_ms: (60_000 / u64::from(rate.get())).max(1),
            burst: rate.get(),
            skip_until_ms: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            started: Instant::now(),
        })
    }

    /// `Some(verdict)` from Redis, or `None` when it could not be asked.
    async fn wait_for(&self, ip: IpAddr) -> Option<Option<Duration>> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        if now_ms < self.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let mut redis = self.redis.clone();
        let mut invocation = self.script.key(format!("rsvp:auth-rate:{ip}"));
        invocation.arg(self.interval_ms).arg(self.burst);
        let answer =
            tokio::time::timeout(REDIS_DEADLINE, invocation.invoke_async::<u64>(&mut redis)).await;
        match answer {
            Ok(Ok(wait_ms)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: the auth rate limit is shared again");
                }
                Some((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%why, "Redis unavailable: this gateway counts auth attempts alone");
                }
                self.skip_until_ms.store(
                    now_ms + REDIS_BACK_OFF.as_millis() as u64,
                    Ordering::Relaxed,
                );
                None
            }
        }
    }
}

/// Whether a request may check a password (and so costs a bcrypt hash).
fn checks_password(method: &Method, path: &str) -> bool {
    path.starts_with("/api/auth/")
        || (path == "/api/users/me" && (method == Method::PATCH || method == Method::DELETE))
}

/// What one client's quota is counted by: an IPv4 address, or an IPv6 address's /64 (an
/// IPv4-mapped IPv6 address counts as the IPv4 address it maps).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

pub async fn limit_auth_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let client = req.extensions().get::<ClientAddress>().map(|c| c.ip);
    let limited = match (req.app_data::<web::Data<AuthRateLimit>>(), client) {
        (Some(limit), Some(ip)) if checks_password(req.method(), req.path()) => {
            limit.wait_for(client_key(ip)).await
        }
        _ => None,
    };
    if let Some(retry_after) = limited {
        let problem = Problem {
            retry_after_secs: Some(retry_after),
            ..Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "too many password attempts from this address; retry later",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let next_network: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(one), client_key(other));
        assert_ne!(client_key(one), client_key(next_network));
        assert_eq!(client_key(one), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv4_clients_are_counted_alone_in_either_spelling() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        assert_eq!(client_key(mapped), v4);
        assert_ne!(client_key("203.0.113.8".parse().unwrap()), v4);
    }

    #[test]
    fn every_password_checking_route_is_limited_and_nothing_else() {
        for (method, path) in [
            (Method::POST, "/api/auth/login"),
            (Method::POST, "/api/auth/register"),
            (Method::POST, "/api/auth/refresh"),
            (Method::POST, "/api/auth/password-reset/confirm"),
            (Method::PATCH, "/api/users/me"),
            (Method::DELETE, "/api/users/me"),
        ] {
            assert!(checks_password(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::GET, "/api/users/me"),
            (Method::GET, "/api/users/me/registrations"),
            (Method::DELETE, "/api/users/me/registrations"),
            (Method::GET, "/api/events"),
        ] {
            assert!(!checks_password(&method, path), "{method} {path}");
        }
    }
}
