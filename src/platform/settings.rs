//! Serde helpers for configuration values, so each section deserializes straight into typed
//! values: a list may be written as a TOML array or, as environment variables must, as one
//! comma-separated string; an empty string means "not set".

use serde::{Deserialize, Deserializer};

/// A list given as a sequence or as a comma-separated string; blanks are dropped.
pub fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        One(String),
        Many(Vec<String>),
    }
    let items = match Written::deserialize(deserializer)? {
        Written::One(joined) => joined.split(',').map(str::to_owned).collect(),
        Written::Many(items) => items,
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

/// A string where empty means absent.
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(deserializer)?;
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Section {
        #[serde(deserialize_with = "super::list")]
        items: Vec<String>,
        #[serde(deserialize_with = "super::optional")]
        url: Option<String>,
    }

    fn parse(json: &str) -> Section {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lists_are_sequences_or_comma_separated_and_blank_is_absent() {
        let joined = parse(r#"{"items": " a, b ,,c ", "url": " "}"#);
        assert_eq!(joined.items, ["a", "b", "c"]);
        assert_eq!(joined.url, None);
        let listed = parse(r#"{"items": ["a", " ", "b"], "url": "redis://x"}"#);
        assert_eq!(listed.items, ["a", "b"]);
        assert_eq!(listed.url.as_deref(), Some("redis://x"));
        assert!(parse(r#"{"items": "", "url": ""}"#).items.is_empty());
    }
}
