//! OpenRouter: the models its router serves.
//!
//! `GET {base}/api/v1/models` answers `{"data": [record, ...]}`, in the paged form also
//! `"links": {"next": "/api/v1/models?offset=200&limit=200" | null}` and `"totalCount": N`
//! (followed and checked by [`crate::sources::pagination`]). `model_id` is the record's `id`
//! (`author/slug`) and `provider` the part before the first `/`. Prices are strings in USD
//! **per token**: they are scaled to per million tokens exactly, and the sentinel `"-1"`
//! (variable price, e.g. the `openrouter/auto` router) is stored as unknown. Long-prompt
//! prices (`pricing.overrides[]` entries with `min_prompt_tokens`) become `price_tiers`;
//! time-of-day overrides (`utc_start` / `utc_end`) are not tiers and stay in `data` only.
//! `expiration_date` becomes `expires_on`.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Model, ParsedPage, PriceTier, RejectReason, Source};
use crate::sources::fields::{self, Invalid, PageBuilder};
use crate::sources::{tiers, PayloadError};

/// Decimal places between USD per token and USD per million tokens.
const PER_MILLION_SHIFT: i32 = 6;

/// The URL of the model list under `base_url` (e.g. `https://openrouter.ai`).
pub fn url(base_url: &str) -> String {
    format!("{}/api/v1/models", base_url.trim_end_matches('/'))
}

/// Turns one `/api/v1/models` response into one model (or reject) per element of `data`.
pub fn parse(body: &[u8]) -> Result<ParsedPage, PayloadError> {
    let records = fields::member_elements(body, "data", "an object with a `data` array")?;
    let mut page = PageBuilder::new(Source::OpenRouter);
    for record in records {
        page.push_slice(record, parse_record);
    }
    Ok(page.finish())
}

/// The fields of one record that we map; new fields (`reasoning`, `benchmarks`, ...) stay in
/// the raw text.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    created: Option<&'a RawValue>,
    #[serde(borrow)]
    context_length: Option<&'a RawValue>,
    #[serde(borrow)]
    hugging_face_id: Option<&'a RawValue>,
    #[serde(borrow)]
    architecture: Option<&'a RawValue>,
    #[serde(borrow)]
    pricing: Option<&'a RawValue>,
    #[serde(borrow)]
    top_provider: Option<&'a RawValue>,
    #[serde(borrow)]
    supported_parameters: Option<&'a RawValue>,
    #[serde(borrow)]
    expiration_date: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Architecture<'a> {
    #[serde(borrow)]
    input_modalities: Option<&'a RawValue>,
    #[serde(borrow)]
    output_modalities: Option<&'a RawValue>,
}

/// Per-token prices, of the model or of one `overrides[]` entry (which also carries its
/// condition). Others (`web_search`, `image`, `audio`, ...) stay raw.
#[derive(Deserialize)]
struct Pricing<'a> {
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    completion: Option<&'a RawValue>,
    #[serde(borrow)]
    input_cache_read: Option<&'a RawValue>,
    #[serde(borrow)]
    input_cache_write: Option<&'a RawValue>,
    #[serde(borrow)]
    overrides: Option<&'a RawValue>,
    /// In an override: the prompt length from which it applies (a long-context tier).
    #[serde(borrow)]
    min_prompt_tokens: Option<&'a RawValue>,
    /// In an override: a time-of-day window (not a tier).
    #[serde(borrow)]
    utc_start: Option<&'a RawValue>,
    #[serde(borrow)]
    utc_end: Option<&'a RawValue>,
}

/// The `overrides[]` entries with `min_prompt_tokens` and no time window, as tiers. Entries
/// with another condition (a time-of-day window, anything without `min_prompt_tokens`) are
/// not context tiers: they stay in `data` only.
fn price_tiers(pricing: &Pricing) -> Result<Option<Vec<PriceTier>>, Invalid> {
    let mut found = Vec::new();
    for (index, entry) in tiers::entries("pricing.overrides", pricing.overrides)?
        .into_iter()
        .enumerate()
    {
        let field = format!("pricing.overrides[{index}]");
        let entry: Pricing = tiers::object(&field, entry)?;
        let timed = entry.utc_start.is_some() || entry.utc_end.is_some();
        if timed || entry.min_prompt_tokens.is_none() {
            continue;
        }
        found.push(PriceTier {
            min_context_tokens: tiers::start(&format!("{field}.min_prompt_tokens"), entry.min_prompt_tokens)?,
            input: per_million(&format!("{field}.prompt"), entry.prompt)?,
            output: per_million(&format!("{field}.completion"), entry.completion)?,
            cache_read: per_million(&format!("{field}.input_cache_read"), entry.input_cache_read)?,
            cache_write: per_million(&format!("{field}.input_cache_write"), entry.input_cache_write)?,
        });
    }
    tiers::sorted("pricing.overrides", found)
}

