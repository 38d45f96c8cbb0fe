//! Typed ids. A `UserId` can not be passed where an `EventId` is meant, and an id read back
//! from a row either parses or is an error: never a silent nil UUID.

/// Declares a UUID newtype: `Copy`, ordered, hashable, shown and parsed as the UUID itself,
/// serialized transparently.
#[macro_export]
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7).
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// The UUID, for the API's DTOs and other modules.
            pub fn as_uuid(self) -> uuid::Uuid {
                self.0
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(id: uuid::Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for uuid::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, uuid::Error> {
                s.parse().map(Self)
            }
        }
    };
}

uuid_id!(
    /// An account, as the users module issued it and every module refers to it.
    UserId
);

#[cfg(test)]
mod tests {
    use super::UserId;

    #[test]
    fn ids_parse_show_and_serialize_as_the_uuid() {
        let id = UserId::generate();
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
        assert!("not-a-uuid".parse::<UserId>().is_err());
        assert!("".parse::<UserId>().is_err());
    }
}
