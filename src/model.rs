//! The normalized row every source is turned into, and the vocabulary around it.
//!
//! A [`Model`] is one record of one source at one sync. Prices are exact decimals in USD per
//! million tokens; every field a source does not state is `None` (stored as SQL NULL) rather
//! than a guessed default. The whole source record is kept as raw JSON text in [`Model::raw`],
//! so nothing a source says is lost even when we do not parse it.

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

/// The four upstream APIs. The string form is the stable name used in config keys, table rows
/// and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Source {
    #[serde(rename = "models_dev")]
    ModelsDev,
    #[serde(rename = "openrouter")]
    OpenRouter,
    #[serde(rename = "huggingface")]
    HuggingFace,
    #[serde(rename = "artificial_analysis")]
    ArtificialAnalysis,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::ModelsDev,
        Source::OpenRouter,
        Source::HuggingFace,
        Source::ArtificialAnalysis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::ModelsDev => "models_dev",
            Source::OpenRouter => "openrouter",
            Source::HuggingFace => "huggingface",
            Source::ArtificialAnalysis => "artificial_analysis",
        }
    }

    pub fn parse(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|source| source.as_str() == name)
    }

    /// Like [`Source::parse`], with an error that lists the valid names.
    pub fn from_name(name: &str) -> Result<Source, UnknownSource> {
        Source::parse(name).ok_or_else(|| UnknownSource(name.to_string()))
    }
}

/// A source name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source {0:?}; valid sources: models_dev, openrouter, huggingface, artificial_analysis")]
pub struct UnknownSource(pub String);

/// Which sources a sync fetches. The others are `skipped` in that sync and keep their current
/// state (a failed source can be retried alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSelection(Option<std::collections::BTreeSet<Source>>);

impl SourceSelection {
    /// Every source (what schedules and plain triggers do).
    pub fn all() -> SourceSelection {
        SourceSelection(None)
    }

