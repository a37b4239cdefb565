//! models.dev: one JSON document of every provider and the models it serves.
//!
//! `GET {base}/api.json` answers `{provider_key: {id, name, ..., models: {model_key: record}}}`.
//! A row is one provider-model pair: `provider` is the provider key and `model_id` the model
//! key (which may contain `/`, e.g. `@cf/meta/llama-3.1-8b-instruct`). Prices are already in
//! USD per million tokens.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Model, ParsedPage, PriceTier, RejectReason, Source};
use crate::sources::fields::{self, Invalid, PageBuilder};
use crate::sources::split::{self, Slice, SplitError};
use crate::sources::{tiers, PayloadError};

/// The URL of the whole catalogue under `base_url` (e.g. `https://models.dev`).
pub fn url(base_url: &str) -> String {
    format!("{}/api.json", base_url.trim_end_matches('/'))
}

/// Turns the `api.json` document into one model (or reject) per provider-model entry.
pub fn parse(body: &[u8]) -> Result<ParsedPage, PayloadError> {
    let providers = fields::document_members(body, "an object of providers keyed by provider id")?;
    let mut page = PageBuilder::new(Source::ModelsDev);
    for provider in providers {
        match &provider.key {
            Ok(provider_key) => parse_provider(&mut page, provider_key, provider.value),
            Err(why) => {
                let invalid = Invalid::new(
                    RejectReason::MalformedRecord,
                    format!("a provider cannot be read: {why}"),
                );
                page.reject_bytes(invalid, provider.text);
            }
        }
    }
    Ok(page.finish())
}

/// Adds the models of one provider entry to `page`. The entry is split rather than parsed, so
/// a malformed model costs that model alone. An entry that cannot be split into models
/// becomes rejects (never silently nothing) and the other providers go on.
fn parse_provider(page: &mut PageBuilder, provider_key: &str, provider: Slice<'_>) {
    let malformed = |what: String| {
        Invalid::new(
            RejectReason::MalformedRecord,
            format!("provider `{provider_key}` {what}"),
        )
    };
    let members = match split::members(provider.bytes) {
        Ok(members) => members,
        Err(SplitError::WrongKind { found, .. }) => {
            page.reject_bytes(
                malformed(format!("is a JSON {found}, expected an object")),
                provider.bytes,
            );
            return;
        }
        Err(error) => {
            page.reject_bytes(malformed(format!("cannot be read: {error}")), provider.bytes);
            return;
        }
    };
    // The other members (name, env, npm, doc, api) describe the provider, not its models.
    let mut named = members.iter().filter(|member| member.key.as_deref() == Ok("models"));
    let models = match (named.next(), named.next()) {
        (Some(member), None) => member.value,
        (Some(_), Some(_)) => {
            let invalid = malformed("has `models` more than once, so which list counts is ambiguous".to_string());
            page.reject_bytes(invalid, provider.bytes);
            return;
        }
        (None, _) => {
            // A member that cannot be read may be the models: reject rather than drop them.
            if let Some(why) = members.iter().find_map(|member| member.key.as_ref().err()) {
                page.reject_bytes(malformed(format!("cannot be read: {why}")), provider.bytes);
            }
            // Otherwise the provider lists no models: there is nothing to drop.
            return;
        }
    };
    match models.bytes.first() {
        Some(b'{') => parse_models(page, provider_key, provider, models),
        // An array still holds one record per element: reject each, so the count stays true.
        Some(b'[') => match split::elements(models.bytes) {
            Ok(elements) => {
                for element in elements {
                    let invalid =
                        malformed("lists `models` as an array, expected an object keyed by model id".to_string());
                    page.reject_bytes(invalid, element.bytes);
                }
            }
            Err(error) => page.reject_bytes(
                malformed(format!("has `models` that cannot be read: {error}")),
                provider.bytes,
            ),
        },
        // `"models": null` lists no models, like an absent `models`.
        _ if models.bytes == b"null" => {}
        _ => {
            let invalid = malformed(format!(
                "has `models` as a {} ({}), expected an object keyed by model id",
                split::kind_of(models.bytes),
                fields::shown_text(&String::from_utf8_lossy(models.bytes))
            ));
            page.reject_bytes(invalid, provider.bytes);
        }
    }
}

