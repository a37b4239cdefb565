//! Artificial Analysis: benchmarked language models with prices and an intelligence index.
//!
//! `GET {base}/api/v2/data/llms/models` with the key in the `x-api-key` header answers
//! `{status, prompt_options, data: [record, ...]}`. `model_id` is the record's `id`, a UUID
//! that stays stable when the slug or name changes; `provider` is `model_creator.slug`.
//! Prices are already in USD per million tokens. Wherever this data is shown, attribution to
//! <https://artificialanalysis.ai/> is required.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Model, ParsedPage, RejectReason, Source};
use crate::sources::fields::{self, Invalid, PageBuilder};
use crate::sources::PayloadError;

/// The endpoint path by default. Newer documentation also shows `/api/v2/language/models`,
/// so the path is configurable and passed to [`url`].
pub const DEFAULT_PATH: &str = "/api/v2/data/llms/models";

/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The URL of `path` under `base_url` (e.g. `https://artificialanalysis.ai` and
/// [`DEFAULT_PATH`]), with exactly one `/` between them.
pub fn url(base_url: &str, path: &str) -> String {
    format!("{}/{}", base_url.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// Turns one response into one model (or reject) per element of `data`.
pub fn parse(body: &[u8]) -> Result<ParsedPage, PayloadError> {
    let records = fields::member_elements(body, "data", "an object with a `data` array")?;
    let mut page = PageBuilder::new(Source::ArtificialAnalysis);
    for record in records {
        page.push_slice(record, parse_record);
    }
    Ok(page.finish())
}

/// The fields of one record that we map; speeds, other indexes and slugs stay raw.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    model_creator: Option<&'a RawValue>,
    #[serde(borrow)]
    pricing: Option<&'a RawValue>,
    #[serde(borrow)]
    evaluations: Option<&'a RawValue>,
    #[serde(borrow)]
    release_date: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ModelCreator<'a> {
    #[serde(borrow)]
    slug: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Pricing<'a> {
    #[serde(borrow)]
    price_1m_input_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    price_1m_output_tokens: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Evaluations<'a> {
    #[serde(borrow)]
    artificial_analysis_intelligence_index: Option<&'a RawValue>,
}

fn parse_record(raw: &RawValue) -> Result<Model, Invalid> {
    let record: Record = fields::decode_record(raw)?;
    let id = fields::required_id("id", record.id);
    fields::reject_unstorable(raw.get(), id.as_ref().ok())?;
    let model_id = id?;
    to_model(model_id.clone(), raw, &record).map_err(|invalid| invalid.with_model_id(&model_id))
}

fn to_model(model_id: String, raw: &RawValue, record: &Record) -> Result<Model, Invalid> {
    let provider = fields::nested::<ModelCreator>("model_creator", record.model_creator)?
        .and_then(|creator| fields::text(creator.slug))
        .unwrap_or_default();
    let mut model = Model::new(Source::ArtificialAnalysis, provider, model_id, raw.get().to_string());
    model.name = fields::text(record.name);
    model.release_date = fields::date(record.release_date);
    if let Some(pricing) = fields::nested::<Pricing>("pricing", record.pricing)? {
        model.input_price_per_mtok = fields::price("pricing.price_1m_input_tokens", pricing.price_1m_input_tokens)?;
        model.output_price_per_mtok = fields::price("pricing.price_1m_output_tokens", pricing.price_1m_output_tokens)?;
    }
    if let Some(evaluations) = fields::nested::<Evaluations>("evaluations", record.evaluations)? {
        model.intelligence_index = fields::decimal(
            "evaluations.artificial_analysis_intelligence_index",
            evaluations.artificial_analysis_intelligence_index,
            0,
            RejectReason::InvalidValue,
        )?;
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_fixtures;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn dec(text: &str) -> Option<Decimal> {
        Some(Decimal::from_str(text).unwrap())
    }

    fn fixture() -> ParsedPage {
        parse(&test_fixtures::read("aa_models.json")).unwrap()
    }

    #[test]
    fn url_joins_base_and_path_with_one_slash() {
        let expected = "https://artificialanalysis.ai/api/v2/data/llms/models";
        assert_eq!(url("https://artificialanalysis.ai", DEFAULT_PATH), expected);
        assert_eq!(url("https://artificialanalysis.ai/", DEFAULT_PATH), expected);
        assert_eq!(
            url("https://artificialanalysis.ai/", "api/v2/data/llms/models"),
            expected
        );
    }

    #[test]
    fn every_record_of_the_fixture_becomes_a_model() {
        let page = fixture();
        assert_eq!(page.records(), 12);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
    }

    #[test]
    fn fixture_values_are_mapped_exactly() {
        let page = fixture();
        let apertus = &page.models[0];
        assert_eq!(apertus.model_id, "49e70a38-4ac1-4659-b490-09b2c7ff21d6");
        assert_eq!(apertus.provider, "swiss-ai-initiative");
        assert_eq!(apertus.name.as_deref(), Some("Apertus 70B Instruct"));
        assert_eq!(apertus.input_price_per_mtok, dec("0.82"));
        assert_eq!(apertus.output_price_per_mtok, dec("2.92"));
        assert_eq!(apertus.intelligence_index, dec("5.1"));
        assert_eq!(apertus.release_date, None);
        let indexes: Vec<String> = page
            .models
            .iter()
            .map(|model| model.intelligence_index.unwrap().to_string())
            .collect();
        assert_eq!(
            indexes,
            ["5.1", "6.3", "16.9", "57.6", "7", "8.5", "39.5", "16.1", "7.5", "18.5", "8.4", "16.8"]
        );
    }

    #[test]
    fn snapshot_of_all_models() {
        insta::assert_json_snapshot!(fixture().models);
    }

    #[test]
    fn garbage_and_wrong_shapes_fail_the_payload() {
        assert!(matches!(parse(b"Unauthorized"), Err(PayloadError::InvalidJson(_))));
        assert!(matches!(
            parse(br#"{"status":401,"message":"Invalid API key"}"#),
            Err(PayloadError::UnexpectedShape(_))
        ));
        assert!(matches!(
            parse(br#"{"data":"none"}"#),
            Err(PayloadError::UnexpectedShape(_))
        ));
        assert!(matches!(parse(b"[]"), Err(PayloadError::UnexpectedShape(_))));
        assert_eq!(parse(br#"{"status":200,"data":[]}"#).unwrap().records(), 0);
    }

    const GOOD: &str = r#"{"id":"11111111-1111-1111-1111-111111111111","name":"Good"}"#;

    fn page_around(record: &str) -> ParsedPage {
        let body = format!(r#"{{"status":200,"data":[{GOOD},{record},{GOOD}]}}"#);
        let page = parse(body.as_bytes()).unwrap();
        assert_eq!(page.records(), 3);
        assert_eq!(page.models.first().and_then(|m| m.name.as_deref()), Some("Good"));
        assert_eq!(page.models.last().and_then(|m| m.name.as_deref()), Some("Good"));
        page
    }

    #[test]
    fn bad_records_are_rejected_with_the_right_reason() {
        let cases = [
            ("[]", RejectReason::MalformedRecord),
            (r#"{"slug":"no-id"}"#, RejectReason::MissingId),
            (r#"{"id":{"uuid":"x"}}"#, RejectReason::MissingId),
            (
                r#"{"id":"x","pricing":{"price_1m_input_tokens":"abc"}}"#,
                RejectReason::InvalidPrice,
            ),
            (
                r#"{"id":"x","pricing":{"price_1m_output_tokens":-5}}"#,
                RejectReason::InvalidPrice,
            ),
            (
                r#"{"id":"x","pricing":{"price_1m_input_tokens":1e400}}"#,
                RejectReason::InvalidPrice,
            ),
            (
                r#"{"id":"x","evaluations":{"artificial_analysis_intelligence_index":"high"}}"#,
                RejectReason::InvalidValue,
            ),
            (r#"{"id":"x","name":"\u0000"}"#, RejectReason::NulByte),
        ];
        for (record, reason) in cases {
            let page = page_around(record);
            assert_eq!(page.rejects.len(), 1, "{record}");
            assert_eq!(page.rejects[0].reason, reason, "{record}");
            assert_eq!(page.rejects[0].raw, record);
        }
    }

    #[test]
    fn malformed_records_are_rejected_and_the_rest_of_the_page_is_kept() {
        let deep = format!(
            r#"{{"id":"x","evaluations":{}{}}}"#,
            "[".repeat(5_000),
            "]".repeat(5_000)
        );
        for record in [r#"{"id": "x", "name": }"#, r#"{"id":"x" "name":"y"}"#, deep.as_str()] {
            let page = page_around(record);
            assert_eq!(page.rejects.len(), 1, "{record}");
            assert_eq!(page.rejects[0].reason, RejectReason::MalformedRecord, "{record}");
            assert_eq!(page.rejects[0].raw, record);
        }
    }

    #[test]
    fn only_the_data_member_must_be_readable() {
        let body = format!(r#"{{"status":200,"prompt_options":{{"parallel_queries": oops}},"data":[{GOOD}]}}"#);
        assert_eq!(parse(body.as_bytes()).unwrap().models.len(), 1);
        let cut = format!(r#"{{"status":200,"data":[{GOOD},{GOOD}"#);
        assert!(matches!(parse(cut.as_bytes()), Err(PayloadError::InvalidJson(_))));
    }

    #[test]
    fn optional_keys_may_be_absent_null_or_of_another_type() {
        let record = r#"{"id":"x","name":null,"model_creator":"OpenAI","pricing":null,
            "evaluations":{"artificial_analysis_intelligence_index":null,"new_index":[1]},
            "release_date":"2025-08","median_output_tokens_per_second":"fast"}"#;
        let page = page_around(record);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        let model = &page.models[1];
        assert_eq!(model.provider, "");
        assert_eq!(model.name, None);
        assert_eq!(model.input_price_per_mtok, None);
        assert_eq!(model.intelligence_index, None);
        assert_eq!(model.release_date, NaiveDate::from_ymd_opt(2025, 8, 1));
    }
}