    /// Only the named sources; names may also be comma-separated (`models_dev,openrouter`).
    /// No names at all means every source.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<SourceSelection, UnknownSource> {
        let mut chosen = std::collections::BTreeSet::new();
        for name in names.iter().flat_map(|names| names.as_ref().split(',')) {
            let name = name.trim();
            if !name.is_empty() {
                chosen.insert(Source::from_name(name)?);
            }
        }
        Ok(SourceSelection((!chosen.is_empty()).then_some(chosen)))
    }

    pub fn includes(&self, source: Source) -> bool {
        self.0.as_ref().is_none_or(|chosen| chosen.contains(&source))
    }

    /// The chosen names, or `None` for every source.
    pub fn names(&self) -> Option<Vec<&'static str>> {
        self.0
            .as_ref()
            .map(|chosen| chosen.iter().map(|source| source.as_str()).collect())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One model as one source describes it, ready to be written to `model_snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub source: Source,
    /// Who offers or made the model, in the source's own vocabulary (see DESIGN.md §4).
    /// Empty when the source names no owner (legacy Hugging Face ids such as `gpt2`).
    pub provider: String,
    /// The source's own id for the model.
    pub model_id: String,
    pub name: Option<String>,
    pub context_length: Option<i64>,
    pub max_output_tokens: Option<i64>,
    pub input_price_per_mtok: Option<Decimal>,
    pub output_price_per_mtok: Option<Decimal>,
    pub cache_read_price_per_mtok: Option<Decimal>,
    pub cache_write_price_per_mtok: Option<Decimal>,
    pub input_modalities: Option<Vec<String>>,
    pub output_modalities: Option<Vec<String>>,
    pub supports_tools: Option<bool>,
    pub supports_reasoning: Option<bool>,
    pub open_weights: Option<bool>,
    pub release_date: Option<NaiveDate>,
    pub downloads: Option<i64>,
    pub likes: Option<i64>,
    pub intelligence_index: Option<Decimal>,
    /// Long-context prices (DESIGN.md §9), sorted by `min_context_tokens`; `None` when the
    /// source states none. Stored as `price_tiers jsonb` with decimal strings.
    pub price_tiers: Option<Vec<PriceTier>>,
    /// The source's lifecycle flag (models.dev `alpha`, `beta`, `deprecated`).
    pub status: Option<String>,
    /// The day the source says the model goes away (OpenRouter `expiration_date`).
    pub expires_on: Option<NaiveDate>,
    /// The Artificial Analysis index methodology the `intelligence_index` was computed with;
    /// scores of different versions are not comparable.
    pub intelligence_index_version: Option<String>,
    /// The source record exactly as served (JSON text), stored as `data jsonb`.
    #[serde(skip)]
    pub raw: String,
}

impl Model {
    /// A model with only its identity set; parsers fill in what their source states.
    pub fn new(source: Source, provider: String, model_id: String, raw: String) -> Model {
        Model {
            source,
            provider,
            model_id,
            name: None,
            context_length: None,
            max_output_tokens: None,
            input_price_per_mtok: None,
            output_price_per_mtok: None,
            cache_read_price_per_mtok: None,
            cache_write_price_per_mtok: None,
            input_modalities: None,
            output_modalities: None,
            supports_tools: None,
            supports_reasoning: None,
            open_weights: None,
            release_date: None,
            downloads: None,
            likes: None,
            intelligence_index: None,
            price_tiers: None,
            status: None,
            expires_on: None,
            intelligence_index_version: None,
            raw,
        }
    }

    /// `price_tiers` as the JSON text stored in `price_tiers jsonb` (prices as decimal strings).
    pub fn price_tiers_json(&self) -> Option<String> {
        self.price_tiers
            .as_ref()
            .map(|tiers| serde_json::to_string(tiers).expect("price tiers always serialize: strings and integers only"))
    }

    /// A fingerprint of the raw record's exact text: equal hashes mean the source sent exactly
    /// the same bytes (`model_snapshots.content_hash`). Change detection compares the content
    /// hash of `history::digest` instead, which leaves out volatile values.
    pub fn record_hash(&self) -> [u8; 16] {
        let digest = blake3::hash(self.raw.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest.as_bytes()[..16]);
        out
    }
}

/// The prices that apply from `min_context_tokens` prompt tokens on (DESIGN.md §9), in USD per
/// million tokens. A key the source does not state is absent from the JSON, not zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceTier {
    pub min_context_tokens: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Decimal>,
}

/// Why a record did not become a row. The string form is a bounded metric label and the
/// `reason` column of `model_rejects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The record is not a JSON object or does not decode into the expected shape.
    MalformedRecord,
    /// No usable id (absent, null, empty or not a string).
    MissingId,
    /// A price that is negative, not a number, or out of range.
    InvalidPrice,
    /// Another field with a value that cannot be stored (negative count, bad date, overflow).
    InvalidValue,
    /// A NUL character, which PostgreSQL text and jsonb cannot hold.
    NulByte,
    /// The same key was already seen in this sync with different content.
    DuplicateId,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::MalformedRecord,
        RejectReason::MissingId,
        RejectReason::InvalidPrice,
        RejectReason::InvalidValue,
        RejectReason::NulByte,
        RejectReason::DuplicateId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedRecord => "malformed_record",
            RejectReason::MissingId => "missing_id",
            RejectReason::InvalidPrice => "invalid_price",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::NulByte => "nul_byte",
            RejectReason::DuplicateId => "duplicate_id",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that was quarantined instead of stored, with the reason and the raw text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reject {
    pub source: Source,
    pub reason: RejectReason,
    /// A human explanation: which field, which value, what was expected.
    pub detail: String,
    /// The record's id when one could be read, to help whoever investigates.
    pub model_id: Option<String>,
    /// The raw record text (may contain what jsonb refuses, so it is stored as `text`).
    #[serde(skip)]
    pub raw: String,
}

/// What one payload (one HTTP response body) turned into.
#[derive(Debug, Default)]
pub struct ParsedPage {
    pub models: Vec<Model>,
    pub rejects: Vec<Reject>,
    /// The distinct top-level keys of the records that became models, sorted: what the schema
    /// drift alarm compares with the keys earlier syncs of the source stored.
    pub fields: Vec<String>,
}

impl ParsedPage {
    /// Records seen in the payload: every one becomes a model or a reject.
    pub fn records(&self) -> usize {
        self.models.len() + self.rejects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_names_valid_sources_or_says_which_are_valid() {
        let all = SourceSelection::from_names::<&str>(&[]).unwrap();
        assert_eq!(all, SourceSelection::all());
        assert!(Source::ALL.into_iter().all(|source| all.includes(source)));
        let two = SourceSelection::from_names(&["openrouter", "huggingface,openrouter"]).unwrap();
        assert!(two.includes(Source::OpenRouter) && two.includes(Source::HuggingFace));
        assert!(!two.includes(Source::ModelsDev));
        assert_eq!(two.names(), Some(vec!["openrouter", "huggingface"]));
        let error = SourceSelection::from_names(&["hf"]).unwrap_err().to_string();
        assert!(error.contains("\"hf\"") && error.contains("huggingface"), "{error}");
    }
}