/// Adds one model (or reject) per member of a provider's `models` object.
fn parse_models(page: &mut PageBuilder, provider_key: &str, provider: Slice<'_>, models: Slice<'_>) {
    let members = match split::members(models.bytes) {
        Ok(members) => members,
        Err(error) => {
            let invalid = Invalid::new(
                RejectReason::MalformedRecord,
                format!("provider `{provider_key}` has `models` that cannot be read: {error}"),
            );
            page.reject_bytes(invalid, provider.bytes);
            return;
        }
    };
    for member in members {
        let model_key = match &member.key {
            Ok(model_key) => model_key,
            Err(why) => {
                let invalid = Invalid::new(
                    RejectReason::MalformedRecord,
                    format!("provider `{provider_key}`: a model cannot be read: {why}"),
                );
                page.reject_bytes(invalid, member.text);
                continue;
            }
        };
        match fields::record_json(member.value) {
            Ok(raw) => page.push(raw, parse_record(provider_key, model_key, raw)),
            Err(invalid) => page.reject_bytes(in_context(provider_key, model_key, invalid), member.value.bytes),
        }
    }
}

/// The fields of one model record that we map; everything else stays in the raw text.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
    #[serde(borrow)]
    cost: Option<&'a RawValue>,
    #[serde(borrow)]
    modalities: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_call: Option<&'a RawValue>,
    #[serde(borrow)]
    reasoning: Option<&'a RawValue>,
    #[serde(borrow)]
    open_weights: Option<&'a RawValue>,
    #[serde(borrow)]
    release_date: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Limit<'a> {
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    output: Option<&'a RawValue>,
}

/// Prices per million tokens: the model's `cost`, one of its `cost.tiers[]` entries (which
/// also carry `tier`), or `cost.context_over_200k`. The cache prices have had several spellings
/// in the data (`cached_input`, `cached_read`, `cached_write`); the canonical one wins when
/// both appear.
#[derive(Deserialize)]
struct Cost<'a> {
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    output: Option<&'a RawValue>,
    #[serde(borrow)]
    cache_read: Option<&'a RawValue>,
    #[serde(borrow)]
    cached_read: Option<&'a RawValue>,
    #[serde(borrow)]
    cached_input: Option<&'a RawValue>,
    #[serde(borrow)]
    cache_write: Option<&'a RawValue>,
    #[serde(borrow)]
    cached_write: Option<&'a RawValue>,
    /// Long-context tiers: `[{"tier": {"type": "context", "size": 200000}, "input": ...}]`.
    #[serde(borrow)]
    tiers: Option<&'a RawValue>,
    /// The older form of one tier at 200,000 tokens.
    #[serde(borrow)]
    context_over_200k: Option<&'a RawValue>,
    /// In a tier entry: what the tier applies to.
    #[serde(borrow)]
    tier: Option<&'a RawValue>,
}

/// The four prices of a `cost`-shaped object, with `field` (e.g. `cost.tiers[0]`) naming it in
/// reject details.
struct Prices {
    input: Option<Decimal>,
    output: Option<Decimal>,
    cache_read: Option<Decimal>,
    cache_write: Option<Decimal>,
}

impl Prices {
    fn of(field: &str, cost: &Cost) -> Result<Prices, Invalid> {
        let cache_read = cost.cache_read.or(cost.cached_read).or(cost.cached_input);
        let cache_write = cost.cache_write.or(cost.cached_write);
        Ok(Prices {
            input: fields::price(&format!("{field}.input"), cost.input)?,
            output: fields::price(&format!("{field}.output"), cost.output)?,
            cache_read: fields::price(&format!("{field}.cache_read"), cache_read)?,
            cache_write: fields::price(&format!("{field}.cache_write"), cache_write)?,
        })
    }

    fn from(self, min_context_tokens: i64) -> PriceTier {
        PriceTier {
            min_context_tokens,
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
        }
    }
}