#[derive(Deserialize)]
struct TopProvider<'a> {
    #[serde(borrow)]
    context_length: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
}

fn parse_record(raw: &RawValue) -> Result<Model, Invalid> {
    let record: Record = fields::decode_record(raw)?;
    let id = fields::required_id("id", record.id);
    fields::reject_unstorable(raw.get(), id.as_ref().ok())?;
    let model_id = id?;
    to_model(model_id.clone(), raw, &record).map_err(|invalid| invalid.with_model_id(&model_id))
}

fn to_model(model_id: String, raw: &RawValue, record: &Record) -> Result<Model, Invalid> {
    let provider = fields::owner_of(&model_id).to_string();
    let mut model = Model::new(Source::OpenRouter, provider, model_id, raw.get().to_string());
    model.name = fields::text(record.name);
    model.release_date = fields::date_from_unix_seconds(record.created);

    let top_provider = fields::nested::<TopProvider>("top_provider", record.top_provider)?;
    model.context_length = match fields::count("context_length", record.context_length)? {
        Some(context_length) => Some(context_length),
        None => match &top_provider {
            Some(top) => fields::count("top_provider.context_length", top.context_length)?,
            None => None,
        },
    };
    if let Some(top) = &top_provider {
        model.max_output_tokens = fields::count("top_provider.max_completion_tokens", top.max_completion_tokens)?;
    }

    if let Some(pricing) = fields::nested::<Pricing>("pricing", record.pricing)? {
        model.input_price_per_mtok = per_million("pricing.prompt", pricing.prompt)?;
        model.output_price_per_mtok = per_million("pricing.completion", pricing.completion)?;
        model.cache_read_price_per_mtok = per_million("pricing.input_cache_read", pricing.input_cache_read)?;
        model.cache_write_price_per_mtok = per_million("pricing.input_cache_write", pricing.input_cache_write)?;
        model.price_tiers = price_tiers(&pricing)?;
    }
    // A date or null; an unreadable date is unknown, like every descriptive field.
    model.expires_on = fields::date(record.expiration_date);

    if let Some(architecture) = fields::nested::<Architecture>("architecture", record.architecture)? {
        model.input_modalities = fields::text_list(architecture.input_modalities);
        model.output_modalities = fields::text_list(architecture.output_modalities);
    }

    if let Some(parameters) = fields::text_list(record.supported_parameters) {
        let supports = |name: &str| parameters.iter().any(|parameter| parameter == name);
        model.supports_tools = Some(supports("tools"));
        model.supports_reasoning = Some(supports("reasoning") || supports("include_reasoning"));
    }

    // A Hugging Face repository means published weights; its absence proves nothing.
    model.open_weights = fields::text(record.hugging_face_id)
        .filter(|repository| !repository.is_empty())
        .map(|_| true);
    Ok(model)
}

