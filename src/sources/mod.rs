//! One module per upstream API: how to ask for its payloads and how to turn a payload into
//! [`Model`]s. Everything here is pure (no I/O), so it is tested on the recorded fixtures alone.
//!
//! Parsers follow three rules, because these APIs add and change fields often:
//! parse only the fields we map, ignore unknown fields, and keep each record's raw JSON text.
//! A payload that is not JSON of the expected outer shape is a [`PayloadError`] (the source
//! fails); a single bad record becomes a [`crate::model::Reject`] and never affects the others.

pub mod artificial_analysis;
pub mod fields;
pub mod huggingface;
pub mod models_dev;
pub mod openrouter;
pub mod pagination;
pub mod split;
pub mod tiers;

use crate::model::{ParsedPage, Source};

/// A payload that cannot be read at all: the whole response is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the response is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the response is JSON but not of the expected shape: {0}")]
    UnexpectedShape(String),
}

/// Turns one response body of `source` into models and rejects.
pub fn parse_payload(source: Source, body: &[u8]) -> Result<ParsedPage, PayloadError> {
    match source {
        Source::ModelsDev => models_dev::parse(body),
        Source::OpenRouter => openrouter::parse(body),
        Source::HuggingFace => huggingface::parse(body),
        Source::ArtificialAnalysis => artificial_analysis::parse(body),
    }
}

#[cfg(test)]
pub(crate) mod test_fixtures {
    //! Reads the recorded payloads of `../shared/fixtures` (or `MODEL_LENS_FIXTURES_DIR`).
    use std::path::PathBuf;

    pub fn dir() -> PathBuf {
        match std::env::var_os("MODEL_LENS_FIXTURES_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
        }
    }

    pub fn read(name: &str) -> Vec<u8> {
        let path = dir().join(name);
        std::fs::read(&path).unwrap_or_else(|error| {
            panic!(
                "cannot read fixture {} ({error}); set MODEL_LENS_FIXTURES_DIR to the fixtures folder",
                path.display()
            )
        })
    }
}