/// What a tier entry's `tier` says it applies to.
#[derive(Deserialize)]
struct TierKind<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    size: Option<&'a RawValue>,
}

/// The threshold of `cost.context_over_200k`.
const CONTEXT_OVER_200K: i64 = 200_000;

/// `cost.tiers[]` entries of type `context` (see [`crate::sources::tiers`]); if there are none,
/// `cost.context_over_200k` as one tier at 200,000 tokens.
fn price_tiers(cost: &Cost) -> Result<Option<Vec<PriceTier>>, Invalid> {
    let mut found = Vec::new();
    for (index, entry) in tiers::entries("cost.tiers", cost.tiers)?.into_iter().enumerate() {
        let field = format!("cost.tiers[{index}]");
        let entry: Cost = tiers::object(&field, entry)?;
        let kind_field = format!("{field}.tier");
        let Some(kind) = fields::nested::<TierKind>(&kind_field, entry.tier)? else {
            return Err(Invalid::new(
                RejectReason::InvalidValue,
                format!("`{kind_field}` is absent or not an object: what the tier applies to is unknown"),
            ));
        };
        match fields::text(kind.kind).as_deref() {
            Some("context") => {
                let start = tiers::start(&format!("{kind_field}.size"), kind.size)?;
                found.push(Prices::of(&field, &entry)?.from(start));
            }
            // Another kind of tier (not a context threshold): kept in `data` only.
            Some(_) => {}
            None => {
                return Err(Invalid::new(
                    RejectReason::InvalidValue,
                    format!("`{kind_field}.type` is absent or not a string: what the tier applies to is unknown"),
                ))
            }
        }
    }
    if found.is_empty() {
        if let Some(over) = cost.context_over_200k.filter(|raw| raw.get() != "null") {
            let over: Cost = tiers::object("cost.context_over_200k", over)?;
            found.push(Prices::of("cost.context_over_200k", &over)?.from(CONTEXT_OVER_200K));
        }
    }
    tiers::sorted("cost.tiers", found)
}

#[derive(Deserialize)]
struct Modalities<'a> {
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    output: Option<&'a RawValue>,
}

/// One provider-model entry to a model. Reject details name the provider and the key, since
/// the reject's raw text (the record alone) does not contain them.
fn parse_record(provider_key: &str, model_key: &str, raw: &RawValue) -> Result<Model, Invalid> {
    read_record(provider_key, model_key, raw).map_err(|invalid| in_context(provider_key, model_key, invalid))
}

/// Names the provider and the model key in a reject of one model, and attaches the key.
fn in_context(provider_key: &str, model_key: &str, invalid: Invalid) -> Invalid {
    let detail = format!("provider `{provider_key}`, model `{model_key}`: {}", invalid.detail);
    Invalid { detail, ..invalid }.with_model_id(model_key)
}

fn read_record(provider_key: &str, model_key: &str, raw: &RawValue) -> Result<Model, Invalid> {
    let record: Record = fields::decode_record(raw)?;
    fields::reject_unstorable(raw.get(), None)?;
    if model_key.contains('\0') || provider_key.contains('\0') {
        return Err(Invalid::new(
            RejectReason::NulByte,
            "the provider key or the model key contains a NUL character",
        ));
    }
    if model_key.is_empty() {
        return Err(Invalid::new(RejectReason::MissingId, "the model key is empty"));
    }
    to_model(provider_key, model_key, raw, &record)
}

