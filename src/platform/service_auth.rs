//! The guard of internal endpoints (split build): only calls carrying the shared service
//! credential get through. Internal routes are also never proxied by the gateway.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::{problem::Problem, service_client::SERVICE_CREDENTIAL};

/// The configured credential, as app data; `Debug` never shows it.
#[derive(Clone)]
pub struct ServiceCredential(pub SecretString);

/// Proof that the caller presented the service credential.
pub struct ServiceCaller;

impl FromRequest for ServiceCaller {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let expected = req
            .app_data::<web::Data<ServiceCredential>>()
            .map(|c| c.0.expose_secret().to_owned());
        let presented = req
            .headers()
            .get(SERVICE_CREDENTIAL)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Box::pin(async move {
            match (expected, presented) {
                (Some(expected), Some(presented))
                    if !expected.is_empty() && same(&expected, &presented) =>
                {
                    Ok(ServiceCaller)
                }
                _ => Err(Problem::unauthorized(
                    "internal endpoint: a valid service credential is required",
                )),
            }
        })
    }
}

/// Compares digests, so the time taken says nothing about how much of the secret matched.
fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}
