//! The fan pages' words: one JSON message catalog per language (`assets/messages/`,
//! English and Korean embedded), and which language a fan gets.
//!
//! Operators add or reword a language without rebuilding: every `{language}.json` in
//! `PAGE_MESSAGES_DIR` is read at start, a new language beside the embedded ones and an
//! embedded one replaced key by key (English stays behind every catalog in the page,
//! so a missing key shows in English). The language is the fan's choice on the page (a
//! `lang` cookie) if there is a catalog for it, else the best match of the browser's
//! `Accept-Language`, else English.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{Map, Value};

const EMBEDDED: &[(&str, &str)] = &[
    ("en", include_str!("../assets/messages/en.json")),
    ("ko", include_str!("../assets/messages/ko.json")),
];

/// The language every page falls back to.
pub const DEFAULT_LANGUAGE: &str = "en";

/// Every language's catalog, as the JSON the pages load.
#[derive(Debug, Clone)]
pub struct PageMessages {
    catalogs: BTreeMap<String, String>,
}

impl PageMessages {
    /// The embedded catalogs, with `dir`'s on top; a malformed file stops the start
    /// (better than a page of message keys).
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut catalogs: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for (language, text) in EMBEDDED {
            catalogs.insert((*language).to_owned(), parse_catalog(text)?);
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir)
                .with_context(|| format!("PAGE_MESSAGES_DIR {}", dir.display()))?;
            for entry in entries {
                let path = entry?.path();
                if path.extension().and_then(|ext| ext.to_str()) != Some("json") {
                    continue;
                }
                let Some(language) = path.file_stem().and_then(|stem| stem.to_str()) else {
                    continue;
                };
                if !is_language_tag(language) {
                    bail!(
                        "{}: the file name must be a language tag, like ko.json or pt-BR.json",
                        path.display()
                    );
                }
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let catalog = parse_catalog(&text).with_context(|| path.display().to_string())?;
                catalogs
                    .entry(language.to_owned())
                    .or_default()
                    .extend(catalog);
            }
        }
        Ok(Self {
            catalogs: catalogs
                .into_iter()
                .map(|(language, catalog)| (language, Value::Object(catalog).to_string()))
                .collect(),
        })
    }

    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.catalogs.keys().map(String::as_str)
    }

    /// The catalog of `language`, as JSON.
    pub fn catalog(&self, language: &str) -> Option<&str> {
        self.catalogs.get(language).map(String::as_str)
    }

    /// The fan's language: `chosen` (the page's switch) if there is a catalog for it,
    /// else the best of `accept_language` (by quality, then order; `ko-KR` matches `ko`),
    /// else English.
    pub fn negotiate(&self, chosen: Option<&str>, accept_language: Option<&str>) -> &str {
        if let Some(language) = chosen.and_then(|chosen| self.known(chosen)) {
            return language;
        }
        let mut ranges: Vec<(f32, usize, &str)> = accept_language
            .unwrap_or_default()
            .split(',')
            .enumerate()
            .filter_map(|(index, part)| {
                let mut pieces = part.split(';');
                let range = pieces.next()?.trim();
                let quality = pieces
                    .find_map(|piece| piece.trim().strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
                (quality > 0.0 && !range.is_empty()).then_some((quality, index, range))
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranges
            .into_iter()
            .find_map(|(_, _, range)| {
                self.known(range)
                    .or_else(|| self.known(range.split('-').next().unwrap_or(range)))
            })
            .unwrap_or(DEFAULT_LANGUAGE)
    }

    /// The catalog's own spelling of `language`, matched without regard to case.
    fn known(&self, language: &str) -> Option<&str> {
        self.catalogs
            .keys()
            .find(|known| known.eq_ignore_ascii_case(language))
            .map(String::as_str)
    }
}

fn parse_catalog(text: &str) -> anyhow::Result<Map<String, Value>> {
    let Value::Object(catalog) = serde_json::from_str(text)? else {
        bail!("a message catalog is a JSON object of strings");
    };
    if let Some((key, _)) = catalog.iter().find(|(_, value)| !value.is_string()) {
        bail!("message '{key}' is not a string");
    }
    Ok(catalog)
}

/// `en`, `ko`, `pt-BR`, `zh-Hant`: letters, then `-`-separated letters or digits.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    parts.next().is_some_and(|primary| {
        (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic())
    }) && parts.all(|part| {
        (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogs_have_the_same_keys() {
        let keys = |text: &str| {
            parse_catalog(text)
                .expect("valid")
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        let english = keys(EMBEDDED[0].1);
        for (language, text) in EMBEDDED {
            assert_eq!(keys(text), english, "{language} lacks or adds keys");
        }
    }

    #[test]
    fn the_choice_beats_the_browser_and_english_is_the_fallback() {
        let messages = PageMessages::load(None).expect("embedded");
        assert_eq!(
            messages.negotiate(None, Some("ko-KR,ko;q=0.9,en;q=0.8")),
            "ko"
        );
        assert_eq!(messages.negotiate(None, Some("fr-FR, en;q=0.5")), "en");
        assert_eq!(messages.negotiate(None, Some("en;q=0.4, ko;q=0.9")), "ko");
        assert_eq!(messages.negotiate(None, Some("ko;q=0, en")), "en");
        assert_eq!(messages.negotiate(Some("en"), Some("ko")), "en");
        assert_eq!(messages.negotiate(Some("xx"), Some("ko")), "ko");
        assert_eq!(messages.negotiate(None, Some("q=;;,,")), "en");
        assert_eq!(messages.negotiate(None, None), "en");
    }

    #[test]
    fn operators_add_and_reword_languages_from_a_directory() {
        let dir = std::env::temp_dir().join(format!("page-messages-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("ja.json"), r#"{"join.button": "列に並ぶ"}"#).expect("write");
        std::fs::write(dir.join("en.json"), r#"{"join.button": "Get in line"}"#).expect("write");
        let messages = PageMessages::load(Some(&dir)).expect("loads");
        assert_eq!(
            messages.languages().collect::<Vec<_>>(),
            vec!["en", "ja", "ko"]
        );
        assert_eq!(messages.negotiate(None, Some("ja-JP")), "ja");
        let english: Value =
            serde_json::from_str(messages.catalog("en").expect("en")).expect("json");
        assert_eq!(english["join.button"], "Get in line");
        assert_eq!(
            english["waiting.title"], "You are in line",
            "other keys stay"
        );

        std::fs::write(dir.join("bad lang.json"), "{}").expect("write");
        assert!(
            PageMessages::load(Some(&dir)).is_err(),
            "a file name that is no language tag"
        );
        std::fs::remove_file(dir.join("bad lang.json")).expect("remove");
        std::fs::write(dir.join("de.json"), r#"{"join.button": 3}"#).expect("write");
        assert!(
            PageMessages::load(Some(&dir)).is_err(),
            "a message that is no string"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