fn to_model(provider_key: &str, model_key: &str, raw: &RawValue, record: &Record) -> Result<Model, Invalid> {
    let mut model = Model::new(
        Source::ModelsDev,
        provider_key.to_string(),
        model_key.to_string(),
        raw.get().to_string(),
    );
    model.name = fields::text(record.name);
    if let Some(limit) = fields::nested::<Limit>("limit", record.limit)? {
        model.context_length = fields::count("limit.context", limit.context)?;
        model.max_output_tokens = fields::count("limit.output", limit.output)?;
    }
    if let Some(cost) = fields::nested::<Cost>("cost", record.cost)? {
        let prices = Prices::of("cost", &cost)?;
        model.input_price_per_mtok = prices.input;
        model.output_price_per_mtok = prices.output;
        model.cache_read_price_per_mtok = prices.cache_read;
        model.cache_write_price_per_mtok = prices.cache_write;
        model.price_tiers = price_tiers(&cost)?;
    }
    // `alpha`, `beta`, `deprecated` as the source writes it; absent or not a string: unknown.
    model.status = fields::text(record.status).filter(|status| !status.is_empty());
    if let Some(modalities) = fields::nested::<Modalities>("modalities", record.modalities)? {
        model.input_modalities = fields::text_list(modalities.input);
        model.output_modalities = fields::text_list(modalities.output);
    }
    model.supports_tools = fields::flag(record.tool_call);
    model.supports_reasoning = fields::flag(record.reasoning);
    model.open_weights = fields::flag(record.open_weights);
    model.release_date = fields::date(record.release_date);
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_fixtures;
    use crate::sources::tiers::tests::tier;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn find<'a>(page: &'a ParsedPage, provider: &str, model_id: &str) -> &'a Model {
        page.models
            .iter()
            .find(|model| model.provider == provider && model.model_id == model_id)
            .unwrap_or_else(|| panic!("no model {provider}/{model_id}"))
    }

    fn dec(text: &str) -> Option<Decimal> {
        Some(Decimal::from_str(text).unwrap())
    }

    #[test]
    fn url_appends_the_api_path() {
        assert_eq!(url("https://models.dev"), "https://models.dev/api.json");
        assert_eq!(url("http://127.0.0.1:9000/"), "http://127.0.0.1:9000/api.json");
    }

    #[test]
    fn every_entry_of_the_2026_catalogue_becomes_a_model() {
        let page = parse(&test_fixtures::read("modelsdev_api.json")).unwrap();
        assert_eq!(page.records(), 3_677);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
    }

    #[test]
    fn every_entry_of_the_2025_catalogue_becomes_a_model() {
        let page = parse(&test_fixtures::read("modelsdev_api_2025-11.json")).unwrap();
        assert_eq!(page.records(), 1_104);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        // The data itself has a month 16: an unreadable date is unknown, not a reject.
        let glm = find(&page, "baseten", "zai-org/GLM-4.6");
        assert!(glm.raw.contains(r#""release_date":"2025-16-09""#));
        assert_eq!(glm.release_date, None);
    }

    #[test]
    fn fixture_values_are_mapped_exactly() {
        let page = parse(&test_fixtures::read("modelsdev_api.json")).unwrap();

        let minimax = find(&page, "302ai", "MiniMax-M1");
        assert_eq!(minimax.input_price_per_mtok, dec("0.132"));
        assert_eq!(minimax.output_price_per_mtok, dec("1.254"));
        assert_eq!(minimax.context_length, Some(1_000_000));
        assert_eq!(minimax.max_output_tokens, Some(128_000));
        assert_eq!(minimax.release_date, NaiveDate::from_ymd_opt(2025, 6, 16));
        assert!(minimax.raw.starts_with(r#"{"name":"MiniMax-M1""#));

        let slashed = find(&page, "cloudflare-workers-ai", "@cf/baai/bge-large-en-v1.5");
        assert_eq!(slashed.provider, "cloudflare-workers-ai");

        let aliased = find(&page, "deepinfra", "MiniMaxAI/MiniMax-M2");
        assert_eq!(aliased.cache_read_price_per_mtok, dec("0.127"));
        let aliased_write = find(&page, "minimax", "MiniMax-M2.1");
        assert_eq!(aliased_write.cache_write_price_per_mtok, dec("0.375"));
        assert_eq!(aliased_write.cache_read_price_per_mtok, dec("0.03"));

        let coarse_date = find(&page, "abacus", "kimi-k2.5");
        assert_eq!(coarse_date.release_date, NaiveDate::from_ymd_opt(2026, 1, 1));
    }

    #[test]
    fn snapshot_of_selected_models() {
        let page = parse(&test_fixtures::read("modelsdev_api.json")).unwrap();
        let selected = [
            find(&page, "302ai", "MiniMax-M1"),
            find(&page, "cloudflare-workers-ai", "@cf/baai/bge-large-en-v1.5"),
            find(&page, "deepinfra", "MiniMaxAI/MiniMax-M2"),
            find(&page, "abacus", "kimi-k2.5"),
        ];
        insta::assert_json_snapshot!(selected);
    }

    #[test]
    fn garbage_and_wrong_shapes_fail_the_payload() {
        assert!(matches!(parse(b"<html>"), Err(PayloadError::InvalidJson(_))));
        assert!(matches!(parse(b"{\"a\":"), Err(PayloadError::InvalidJson(_))));
        assert!(matches!(parse(b"[]"), Err(PayloadError::UnexpectedShape(_))));
        assert!(matches!(parse(b"\"x\""), Err(PayloadError::UnexpectedShape(_))));
        assert_eq!(parse(b"{}").unwrap().records(), 0);
    }

    const GOOD: &str = r#"{"name":"Good","cost":{"input":1,"output":2},"limit":{"context":10,"output":5}}"#;

    /// One provider with a good model before and after `record`.
    fn page_around(record: &str) -> ParsedPage {
        let body = format!(r#"{{"p":{{"id":"p","models":{{"a":{GOOD},"bad":{record},"z":{GOOD}}}}}}}"#);
        let page = parse(body.as_bytes()).unwrap();
        let ids: Vec<&str> = page.models.iter().map(|m| m.model_id.as_str()).collect();
        assert!(ids.starts_with(&["a"]) && ids.ends_with(&["z"]), "{ids:?}");
        assert_eq!(page.records(), 3);
        page
    }

    fn reject_of(record: &str) -> (RejectReason, String) {
        let page = page_around(record);
        assert_eq!(page.rejects.len(), 1, "{record} gave {:?}", page.models);
        let reject = &page.rejects[0];
        assert_eq!(reject.raw, record);
        assert_eq!(reject.model_id.as_deref(), Some("bad"));
        (reject.reason, reject.detail.clone())
    }

    #[test]
    fn bad_records_are_rejected_with_the_right_reason() {
        let cases = [
            ("[1,2]", RejectReason::MalformedRecord),
            ("\"text\"", RejectReason::MalformedRecord),
            (r#"{"cost":{"input":"abc"}}"#, RejectReason::InvalidPrice),
            (r#"{"cost":{"input":-5}}"#, RejectReason::InvalidPrice),
            (r#"{"cost":{"output":1e400}}"#, RejectReason::InvalidPrice),
            (r#"{"cost":{"cached_input":-0.1}}"#, RejectReason::InvalidPrice),
            (r#"{"limit":{"context":-1}}"#, RejectReason::InvalidValue),
            (r#"{"limit":{"output":1e30}}"#, RejectReason::InvalidValue),
            (r#"{"name":"a\u0000b"}"#, RejectReason::NulByte),
            (r#"{"name":"a","name":"b"}"#, RejectReason::MalformedRecord),
        ];
        for (record, reason) in cases {
            assert_eq!(reject_of(record).0, reason, "{record}");
        }
        let (_, detail) = reject_of(r#"{"cost":{"input":"abc"}}"#);
        assert_eq!(
            detail,
            r#"provider `p`, model `bad`: `cost.input` is "abc", not a decimal number"#
        );
    }

    #[test]
    fn unexpected_types_and_new_fields_do_not_reject() {
        let record = r#"{"name":42,"tool_call":"yes","modalities":{"input":"text","output":["text"]},
            "limit":[1,2],"cost":{"input":0.5,"tiers":null,"context_over_200k":null},"status":7,
            "release_date":"someday","brand_new":{"deep":[1,{"x":null}]},"open_weights":true}"#;
        let page = page_around(record);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        let model = find(&page, "p", "bad");
        assert_eq!(model.name, None);
        assert_eq!(model.supports_tools, None);
        assert_eq!(model.input_modalities, None);
        assert_eq!(model.output_modalities, Some(vec!["text".to_string()]));
        assert_eq!(model.context_length, None);
        assert_eq!(model.input_price_per_mtok, dec("0.5"));
        assert_eq!(model.release_date, None);
        assert_eq!(model.open_weights, Some(true));
        assert_eq!(model.price_tiers, None);
        assert_eq!(model.status, None);
        assert_eq!(model.raw, record);
    }

    #[test]
    fn context_over_200k_is_one_exact_tier_at_200000() {
        let page = parse(&test_fixtures::read("modelsdev_api.json")).unwrap();
        let tiered: Vec<&Model> = page.models.iter().filter(|model| model.price_tiers.is_some()).collect();
        assert_eq!(tiered.len(), 64, "every entry with cost.context_over_200k");
        let opus = find(&page, "aihubmix", "claude-opus-4-6");
        assert_eq!(
            opus.price_tiers,
            Some(vec![tier(200_000, [Some("6"), Some("22"), Some("0.6"), Some("7.5")])])
        );
        assert_eq!(opus.input_price_per_mtok, dec("5"));
        assert_eq!(
            opus.price_tiers_json().as_deref(),
            Some(r#"[{"min_context_tokens":200000,"input":"6","output":"22","cache_read":"0.6","cache_write":"7.5"}]"#)
        );
        let sonnet = find(&page, "aihubmix", "claude-sonnet-4-6");
        assert_eq!(sonnet.price_tiers.as_ref().unwrap()[0].output, dec("22.5"));
        // Not every tier states every price: absent keys stay absent.
        let partial = tiered
            .iter()
            .find(|model| model.price_tiers.as_ref().unwrap()[0].cache_write.is_none())
            .expect("an entry whose context_over_200k has no cache_write");
        assert!(!partial.price_tiers_json().unwrap().contains("cache_write"));
    }

    #[test]
    fn status_values_of_the_fixtures_are_kept() {
        let count = |page: &ParsedPage, status: &str| {
            page.models
                .iter()
                .filter(|model| model.status.as_deref() == Some(status))
                .count()
        };
        let current = parse(&test_fixtures::read("modelsdev_api.json")).unwrap();
        assert_eq!((count(&current, "deprecated"), count(&current, "beta")), (19, 3));
        assert_eq!(current.models.iter().filter(|model| model.status.is_some()).count(), 22);
        let older = parse(&test_fixtures::read("modelsdev_api_2025-11.json")).unwrap();
        assert_eq!((count(&older, "deprecated"), count(&older, "alpha")), (17, 4));
    }

    #[test]
    fn cost_tiers_in_the_documented_shape_become_sorted_exact_tiers() {
        let record = r#"{"name":"Tiered","cost":{"input":5,"output":25,"cache_read":0.5,"cache_write":6.25,
            "tiers":[
              {"tier":{"type":"context","size":1000000},"input":"20.000","output":75},
              {"tier":{"type":"context","size":200000},"input":10,"output":37.5,"cache_read":1,"cache_write":12.5},
              {"tier":{"type":"batch","size":1},"input":2.5}
            ],
            "context_over_200k":{"input":999,"output":999}},"status":"beta"}"#;
        let page = page_around(record);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        let model = find(&page, "p", "bad");
        assert_eq!(
            model.price_tiers,
            Some(vec![
                tier(200_000, [Some("10"), Some("37.5"), Some("1"), Some("12.5")]),
                tier(1_000_000, [Some("20"), Some("75"), None, None]),
            ]),
            "tiers win over context_over_200k; a tier of another type is not a context tier"
        );
        assert_eq!(model.status.as_deref(), Some("beta"));
        assert_eq!(
            model.price_tiers_json().as_deref(),
            Some(
                r#"[{"min_context_tokens":200000,"input":"10","output":"37.5","cache_read":"1","cache_write":"12.5"},{"min_context_tokens":1000000,"input":"20","output":"75"}]"#
            )
        );
    }

    #[test]
    fn a_bad_tier_value_rejects_the_record_and_names_the_field() {
        let cases = [
            (
                r#"{"cost":{"tiers":[{"tier":{"type":"context","size":200000},"input":"ten"}]}}"#,
                RejectReason::InvalidPrice,
                r#"`cost.tiers[0].input` is "ten", not a decimal number"#,
            ),
            (
                r#"{"cost":{"tiers":[{"tier":{"type":"context","size":200000},"output":-1}]}}"#,
                RejectReason::InvalidPrice,
                "`cost.tiers[0].output` is -1, a price cannot be negative",
            ),
            (
                r#"{"cost":{"tiers":[{"tier":{"type":"context","size":"big"},"input":1}]}}"#,
                RejectReason::InvalidValue,
                r#"`cost.tiers[0].tier.size` is "big", not a decimal number"#,
            ),
            (
                r#"{"cost":{"tiers":[{"tier":{"type":"context"},"input":1}]}}"#,
                RejectReason::InvalidValue,
                "`cost.tiers[0].tier.size` is absent or null: the tier's threshold is unknown",
            ),
            (
                r#"{"cost":{"tiers":[{"input":1}]}}"#,
                RejectReason::InvalidValue,
                "`cost.tiers[0].tier` is absent or not an object: what the tier applies to is unknown",
            ),
            (
                r#"{"cost":{"tiers":[{"tier":{"size":5},"input":1}]}}"#,
                RejectReason::InvalidValue,
                "`cost.tiers[0].tier.type` is absent or not a string: what the tier applies to is unknown",
            ),
            (
                r#"{"cost":{"tiers":[5]}}"#,
                RejectReason::InvalidValue,
                "`cost.tiers[0]` is a JSON number (5), expected a price tier object",
            ),
            (
                r#"{"cost":{"tiers":{"200000":{"input":1}}}}"#,
                RejectReason::InvalidValue,
                r#"`cost.tiers` is a JSON object ({"200000":{"input":1}}), expected an array of price tiers"#,
            ),
            (
                r#"{"cost":{"tiers":[{"tier":{"type":"context","size":200000},"input":1},{"tier":{"type":"context","size":200000},"input":2}]}}"#,
                RejectReason::InvalidValue,
                "`cost.tiers` has two tiers from 200000 tokens: which prices apply is ambiguous",
            ),
            (
                r#"{"cost":{"context_over_200k":{"input":"abc"}}}"#,
                RejectReason::InvalidPrice,
                r#"`cost.context_over_200k.input` is "abc", not a decimal number"#,
            ),
            (
                r#"{"cost":{"context_over_200k":12}}"#,
                RejectReason::InvalidValue,
                "`cost.context_over_200k` is a JSON number (12), expected a price tier object",
            ),
        ];
        for (record, reason, detail) in cases {
            assert_eq!(
                reject_of(record),
                (reason, format!("provider `p`, model `bad`: {detail}")),
                "{record}"
            );
        }
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_a_nul() {
        let page = page_around(r#"{"name":"C:\\u0000"}"#);
        assert_eq!(find(&page, "p", "bad").name.as_deref(), Some(r"C:\u0000"));
    }

    #[test]
    fn malformed_providers_become_rejects_and_others_go_on() {
        let body = format!(
            r#"{{"broken":"yes","arr":{{"models":[{GOOD},{GOOD}]}},"str":{{"models":"none"}},
                "empty":{{"id":"empty"}},"ok":{{"models":{{"m":{GOOD},"":{GOOD}}}}}}}"#
        );
        let page = parse(body.as_bytes()).unwrap();
        assert_eq!(page.models.len(), 1);
        assert_eq!(page.models[0].model_id, "m");
        let reasons: Vec<RejectReason> = page.rejects.iter().map(|reject| reject.reason).collect();
        use RejectReason::*;
        assert_eq!(
            reasons,
            [
                MalformedRecord,
                MalformedRecord,
                MalformedRecord,
                MalformedRecord,
                MissingId
            ]
        );
        assert!(page.rejects[0].detail.contains("`broken`"));
        assert_eq!(page.rejects[1].raw, GOOD);
        assert!(page.rejects[3].detail.contains("`models` as a string"));
    }

    #[test]
    fn malformed_model_records_are_rejected_and_the_other_models_kept() {
        let deep = format!(r#"{{"name":"deep","x":{}{}}}"#, "[".repeat(5_000), "]".repeat(5_000));
        for record in [
            r#"{"name": "x", "cost": }"#,
            r#"{"name": "x" "cost": {}}"#,
            deep.as_str(),
        ] {
            let (reason, detail) = reject_of(record);
            assert_eq!(reason, RejectReason::MalformedRecord, "{record}");
            assert!(
                detail.starts_with("provider `p`, model `bad`: the record is "),
                "{detail}"
            );
        }
        let mut body = format!(r#"{{"p":{{"models":{{"a":{GOOD},"bad":"#).into_bytes();
        body.extend_from_slice(b"{\"name\":\"\xC3\"}");
        body.extend_from_slice(format!(r#","z":{GOOD}}}}}}}"#).as_bytes());
        let page = parse(&body).unwrap();
        assert_eq!(page.models.len(), 2);
        assert_eq!(page.rejects.len(), 1);
        assert_eq!(page.rejects[0].raw, "{\"name\":\"\u{FFFD}\"}");
        assert_eq!(page.rejects[0].model_id.as_deref(), Some("bad"));
        assert_eq!(
            page.rejects[0].detail,
            "provider `p`, model `bad`: the record is not UTF-8 text: not UTF-8 at byte 9"
        );
    }

    #[test]
    fn malformed_members_and_providers_are_rejected_and_others_go_on() {
        let body = format!(
            r#"{{"p1":{{"models":{{"a":{GOOD}, bad:{GOOD}, "z":{GOOD}}}}},
                "p2":{{"models":{{"b":{GOOD}}} x}},
                "p3":{{"models" {{"c":{GOOD}}}}},
                broken,
                "p4":{{"name":oops,"models":{{"d":{GOOD}}}}}}}"#
        );
        let page = parse(body.as_bytes()).unwrap();
        let ids: Vec<&str> = page.models.iter().map(|model| model.model_id.as_str()).collect();
        assert_eq!(ids, ["a", "z", "d"]);
        let rejects: Vec<(&str, &str)> = page
            .rejects
            .iter()
            .map(|reject| (reject.detail.as_str(), reject.raw.as_str()))
            .collect();
        assert_eq!(
            rejects[0],
            (
                "provider `p1`: a model cannot be read: the member does not start with a quoted key",
                format!("bad:{GOOD}").as_str()
            )
        );
        assert!(
            rejects[1]
                .0
                .starts_with("provider `p2` has `models` that cannot be read: "),
            "{}",
            rejects[1].0
        );
        assert!(rejects[1].1.starts_with(r#"{"models":{"b":"#));
        assert_eq!(
            rejects[2].0,
            "provider `p3` cannot be read: the member has no `:` after its key"
        );
        assert_eq!(
            rejects[3],
            (
                "a provider cannot be read: the member does not start with a quoted key",
                "broken"
            )
        );
        assert_eq!(rejects.len(), 4);
        assert!(page
            .rejects
            .iter()
            .all(|reject| reject.reason == RejectReason::MalformedRecord));
    }

    #[test]
    fn a_document_cut_short_fails_the_payload() {
        let body = format!(r#"{{"p":{{"models":{{"a":{GOOD},"b":{{"name":"cut"#);
        let error = parse(body.as_bytes()).unwrap_err();
        assert!(matches!(error, PayloadError::InvalidJson(_)));
        assert!(error.to_string().contains("cut short"), "{error}");
    }

    #[test]
    fn duplicate_model_keys_are_all_counted() {
        let body = format!(r#"{{"p":{{"models":{{"m":{GOOD},"m":{GOOD}}}}}}}"#);
        assert_eq!(parse(body.as_bytes()).unwrap().models.len(), 2);
    }
}
