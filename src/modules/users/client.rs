//! [`UsersApi`] over HTTP (split build): what the events service uses instead of calling the
//! users module in process. One call per batch, whatever its size.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    PublicProfile, UsersApi, UsersApiError,
    internal::{MAX_BATCH, PROFILES_PATH, ProfilesRequest},
};
use crate::platform::service_client::ServiceClient;

/// [`UsersApi`] over HTTP: the users service's internal API (split build).
pub struct UsersClient {
    http: Arc<ServiceClient>,
}

impl UsersClient {
    /// A client calling the users service through `http`.
    pub fn new(http: Arc<ServiceClient>) -> Self {
        Self { http }
    }
}

#[async_trait]
impl UsersApi for UsersClient {
    async fn public_profiles(&self, ids: &[Uuid]) -> Result<Vec<PublicProfile>, UsersApiError> {
        // Each id once, as the in-process implementation answers, even across chunks.
        let mut unique = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let mut profiles = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(MAX_BATCH) {
            let request = ProfilesRequest {
                ids: chunk.to_vec(),
            };
            // A read: safe to retry even though it is a POST.
            let batch: Vec<PublicProfile> = self
                .http
                .post_json(PROFILES_PATH, &request, true)
                .await
                .map_err(|e| UsersApiError::Unavailable(e.to_string()))?;
            profiles.extend(batch);
        }
        Ok(profiles)
    }
}
