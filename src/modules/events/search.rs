//! Free-text search (`q`): the words of an event's title, description, location and category,
//! and of a query, reduced alike — compatibility forms unfolded, accents and invisible format
//! characters dropped, lower case — so that `spati` finds "Späti" and `ber` finds "Berlin
//! Mitte". Each word of a query matches the beginning of a word of the event; all must match.
//! The databases index the reduced text (SQLite: an FTS5 table; PostgreSQL: a GIN index over
//! its `tsvector`), never the raw one.

use icu_normalizer::DecomposingNormalizerBorrowed;
use icu_properties::{
    CodePointMapData,
    props::{GeneralCategory, GeneralCategoryGroup},
};

use super::domain::EventDraft;

/// The most words of a query that count (a longer query narrows nothing useful).
const MAX_QUERY_WORDS: usize = 8;

/// The longest word kept, in characters (longer ones are cut: nobody types more of one).
const MAX_WORD: usize = 64;

/// The one format character that marks where a word ends (scripts written without spaces use
/// it); the others (`Cf`) are dropped where they stand, so `zor\u{AD}blat` is one word.
const ZERO_WIDTH_SPACE: char = '\u{200B}';

/// `text` as the index sees it: its words, reduced, in order.
pub fn words(text: &str) -> Vec<String> {
    let categories = CodePointMapData::<GeneralCategory>::new();
    let decomposed = DecomposingNormalizerBorrowed::new_nfkd().normalize(text);
    let mut words = Vec::new();
    let mut word = String::new();
    let mut length = 0;
    let mut end_word = |word: &mut String, length: &mut usize| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
        *length = 0;
    };
    for c in decomposed.chars() {
        let category = categories.get(c);
        if category == GeneralCategory::Format && c != ZERO_WIDTH_SPACE {
            continue; // invisible, inside a word: a soft hyphen, a joiner, a byte order mark
        }
        let mark = GeneralCategoryGroup::Mark.contains(category);
        if mark && is_accent(c) {
            continue; // the accent of a letter decomposition split off
        }
        if !(c.is_alphanumeric() || mark) {
            end_word(&mut word, &mut length);
            continue;
        }
        // Other marks (the vowel signs of Indic scripts) belong to their word.
        if length < MAX_WORD {
            fold(c, &mut word);
            length += 1;
        }
    }
    end_word(&mut word, &mut length);
    words
}

/// Accents: the combining marks that decomposition splits off Latin, Greek and Cyrillic
/// letters (`ä`), and the voicing marks of kana (`ガ`).
fn is_accent(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}' | '\u{3099}' | '\u{309A}')
}

/// Appends `c` in lower case, with the letters that do not decompose but are read as others
/// (`ß` as `ss`, `ł` as `l`, `ø` as `o`, final `ς` as `σ`...).
fn fold(c: char, word: &mut String) {
    for lower in c.to_lowercase() {
        match lower {
            'ß' => word.push_str("ss"),
            'ς' => word.push('σ'),
            'ł' => word.push('l'),
            'ø' => word.push('o'),
            'đ' | 'ð' => word.push('d'),
            'ı' => word.push('i'),
            'æ' => word.push_str("ae"),
            'œ' => word.push_str("oe"),
            'þ' => word.push_str("th"),
            other => word.push(other),
        }
    }
}

/// The indexed text of an event: the reduced words of its title, description, location and
/// category.
pub fn indexed_text(draft: &EventDraft) -> String {
    text_of([
        Some(&draft.title),
        draft.description.as_ref(),
        draft.location.as_ref(),
        draft.category.as_ref(),
    ])
}

