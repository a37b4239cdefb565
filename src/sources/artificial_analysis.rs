//! Artificial Analysis: benchmarked language models with prices and an intelligence index.
//!
//! `GET {base}/api/v2/language/models/free?page=N` (the paid tier: `/api/v2/language/models`)
//! with the key in the `x-api-key` header answers `{data: [record, ...], pagination: {page,
//! page_size, total_pages, has_more}, intelligence_index_version}` (pages are followed by
//! [`crate::sources::pagination`]). The retired `/api/v2/data/llms/models` answered
//! `{status, prompt_options, data}`; that shape is still read. `model_id` is the record's `id`,
//! a UUID that stays stable when the slug or name changes; `provider` is `model_creator.slug`.
//! Prices are already in USD per million tokens. The page's `intelligence_index_version` is
//! stored on every row (a record's own value wins): scores of different index versions are not
//! comparable. Wherever this data is shown, attribution to <https://artificialanalysis.ai/> is
//! required.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Model, ParsedPage, RejectReason, Source};
use crate::sources::fields::{self, Invalid, PageBuilder};
use crate::sources::split::Member;
use crate::sources::PayloadError;

/// The endpoint path by default: the free tier's listing. The paid tier's
/// (`/api/v2/language/models`) is `sources.artificial_analysis.path`.
pub const DEFAULT_PATH: &str = "/api/v2/language/models/free";

/// The path retired on 2026-11-04 (it answers HTTP 410 Gone).
pub const RETIRED_PATH: &str = "/api/v2/data/llms/models";

const EXPECTED: &str = "an object with a `data` array";

/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The URL of `path` under `base_url` (e.g. `https://artificialanalysis.ai` and
/// [`DEFAULT_PATH`]), with exactly one `/` between them.
pub fn url(base_url: &str, path: &str) -> String {
    format!("{}/{}", base_url.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// Turns one response into one model (or reject) per element of `data`.
pub fn parse(body: &[u8]) -> Result<ParsedPage, PayloadError> {
    let members = fields::document_members(body, EXPECTED)?;
    let records = fields::named_elements(&members, "data", EXPECTED)?;
    let page_version = index_version(page_member(&members, "intelligence_index_version").as_deref());
    let mut page = PageBuilder::new(Source::ArtificialAnalysis);
    for record in records {
        page.push_slice(record, |raw| parse_record(raw, page_version.as_deref()));
    }
    Ok(page.finish())
}

/// A top-level member of the page as raw JSON; an unreadable member is absent (only `data`
/// must be readable).
fn page_member(members: &[Member<'_>], name: &str) -> Option<Box<RawValue>> {
    let member = members.iter().find(|member| member.key.as_deref() == Ok(name))?;
    let text = std::str::from_utf8(member.value.bytes).ok()?;
    serde_json::from_str(text).ok()
}

/// An index version as text: a string as written, or a number's text (`4.3`). Anything else
/// (null, an object) is unknown.
fn index_version(raw: Option<&RawValue>) -> Option<String> {
    let raw = raw?;
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => fields::text(Some(raw)).filter(|version| !version.is_empty()),
        b'-' | b'0'..=b'9' => Some(text.to_string()),
        _ => None,
    }
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
    #[serde(borrow)]
    intelligence_index_version: Option<&'a RawValue>,
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

fn parse_record(raw: &RawValue, page_version: Option<&str>) -> Result<Model, Invalid> {
    let record: Record = fields::decode_record(raw)?;
    let id = fields::required_id("id", record.id);
    fields::reject_unstorable(raw.get(), id.as_ref().ok())?;
    let model_id = id?;
    let mut model = to_model(model_id.clone(), raw, &record).map_err(|invalid| invalid.with_model_id(&model_id))?;
    model.intelligence_index_version =
        index_version(record.intelligence_index_version).or_else(|| page_version.map(str::to_string));
    Ok(model)
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
        let expected = "https://artificialanalysis.ai/api/v2/language/models/free";
        assert_eq!(url("https://artificialanalysis.ai", DEFAULT_PATH), expected);
        assert_eq!(url("https://artificialanalysis.ai/", DEFAULT_PATH), expected);
        assert_eq!(
            url("https://artificialanalysis.ai/", "api/v2/language/models/free"),
            expected
        );
    }

    fn pages() -> (ParsedPage, ParsedPage) {
        (
            parse(&test_fixtures::read("aa_language_models_free_page1.json")).unwrap(),
            parse(&test_fixtures::read("aa_language_models_free_page2.json")).unwrap(),
        )
    }

    #[test]
    fn both_pages_of_the_language_models_listing_hold_the_recorded_models() {
        let (page1, page2) = pages();
        assert_eq!((page1.records(), page2.records()), (6, 6));
        assert!(page1.rejects.is_empty() && page2.rejects.is_empty());
        let paged: Vec<&Model> = page1.models.iter().chain(&page2.models).collect();
        let legacy = fixture();
        assert_eq!(paged.len(), 12);
        for (paged, legacy) in paged.iter().zip(&legacy.models) {
            assert_eq!(
                (
                    &paged.model_id,
                    &paged.provider,
                    paged.input_price_per_mtok,
                    paged.intelligence_index
                ),
                (
                    &legacy.model_id,
                    &legacy.provider,
                    legacy.input_price_per_mtok,
                    legacy.intelligence_index
                )
            );
            assert_eq!(
                paged.intelligence_index_version.as_deref(),
                Some("4.3"),
                "{}",
                paged.model_id
            );
            // The retired endpoint stated no version.
            assert_eq!(legacy.intelligence_index_version, None);
        }
        let deepseek = &page2.models[0];
        assert_eq!(deepseek.model_id, "dbe7c625-3100-4463-b479-a228c41f75dd");
        assert_eq!(deepseek.provider, "deepseek");
        assert_eq!(deepseek.input_price_per_mtok, dec("0.3"));
        assert_eq!(deepseek.output_price_per_mtok, dec("1.2"));
        assert_eq!(deepseek.intelligence_index, dec("39.5"));
    }

    #[test]
    fn snapshot_of_the_paged_models() {
        let (page1, page2) = pages();
        let models: Vec<&Model> = page1.models.iter().chain(&page2.models).collect();
        insta::assert_json_snapshot!(models);
    }

    #[test]
    fn a_record_s_own_index_version_wins_over_the_page_s() {
        let body = format!(
            r#"{{"data":[{GOOD},{{"id":"x","intelligence_index_version":"4.2"}},{{"id":"y","intelligence_index_version":null}}],
                "intelligence_index_version":4.3}}"#
        );
        let page = parse(body.as_bytes()).unwrap();
        let versions: Vec<Option<&str>> = page
            .models
            .iter()
            .map(|model| model.intelligence_index_version.as_deref())
            .collect();
        assert_eq!(versions, [Some("4.3"), Some("4.2"), Some("4.3")]);
        let unreadable = format!(r#"{{"data":[{GOOD}],"intelligence_index_version":{{"v":4}}}}"#);
        assert_eq!(
            parse(unreadable.as_bytes()).unwrap().models[0].intelligence_index_version,
            None
        );
        let broken = format!(r#"{{"data":[{GOOD}],"intelligence_index_version":4.3.1}}"#);
        assert_eq!(
            parse(broken.as_bytes()).unwrap().models[0].intelligence_index_version,
            None
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