/// A per-token price string scaled to USD per million tokens, exactly. `-1` is OpenRouter's
/// "variable price" sentinel (routers whose price depends on the model chosen): unknown.
fn per_million(field: &str, raw: Option<&RawValue>) -> Result<Option<Decimal>, Invalid> {
    let variable = -Decimal::from(1_000_000);
    let Some(value) = fields::decimal(field, raw, PER_MILLION_SHIFT, RejectReason::InvalidPrice)? else {
        return Ok(None);
    };
    if value == variable {
        return Ok(None);
    }
    if value.is_sign_negative() {
        let shown = raw.map(fields::shown).unwrap_or_default();
        return Err(Invalid::new(
            RejectReason::InvalidPrice,
            format!("`{field}` is {shown}, a price cannot be negative (only -1 means variable)"),
        ));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_fixtures;
    use crate::sources::tiers::tests::tier;
    use chrono::NaiveDate;
    use std::str::FromStr;

    fn find<'a>(page: &'a ParsedPage, model_id: &str) -> &'a Model {
        page.models
            .iter()
            .find(|model| model.model_id == model_id)
            .unwrap_or_else(|| panic!("no model {model_id}"))
    }

    fn dec(text: &str) -> Option<Decimal> {
        Some(Decimal::from_str(text).unwrap())
    }

    fn fixture() -> ParsedPage {
        parse(&test_fixtures::read("openrouter_models.json")).unwrap()
    }

    #[test]
    fn url_appends_the_api_path() {
        assert_eq!(url("https://openrouter.ai/"), "https://openrouter.ai/api/v1/models");
    }

    #[test]
    fn every_record_of_the_fixture_becomes_a_model() {
        let page = fixture();
        assert_eq!(page.records(), 364);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
    }

    #[test]
    fn per_token_prices_become_exact_per_million_prices() {
        let page = fixture();
        let gpt = find(&page, "openai/gpt-5.4");
        assert_eq!(gpt.provider, "openai");
        assert_eq!(gpt.input_price_per_mtok, dec("2.5"));
        assert_eq!(gpt.input_price_per_mtok.unwrap().to_string(), "2.5");
        assert_eq!(gpt.output_price_per_mtok, dec("15"));
        assert_eq!(gpt.cache_read_price_per_mtok, dec("0.25"));
        assert_eq!(gpt.cache_write_price_per_mtok, None);

        let repeating = page
            .models
            .iter()
            .find(|model| model.raw.contains(r#""input_cache_write":"0.00000008333333333333334""#))
            .expect("a model with a repeating-decimal cache price");
        assert_eq!(
            repeating.cache_write_price_per_mtok.unwrap().to_string(),
            "0.08333333333333334"
        );
    }

    #[test]
    fn variable_prices_are_unknown_and_kept_raw() {
        let page = fixture();
        for id in ["openrouter/auto", "openrouter/pareto-code", "openrouter/bodybuilder"] {
            let router = find(&page, id);
            assert_eq!(router.input_price_per_mtok, None, "{id}");
            assert_eq!(router.output_price_per_mtok, None, "{id}");
            assert!(router.raw.contains(r#""prompt":"-1""#), "{id}");
            assert_eq!(router.max_output_tokens, None, "{id}");
        }
        assert_eq!(find(&page, "openrouter/auto").context_length, Some(2_000_000));
        assert_eq!(find(&page, "openrouter/auto").supports_tools, Some(true));
        // An empty list of parameters is a statement too: no tools.
        assert_eq!(find(&page, "openrouter/pareto-code").supports_tools, Some(false));
    }

    #[test]
    fn descriptive_fields_are_mapped() {
        let page = fixture();
        let opus = find(&page, "anthropic/claude-opus-4.7-fast");
        assert_eq!(opus.name.as_deref(), Some("Anthropic: Claude Opus 4.7 (Fast)"));
        assert_eq!(opus.context_length, Some(1_000_000));
        assert_eq!(opus.max_output_tokens, Some(128_000));
        assert_eq!(opus.supports_tools, Some(true));
        assert_eq!(opus.supports_reasoning, Some(true));
        assert_eq!(opus.open_weights, None);
        assert_eq!(opus.release_date, NaiveDate::from_ymd_opt(2026, 5, 12));
        assert_eq!(
            opus.input_modalities,
            Some(vec!["text".to_string(), "image".to_string(), "file".to_string()])
        );
        let open = page
            .models
            .iter()
            .filter(|model| model.open_weights == Some(true))
            .count();
        assert_eq!(open, 173);
    }

    #[test]
    fn snapshot_of_selected_models() {
        let page = fixture();
        let repeating = page
            .models
            .iter()
            .find(|model| model.raw.contains("0.00000008333333333333334"))
            .unwrap();
        let open = page
            .models
            .iter()
            .find(|model| model.open_weights == Some(true))
            .unwrap();
        let selected = [
            find(&page, "anthropic/claude-opus-4.7-fast"),
            find(&page, "openai/gpt-5.4"),
            find(&page, "openrouter/auto"),
            repeating,
            open,
        ];
        insta::assert_json_snapshot!(selected);
    }

    #[test]
    fn garbage_and_wrong_shapes_fail_the_payload() {
        assert!(matches!(parse(b"\x00\x01garbage"), Err(PayloadError::InvalidJson(_))));
        assert!(matches!(parse(b""), Err(PayloadError::InvalidJson(_))));
        for shape in [
            &b"[]"[..],
            b"{}",
            b"{\"data\":{}}",
            b"{\"data\":null}",
            b"[[]]",
            b"{\"error\":\"x\"}",
        ] {
            assert!(
                matches!(parse(shape), Err(PayloadError::UnexpectedShape(_))),
                "{}",
                String::from_utf8_lossy(shape)
            );
        }
        assert_eq!(parse(b"{\"data\":[]}").unwrap().records(), 0);
    }

    const GOOD: &str = r#"{"id":"good/one","pricing":{"prompt":"0.000001","completion":"0.000002"}}"#;

    /// A page with a good record before and after `record`.
    fn page_around(record: &str) -> ParsedPage {
        let body = format!(r#"{{"data":[{GOOD},{record},{GOOD}]}}"#);
        let page = parse(body.as_bytes()).unwrap();
        assert_eq!(page.records(), 3);
        assert_eq!(page.models.first().map(|m| m.model_id.as_str()), Some("good/one"));
        assert_eq!(page.models.last().map(|m| m.model_id.as_str()), Some("good/one"));
        page
    }

    fn reject_of(record: &str) -> RejectReason {
        let page = page_around(record);
        assert_eq!(page.rejects.len(), 1, "{record} became {:?}", page.models);
        assert_eq!(page.rejects[0].raw, record);
        assert_eq!(page.rejects[0].source, Source::OpenRouter);
        page.rejects[0].reason
    }

    #[test]
    fn bad_records_are_rejected_with_the_right_reason() {
        let cases = [
            ("42", RejectReason::MalformedRecord),
            (r#"["x/y"]"#, RejectReason::MalformedRecord),
            (r#"{"name":"no id"}"#, RejectReason::MissingId),
            (r#"{"id":null}"#, RejectReason::MissingId),
            (r#"{"id":""}"#, RejectReason::MissingId),
            (r#"{"id":7}"#, RejectReason::MissingId),
            (r#"{"id":"a/b","pricing":{"prompt":"abc"}}"#, RejectReason::InvalidPrice),
            (r#"{"id":"a/b","pricing":{"prompt":"-5"}}"#, RejectReason::InvalidPrice),
            (
                r#"{"id":"a/b","pricing":{"completion":"-0.5"}}"#,
                RejectReason::InvalidPrice,
            ),
            (r#"{"id":"a/b","pricing":{"prompt":1e400}}"#, RejectReason::InvalidPrice),
            (
                r#"{"id":"a/b","pricing":{"prompt":{"usd":1}}}"#,
                RejectReason::InvalidPrice,
            ),
            (r#"{"id":"a/b","context_length":-1}"#, RejectReason::InvalidValue),
            (
                r#"{"id":"a/b","top_provider":{"max_completion_tokens":"lots"}}"#,
                RejectReason::InvalidValue,
            ),
            (r#"{"id":"a/b","description":"x\u0000y"}"#, RejectReason::NulByte),
            (r#"{"id":"a\u0000b"}"#, RejectReason::NulByte),
            (
                r#"{"id":"a/b","pricing":{"prompt":"0.1","prompt":"0.2"}}"#,
                RejectReason::MalformedRecord,
            ),
            (r#"{"id":"a/b","name":"\ud83d"}"#, RejectReason::InvalidValue),
        ];
        for (record, reason) in cases {
            assert_eq!(reject_of(record), reason, "{record}");
        }
    }

    #[test]
    fn malformed_records_are_rejected_and_the_rest_of_the_page_is_kept() {
        for record in [
            r#"{"id": "a/b", "pricing": {"prompt": }}"#,
            r#"{"id": "a/b" "name": "x"}"#,
            r#"{"id":"a/b","pricing":{"prompt":"0.1",}}"#,
        ] {
            assert_eq!(reject_of(record), RejectReason::MalformedRecord, "{record}");
        }
    }

    #[test]
    fn records_that_are_not_utf8_or_too_deep_are_rejected_alone() {
        let deep = format!(
            r#"{{"id":"deep","x":{}{}}}"#,
            "{\"a\":".repeat(5_000),
            "}".repeat(5_000)
        );
        let mut body = format!(r#"{{"data":[{GOOD},{deep},"#).into_bytes();
        body.extend_from_slice(b"{\"id\":\"a/\xFF\"}");
        body.extend_from_slice(format!(",{GOOD}]}}").as_bytes());
        let page = parse(&body).unwrap();
        assert_eq!(page.models.len(), 2);
        let details: Vec<&str> = page.rejects.iter().map(|reject| reject.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "the record is nested 5001 levels deep, deeper than the 64 levels accepted",
                "the record is not UTF-8 text: not UTF-8 at byte 9",
            ]
        );
        assert_eq!(page.rejects[0].raw, deep);
        assert_eq!(page.rejects[1].raw, "{\"id\":\"a/\u{FFFD}\"}");
    }

    #[test]
    fn a_body_cut_short_fails_the_page() {
        let body = format!(r#"{{"data":[{GOOD},{{"id":"a/b","#);
        assert!(matches!(parse(body.as_bytes()), Err(PayloadError::InvalidJson(_))));
        let body = format!(r#"{{"data":[{GOOD}]"#);
        assert!(matches!(parse(body.as_bytes()), Err(PayloadError::InvalidJson(_))));
    }

    #[test]
    fn rejects_carry_the_id_when_it_is_readable() {
        let page = page_around(r#"{"id":"a/b","pricing":{"prompt":"abc"}}"#);
        assert_eq!(page.rejects[0].model_id.as_deref(), Some("a/b"));
        assert_eq!(
            page.rejects[0].detail,
            r#"`pricing.prompt` is "abc", not a decimal number"#
        );
        let nul = page_around(r#"{"id":"a/b","description":"\u0000"}"#);
        assert_eq!(nul.rejects[0].model_id.as_deref(), Some("a/b"));
        let nul_id = page_around(r#"{"id":"a\u0000b"}"#);
        assert_eq!(nul_id.rejects[0].model_id, None);
    }

    #[test]
    fn the_variable_price_sentinel_is_only_minus_one() {
        for sentinel in [r#""-1""#, r#""-1.0""#, "-1"] {
            let record = format!(r#"{{"id":"a/b","pricing":{{"prompt":{sentinel}}}}}"#);
            let page = page_around(&record);
            assert!(page.rejects.is_empty(), "{sentinel}");
            assert_eq!(page.models[1].input_price_per_mtok, None);
        }
    }

    #[test]
    fn new_fields_and_unexpected_types_do_not_reject() {
        let record = r#"{"id":"solo","name":["x"],"created":"yesterday","context_length":null,
            "top_provider":{"context_length":4096,"max_completion_tokens":null},
            "architecture":"text->text","supported_parameters":{"tools":true},
            "hugging_face_id":"","reasoning":{"effort":["low","high"]},
            "benchmarks":[{"name":"x","score":0.5}],
            "pricing":{"prompt":"0","completion":"0.0000025","request":"0.02",
                       "overrides":[{"match":{"region":"eu"},"prompt":"0.000003"}]}}"#;
        let page = page_around(record);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        let model = &page.models[1];
        assert_eq!(model.provider, "");
        assert_eq!(model.model_id, "solo");
        assert_eq!(model.name, None);
        assert_eq!(model.release_date, None);
        assert_eq!(model.context_length, Some(4096));
        assert_eq!(model.input_modalities, None);
        assert_eq!(model.supports_tools, None);
        assert_eq!(model.open_weights, None);
        assert_eq!(model.input_price_per_mtok, dec("0"));
        assert_eq!(model.output_price_per_mtok, dec("2.5"));
        assert_eq!(
            model.price_tiers, None,
            "an override without min_prompt_tokens is no tier"
        );
        assert_eq!(model.raw, record);
    }

    #[test]
    fn both_pages_of_the_paged_listing_hold_the_recorded_models() {
        let page1 = parse(&test_fixtures::read("openrouter_models_page1.json")).unwrap();
        let page2 = parse(&test_fixtures::read("openrouter_models_page2.json")).unwrap();
        assert_eq!((page1.records(), page2.records()), (200, 164));
        assert!(page1.rejects.is_empty() && page2.rejects.is_empty());
        let single = fixture();
        let paged: Vec<&Model> = page1.models.iter().chain(&page2.models).collect();
        assert_eq!(paged.len(), single.models.len());
        // The same normalized rows (the raw texts differ in whitespace between the recordings).
        assert_eq!(
            serde_json::to_value(&paged).unwrap(),
            serde_json::to_value(&single.models).unwrap()
        );
        assert_eq!(find(&page2, "openrouter/auto").input_price_per_mtok, None);
    }

    #[test]
    fn expiration_dates_become_expires_on() {
        let page = fixture();
        let expiring: Vec<&Model> = page.models.iter().filter(|model| model.expires_on.is_some()).collect();
        assert_eq!(expiring.len(), 11);
        assert_eq!(
            find(&page, "x-ai/grok-4").expires_on,
            NaiveDate::from_ymd_opt(2026, 5, 15)
        );
        assert_eq!(
            find(&page, "google/gemini-2.0-flash-001").expires_on,
            NaiveDate::from_ymd_opt(2026, 6, 1)
        );
        assert_eq!(find(&page, "openai/gpt-5.4").expires_on, None);
    }

    #[test]
    fn long_prompt_overrides_become_exact_tiers_and_time_windows_do_not() {
        let record = r#"{"id":"google/gemini-long","pricing":{"prompt":"0.000002","completion":"0.000006",
            "input_cache_read":"0.0000005","web_search":"0.005","overrides":[
              {"utc_start":100,"utc_end":400,"prompt":"0.000001","completion":"0.000003"},
              {"min_prompt_tokens":1000000,"prompt":"0.00000800","completion":"0.000024"},
              {"min_prompt_tokens":200000,"prompt":"0.000004","completion":"0.000012","input_cache_read":"0.000001",
               "input_cache_write":"0.00000008333333333333334"},
              {"min_prompt_tokens":500000,"utc_start":0,"utc_end":60,"prompt":"0.000003"}
            ]}}"#;
        let page = page_around(record);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        let model = &page.models[1];
        assert_eq!(model.input_price_per_mtok, dec("2"));
        assert_eq!(
            model.price_tiers,
            Some(vec![
                tier(200_000, [Some("4"), Some("12"), Some("1"), Some("0.08333333333333334")]),
                tier(1_000_000, [Some("8"), Some("24"), None, None]),
            ])
        );
        assert_eq!(
            model.price_tiers_json().as_deref(),
            Some(
                r#"[{"min_context_tokens":200000,"input":"4","output":"12","cache_read":"1","cache_write":"0.08333333333333334"},{"min_context_tokens":1000000,"input":"8","output":"24"}]"#
            )
        );
        let only_windows = page_around(
            r#"{"id":"a/b","pricing":{"prompt":"0.000001","overrides":[{"utc_start":1,"utc_end":2,"prompt":"0"}]}}"#,
        );
        assert_eq!(only_windows.models[1].price_tiers, None);
    }

    #[test]
    fn a_bad_override_rejects_the_record_and_names_the_field() {
        let cases = [
            (
                r#"{"id":"a/b","pricing":{"overrides":[{"min_prompt_tokens":200000,"prompt":"cheap"}]}}"#,
                RejectReason::InvalidPrice,
                r#"`pricing.overrides[0].prompt` is "cheap", not a decimal number"#,
            ),
            (
                r#"{"id":"a/b","pricing":{"overrides":[{"min_prompt_tokens":200000,"completion":"-0.5"}]}}"#,
                RejectReason::InvalidPrice,
                r#"`pricing.overrides[0].completion` is "-0.5", a price cannot be negative (only -1 means variable)"#,
            ),
            (
                r#"{"id":"a/b","pricing":{"overrides":[{"min_prompt_tokens":-5,"prompt":"0.1"}]}}"#,
                RejectReason::InvalidValue,
                "`pricing.overrides[0].min_prompt_tokens` is -5, expected a non-negative whole number",
            ),
            (
                r#"{"id":"a/b","pricing":{"overrides":["200k"]}}"#,
                RejectReason::InvalidValue,
                r#"`pricing.overrides[0]` is a JSON string ("200k"), expected a price tier object"#,
            ),
            (
                r#"{"id":"a/b","pricing":{"overrides":{"min_prompt_tokens":1}}}"#,
                RejectReason::InvalidValue,
                r#"`pricing.overrides` is a JSON object ({"min_prompt_tokens":1}), expected an array of price tiers"#,
            ),
            (
                r#"{"id":"a/b","pricing":{"overrides":[{"min_prompt_tokens":9,"prompt":"1"},{"min_prompt_tokens":9,"prompt":"2"}]}}"#,
                RejectReason::InvalidValue,
                "`pricing.overrides` has two tiers from 9 tokens: which prices apply is ambiguous",
            ),
        ];
        for (record, reason, detail) in cases {
            let page = page_around(record);
            assert_eq!(page.rejects.len(), 1, "{record}");
            assert_eq!(
                (page.rejects[0].reason, page.rejects[0].detail.as_str()),
                (reason, detail)
            );
            assert_eq!(page.rejects[0].model_id.as_deref(), Some("a/b"));
        }
    }
}