/// The indexed text of the fields given (absent ones add nothing).
pub fn text_of(fields: [Option<&String>; 4]) -> String {
    fields
        .into_iter()
        .flatten()
        .flat_map(|field| words(field))
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

/// Whether indexed text (see [`indexed_text`]) has, for each of `words`, a word beginning with it:
/// what both databases' indexes answer, read from the text itself.
pub fn matches(text: &str, words: &[String]) -> bool {
    words
        .iter()
        .all(|w| text.split(' ').any(|t| t.starts_with(w.as_str())))
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

/// The same as a PostgreSQL `tsquery` of quoted lexemes (taken as they are, not parsed again),
/// each a prefix.
pub fn tsquery(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("'{w}':*"))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// The FTS5 row of an event: a stable number drawn from its id (SQL finds it from the id with
/// `uuid_rowid`).
pub fn fts_rowid(id: uuid::Uuid) -> i64 {
    crate::platform::db::uuid_rowid_of(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lose_case_accents_and_compatibility_forms() {
        assert_eq!(
            words("Späti am Kottbusser Tor"),
            ["spati", "am", "kottbusser", "tor"]
        );
        assert_eq!(
            words("Berlin-Mitte, 10:00!"),
            ["berlin", "mitte", "10", "00"]
        );
        assert_eq!(
            words("ＦＵＬＬ width ﬁne Ĉafé Ωμέγα"),
            ["full", "width", "fine", "cafe", "ωμεγα"]
        );
        assert_eq!(words(" \t\n"), Vec::<String>::new());
    }

    #[test]
    fn letters_read_as_others_fold_and_marks_stay_in_their_word() {
        assert_eq!(
            words("Łódź Straße Øresund ΜΕΓΑΛΟΣ μεγαλος"),
            ["lodz", "strasse", "oresund", "μεγαλοσ", "μεγαλοσ"]
        );
        assert_eq!(
            words("दिल्ली கருணா"),
            ["दिल्ली", "கருணா"],
            "vowel signs are part of the word"
        );
        assert_eq!(words("ガイド"), ["カイト"], "kana voicing is an accent");
        assert_eq!(
            words("zor\u{AD}blat \u{FEFF}Ber\u{2060}lin Kaf\u{200D}fee a\u{E0041}b"),
            ["zorblat", "berlin", "kaffee", "ab"],
            "format characters are dropped, not split at"
        );
        assert_eq!(
            words("ราคา\u{200B}ถูก"),
            ["ราคา", "ถูก"],
            "a zero width space parts"
        );
        assert_eq!(words(&"x".repeat(100))[0].chars().count(), MAX_WORD);
    }

    /// The migration that re-indexes the texts holding a format character names them; a Unicode
    /// update of ICU's data adding one fails here, asking for a migration of its own.
    #[test]
    fn the_reindexing_migration_names_every_format_character_dropped() {
        let categories = CodePointMapData::<GeneralCategory>::new();
        let dropped: Vec<u32> = (0..=0x10FFFF)
            .filter_map(char::from_u32)
            .filter(|&c| c != ZERO_WIDTH_SPACE && categories.get(c) == GeneralCategory::Format)
            .map(u32::from)
            .collect();
        let postgres = include_str!(
            "../../../migrations/events/postgres/2026-12-05-000100_search_drops_format_characters/up.sql"
        );
        let sqlite = include_str!(
            "../../../migrations/events/sqlite/2026-12-05-000100_search_drops_format_characters/up.sql"
        );
        // PostgreSQL: `[\u00AD\u0600-\u0605...]`; SQLite: `char(0xAD) || char(0x600) || '-' || ...`.
        let class = postgres
            .split("'[")
            .nth(1)
            .unwrap()
            .split("]'")
            .next()
            .unwrap();
        let postgres_points = class
            .replace("\\U", " ")
            .replace("\\u", " ")
            .replace('-', " - ");
        let sqlite_points = sqlite
            .split("GLOB")
            .nth(1)
            .unwrap()
            .replace("char(0x", " ")
            .replace([')', '|'], " ")
            .replace("'-'", " - ");
        for (backend, points) in [("postgres", postgres_points), ("sqlite", sqlite_points)] {
            let mut named = Vec::new();
            let mut range = false;
            for token in points
                .split_whitespace()
                .filter(|t| !t.contains(['\'', '*', '[']))
            {
                if token == "-" {
                    range = true;
                    continue;
                }
                let point = u32::from_str_radix(token, 16).unwrap();
                if std::mem::take(&mut range) {
                    let from = named.last().copied().unwrap() + 1;
                    named.extend(from..=point);
                } else {
                    named.push(point);
                }
            }
            assert_eq!(named, dropped, "the {backend} migration");
        }
    }

    #[test]
    fn queries_keep_their_words_once_and_quote_them() {
        assert_eq!(
            query_words("Ber ber TEC"),
            Some(vec!["ber".into(), "tec".into()])
        );
        assert_eq!(query_words("\"*-:&|!()"), None);
        let many = (0..20)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(query_words(&many).unwrap().len(), MAX_QUERY_WORDS);
        let asked = query_words("spät* OR tec").unwrap();
        assert_eq!(fts5_query(&asked), "\"spat\"* AND \"or\"* AND \"tec\"*");
        assert_eq!(tsquery(&asked), "'spat':* & 'or':* & 'tec':*");
    }
}
