//! Free-text search (`q`): the words of an event's title, description, location and category,
//! and of a query, reduced alike — compatibility forms unfolded, accents dropped, lower case —
//! so that `spati` finds "Späti" and `ber` finds "Berlin Mitte". Each word of a query matches
//! the beginning of a word of the event; all must match. The databases index the reduced text
//! (SQLite: an FTS5 table; PostgreSQL: a GIN index over its `tsvector`), never the raw one.

use icu_normalizer::DecomposingNormalizerBorrowed;

use super::domain::EventDraft;

/// The most words of a query that count (a longer query narrows nothing useful).
const MAX_QUERY_WORDS: usize = 8;

/// `text` as the index sees it: its words, reduced, in order.
pub fn words(text: &str) -> Vec<String> {
    let decomposed = DecomposingNormalizerBorrowed::new_nfkd().normalize(text);
    let mut words = Vec::new();
    let mut word = String::new();
    for c in decomposed.chars() {
        if is_mark(c) {
            continue;
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Combining marks of the blocks that carry accents (Latin, Greek, Cyrillic and more): what
/// decomposition splits off a letter like `ä`.
fn is_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// The indexed text of an event: the reduced words of its title, description, location and
/// category.
pub fn indexed_text(draft: &EventDraft) -> String {
    [
        Some(draft.title.as_str()),
        draft.description.as_deref(),
        draft.location.as_deref(),
        draft.category.as_deref(),
    ]
    .into_iter()
    .flatten()
    .flat_map(words)
    .collect::<Vec<_>>()
    .join(" ")
}

/// The words a query `q` asks for (at most [`MAX_QUERY_WORDS`], duplicates once); `None` when it
/// has none (only punctuation, say): no filter then.
pub fn query_words(q: &str) -> Option<Vec<String>> {
    let mut asked: Vec<String> = Vec::new();
    for word in words(q) {
        if !asked.contains(&word) && asked.len() < MAX_QUERY_WORDS {
            asked.push(word);
        }
    }
    (!asked.is_empty()).then_some(asked)
}

/// An FTS5 query matching rows with a word beginning with each of `words` (reduced words hold
/// only letters and digits, so quoting them is enough).
pub fn fts5_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{w}\"*"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The same as a PostgreSQL `tsquery` (`simple` configuration, prefix matches).
pub fn tsquery(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("{w}:*"))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// The FTS5 row of an event: a stable number drawn from its id (the random low bits of a UUID;
/// two events sharing one is as likely as two sharing an id).
pub fn fts_rowid(id: uuid::Uuid) -> i64 {
    (id.as_u128() as u64 & (i64::MAX as u64)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lose_case_accents_and_compatibility_forms() {
        assert_eq!(words("Späti am Kottbusser Tor"), ["spati", "am", "kottbusser", "tor"]);
        assert_eq!(words("Berlin-Mitte, 10:00!"), ["berlin", "mitte", "10", "00"]);
        assert_eq!(words("ＦＵＬＬ width ﬁne Ĉafé Ωμέγα"), ["full", "width", "fine", "cafe", "ωμεγα"]);
        assert_eq!(words(" \t\n"), Vec::<String>::new());
    }

    #[test]
    fn queries_keep_their_words_once_and_quote_them() {
        assert_eq!(query_words("Ber ber TEC"), Some(vec!["ber".into(), "tec".into()]));
        assert_eq!(query_words("\"*-:&|!()"), None);
        let many = (0..20).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert_eq!(query_words(&many).unwrap().len(), MAX_QUERY_WORDS);
        let asked = query_words("spät* OR tec").unwrap();
        assert_eq!(fts5_query(&asked), "\"spat\"* AND \"or\"* AND \"tec\"*");
        assert_eq!(tsquery(&asked), "spat:* & or:* & tec:*");
    }
}
