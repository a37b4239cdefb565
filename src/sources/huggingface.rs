//! Hugging Face Hub: the model listing, paged by a cursor in the `Link` header.
//!
//! `GET {base}/api/models?sort=downloads&direction=-1&limit=N` answers a JSON array of models;
//! the next page's URL comes in `Link: <...>; rel="next"`. `model_id` is the repository id,
//! `provider` its author (empty for legacy ids without an owner, such as `gpt2`). Every model
//! on the Hub has published weights.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Model, ParsedPage, Source};
use crate::sources::fields::{self, Invalid, PageBuilder};
use crate::sources::PayloadError;

/// The path of the model listing, appended to the configured base URL.
pub const LIST_PATH: &str = "/api/models";

/// The most items the Hub returns in one page.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// What to list: where, in which order and with which filters (e.g.
/// `("pipeline_tag", "text-generation")`, `("library", "transformers")`,
/// `("author", "meta-llama")`), sent as query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The listing's path under the base URL, [`LIST_PATH`] unless configured otherwise.
    pub path: String,
    /// The field to sort by (`downloads`, `likes`, `trendingScore`, ...); empty for the Hub's
    /// default order.
    pub sort: String,
    /// `-1` for descending, `1` for ascending.
    pub direction: i32,
    pub filters: Vec<(String, String)>,
}

impl Default for ListQuery {
    fn default() -> ListQuery {
        ListQuery {
            path: LIST_PATH.to_string(),
            sort: "downloads".to_string(),
            direction: -1,
            filters: Vec::new(),
        }
    }
}

/// The URL of the first page of the listing under `base_url` (e.g. `https://huggingface.co`):
/// `{base}/api/models?sort=downloads&direction=-1&limit={limit}` then the filters, every
/// name and value percent-encoded. `limit` is the page size (at most [`MAX_PAGE_SIZE`], fewer
/// when `max_models` asks for fewer). Later pages follow [`next_link`].
pub fn first_page_url(base_url: &str, query: &ListQuery, limit: u32) -> String {
    let mut parameters = url::form_urlencoded::Serializer::new(String::new());
    if !query.sort.is_empty() {
        parameters.append_pair("sort", &query.sort);
        parameters.append_pair("direction", &query.direction.to_string());
    }
    parameters.append_pair("limit", &limit.to_string());
    for (name, value) in &query.filters {
        parameters.append_pair(name, value);
    }
    format!(
        "{}/{}?{}",
        base_url.trim_end_matches('/'),
        query.path.trim_start_matches('/'),
        parameters.finish()
    )
}

/// The target of the `rel="next"` link in an RFC 8288 `Link` header value, as written (it may
/// be relative: [`crate::sources::pagination`] resolves it). Several links may be comma-separated (or several
/// header values joined with commas); parameters may come in any order, `rel` may be quoted or
/// not and may list several space-separated relation types.
pub fn next_link(link_header: &str) -> Option<String> {
    parse_links(link_header)
        .into_iter()
        .find(|link| link.rels.iter().any(|rel| rel.eq_ignore_ascii_case("next")))
        .map(|link| link.target)
}

/// One link-value of a `Link` header.
#[derive(Debug, PartialEq, Eq)]
struct Link {
    target: String,
    rels: Vec<String>,
}

/// Splits a `Link` header value into links. Malformed parts are skipped, not fatal: a header
/// we cannot read just means there is no next page we can follow.
fn parse_links(header: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return links;
        }
        let Some(after_open) = rest.strip_prefix('<') else {
            rest = rest.split_once(',').map_or("", |(_, after)| after);
            continue;
        };
        let Some((target, after_target)) = after_open.split_once('>') else {
            return links;
        };
        let mut link = Link {
            target: target.trim().to_string(),
            rels: Vec::new(),
        };
        rest = after_target;
        while let Some(after_semicolon) = rest.trim_start().strip_prefix(';') {
            let (name, value, after_parameter) = parse_parameter(after_semicolon);
            if name.eq_ignore_ascii_case("rel") {
                link.rels.extend(value.split_whitespace().map(str::to_string));
            }
            rest = after_parameter;
        }
        links.push(link);
    }
}

/// Reads `name[=value]` after a `;`, where the value is a token or a quoted string (which may
/// hold `,` and `;`). Returns the name, the unquoted value and the text after the parameter.
fn parse_parameter(text: &str) -> (&str, String, &str) {
    let name_end = text.find(['=', ';', ',']).unwrap_or(text.len());
    let name = text[..name_end].trim();
    let Some(after_equals) = text[name_end..].strip_prefix('=') else {
        return (name, String::new(), &text[name_end..]);
    };
    let after_equals = after_equals.trim_start();
    let Some(quoted) = after_equals.strip_prefix('"') else {
        let value_end = after_equals.find([';', ',']).unwrap_or(after_equals.len());
        return (
            name,
            after_equals[..value_end].trim().to_string(),
            &after_equals[value_end..],
        );
    };
    let mut value = String::new();
    let mut characters = quoted.char_indices();
    while let Some((index, character)) = characters.next() {
        match character {
            '"' => return (name, value, &quoted[index + 1..]),
            '\\' => value.extend(characters.next().map(|(_, escaped)| escaped)),
            _ => value.push(character),
        }
    }
    (name, value, "")
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow, rename = "modelId")]
    model_id: Option<&'a RawValue>,
    #[serde(borrow)]
    author: Option<&'a RawValue>,
    #[serde(borrow)]
    downloads: Option<&'a RawValue>,
    #[serde(borrow)]
    likes: Option<&'a RawValue>,
    #[serde(borrow, rename = "createdAt")]
    created_at: Option<&'a RawValue>,
}

/// Turns one page of the listing into one model (or reject) per element.
pub fn parse(body: &[u8]) -> Result<ParsedPage, PayloadError> {
    let records = fields::document_elements(body, "an array of models")?;
    let mut page = PageBuilder::new(Source::HuggingFace);
    for record in records {
        page.push_slice(record, parse_record);
    }
    Ok(page.finish())
}

fn parse_record(raw: &RawValue) -> Result<Model, Invalid> {
    let record: Record = fields::decode_record(raw)?;
    // `modelId` is the older name of `id`; listings still send both.
    let id = fields::required_id("id", record.id)
        .or_else(|invalid| fields::required_id("modelId", record.model_id).map_err(|_| invalid));
    fields::reject_unstorable(raw.get(), id.as_ref().ok())?;
    let model_id = id?;
    to_model(model_id.clone(), raw, &record).map_err(|invalid| invalid.with_model_id(&model_id))
}

fn to_model(model_id: String, raw: &RawValue, record: &Record) -> Result<Model, Invalid> {
    // `author` comes with `full=true` listings; otherwise the owner is the id's prefix.
    let provider = fields::text(record.author)
        .filter(|author| !author.is_empty())
        .unwrap_or_else(|| fields::owner_of(&model_id).to_string());
    let mut model = Model::new(Source::HuggingFace, provider, model_id, raw.get().to_string());
    model.downloads = fields::count("downloads", record.downloads)?;
    model.likes = fields::count("likes", record.likes)?;
    model.release_date = fields::date(record.created_at);
    model.open_weights = Some(true);
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RejectReason;
    use crate::sources::test_fixtures;
    use chrono::NaiveDate;

    fn find<'a>(page: &'a ParsedPage, model_id: &str) -> &'a Model {
        page.models
            .iter()
            .find(|model| model.model_id == model_id)
            .unwrap_or_else(|| panic!("no model {model_id}"))
    }

    #[test]
    fn first_page_url_sorts_limits_and_encodes_filters() {
        let query = ListQuery {
            filters: vec![
                ("pipeline_tag".to_string(), "text-generation".to_string()),
                ("search".to_string(), "llama 3&4/ü".to_string()),
            ],
            ..ListQuery::default()
        };
        assert_eq!(
            first_page_url("https://huggingface.co/", &query, 1000),
            "https://huggingface.co/api/models?sort=downloads&direction=-1&limit=1000\
             &pipeline_tag=text-generation&search=llama+3%264%2F%C3%BC"
        );
        let unsorted = ListQuery {
            sort: String::new(),
            path: "api/models".to_string(),
            ..ListQuery::default()
        };
        assert_eq!(
            first_page_url("http://127.0.0.1:9000", &unsorted, 5),
            "http://127.0.0.1:9000/api/models?limit=5"
        );
    }

    #[test]
    fn next_link_finds_rel_next_in_any_form() {
        let next = "https://huggingface.co/api/models?cursor=abc&limit=1000";
        let cases = [
            format!(r#"<{next}>; rel="next""#),
            format!("<{next}>; rel=next"),
            format!(r#"<{next}>;rel="next""#),
            format!(r#"<https://x/prev>; rel="prev", <{next}>; rel="next""#),
            format!(r#"<{next}>; title="a, b; c"; rel="next last""#),
            format!(r#"<https://x/first>; rel=first,<{next}>; type="x"; REL="Next""#),
            format!(r#"  <{next}> ; rel = "next" "#),
        ];
        for header in &cases {
            assert_eq!(next_link(header).as_deref(), Some(next), "{header}");
        }
    }

    #[test]
    fn next_link_is_none_without_a_next_relation() {
        for header in [
            "",
            r#"<https://x/prev>; rel="prev""#,
            r#"<https://x/a>; rel="nextish""#,
            "garbage, more garbage",
            r#"<https://x/unterminated; rel="next""#,
            r#"<https://x/a>; title="next""#,
        ] {
            assert_eq!(next_link(header), None, "{header}");
        }
        assert_eq!(
            next_link(r#"junk, <https://x/n>; rel="next""#).as_deref(),
            Some("https://x/n")
        );
    }

    #[test]
    fn every_item_of_the_synthetic_listing_becomes_a_model() {
        let page = parse(&test_fixtures::read("hf_models.json")).unwrap();
        assert_eq!(page.records(), 2_500);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        let gpt2 = find(&page, "gpt2");
        assert_eq!(gpt2.provider, "");
        assert_eq!(gpt2.downloads, Some(3_875_382));
        assert_eq!(gpt2.likes, Some(1_569));
        assert_eq!(gpt2.release_date, NaiveDate::from_ymd_opt(2021, 12, 27));
        assert_eq!(gpt2.open_weights, Some(true));
        assert_eq!(gpt2.name, None);
        assert_eq!(find(&page, "org-1/model-1").provider, "org-1");
    }

    #[test]
    fn every_item_of_the_real_sample_becomes_a_model() {
        let page = parse(&test_fixtures::read("hf_models_real_sample.json")).unwrap();
        assert_eq!(page.records(), 2);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        let kimi = find(&page, "moonshotai/Kimi-K2-Thinking");
        assert_eq!(kimi.provider, "moonshotai");
        assert_eq!(kimi.downloads, Some(5_119));
        assert_eq!(kimi.likes, Some(578));
        assert_eq!(kimi.release_date, NaiveDate::from_ymd_opt(2025, 11, 4));
    }

    #[test]
    fn snapshot_of_selected_models() {
        let listing = parse(&test_fixtures::read("hf_models.json")).unwrap();
        let sample = parse(&test_fixtures::read("hf_models_real_sample.json")).unwrap();
        let selected = [
            find(&listing, "gpt2"),
            find(&listing, "org-1/model-1"),
            &sample.models[0],
            &sample.models[1],
        ];
        insta::assert_json_snapshot!(selected);
    }

    #[test]
    fn garbage_and_wrong_shapes_fail_the_payload() {
        assert!(matches!(parse(b"Rate limited"), Err(PayloadError::InvalidJson(_))));
        assert!(matches!(parse(b"[{\"id\":"), Err(PayloadError::InvalidJson(_))));
        assert!(matches!(
            parse(br#"{"error":"Invalid credentials"}"#),
            Err(PayloadError::UnexpectedShape(_))
        ));
        assert!(matches!(parse(b"null"), Err(PayloadError::UnexpectedShape(_))));
        assert_eq!(parse(b"[]").unwrap().records(), 0);
    }

    const GOOD: &str = r#"{"id":"org/good","downloads":10,"likes":1}"#;

    fn page_around(record: &str) -> ParsedPage {
        let body = format!("[{GOOD},{record},{GOOD}]");
        let page = parse(body.as_bytes()).unwrap();
        assert_eq!(page.records(), 3);
        assert_eq!(page.models.first().map(|m| m.model_id.as_str()), Some("org/good"));
        assert_eq!(page.models.last().map(|m| m.model_id.as_str()), Some("org/good"));
        page
    }

    #[test]
    fn bad_records_are_rejected_with_the_right_reason() {
        let cases = [
            ("\"org/model\"", RejectReason::MalformedRecord),
            ("null", RejectReason::MalformedRecord),
            (r#"{"downloads":1}"#, RejectReason::MissingId),
            (r#"{"id":"","modelId":null}"#, RejectReason::MissingId),
            (r#"{"id":"a/b","downloads":-1}"#, RejectReason::InvalidValue),
            (r#"{"id":"a/b","likes":1e400}"#, RejectReason::InvalidValue),
            (r#"{"id":"a/b","downloads":"many"}"#, RejectReason::InvalidValue),
            (
                r#"{"id":"a/b","downloads":99999999999999999999}"#,
                RejectReason::InvalidValue,
            ),
            (r#"{"id":"a/b","cardData":{"license":"\u0000"}}"#, RejectReason::NulByte),
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
        let cases = [
            r#"{"id": "a/b", "likes": }"#,
            r#"{"id": "a/b" "x": 1}"#,
            r#"{"id":"a/b","tags":[1 2]}"#,
            r#"{"id":"a/b","likes":tru}"#,
            r#"{"id":"a/b",}"#,
            r#"{"id":"a/b","x":"\x"}"#,
            "{\"id\":\"a/b\",\"x\":\"tab\there\"}",
            "{\"id\":\"a/b\",\"x\":\"\0\"}",
            // A missing comma joins two records into one reject that holds both.
            r#"{"id":"a/b"} {"id":"c/d"}"#,
        ];
        for record in cases {
            let page = page_around(record);
            assert_eq!(page.rejects.len(), 1, "{record}");
            let reject = &page.rejects[0];
            assert_eq!(reject.reason, RejectReason::MalformedRecord, "{record}");
            assert_eq!(reject.raw, record);
            assert_eq!(reject.model_id, None);
            assert!(
                reject.detail.starts_with("the record is not valid JSON: "),
                "{record}: {}",
                reject.detail
            );
        }
        let empty = page_around("");
        assert_eq!(empty.rejects[0].reason, RejectReason::MalformedRecord);
        assert!(empty.rejects[0].detail.starts_with("the record is empty"));
    }

    #[test]
    fn a_record_that_is_not_utf8_is_rejected_alone() {
        let mut body = format!("[{GOOD},").into_bytes();
        body.extend_from_slice(b"{\"id\":\"org/caf\xE9\",\"likes\":1}");
        body.extend_from_slice(format!(",{GOOD}]").as_bytes());
        let page = parse(&body).unwrap();
        assert_eq!(page.models.len(), 2);
        assert_eq!(page.rejects.len(), 1);
        let reject = &page.rejects[0];
        assert_eq!(reject.reason, RejectReason::MalformedRecord);
        assert_eq!(reject.raw, "{\"id\":\"org/caf\u{FFFD}\",\"likes\":1}");
        assert_eq!(reject.detail, "the record is not UTF-8 text: not UTF-8 at byte 14");
    }

    #[test]
    fn a_deeply_nested_record_is_rejected_alone() {
        for levels in [5_000, 100_000] {
            let deep = format!(r#"{{"id":"deep","x":{}{}}}"#, "[".repeat(levels), "]".repeat(levels));
            let body = format!(r#"[{deep}, {{"id":"ok"}}]"#);
            let page = parse(body.as_bytes()).unwrap();
            let ids: Vec<&str> = page.models.iter().map(|model| model.model_id.as_str()).collect();
            assert_eq!(ids, ["ok"]);
            assert_eq!(page.rejects.len(), 1);
            let reject = &page.rejects[0];
            assert_eq!(reject.reason, RejectReason::MalformedRecord);
            assert_eq!(reject.raw, deep);
            assert_eq!(
                reject.detail,
                format!(
                    "the record is nested {} levels deep, deeper than the 64 levels accepted",
                    levels + 1
                )
            );
        }
    }

    #[test]
    fn a_body_cut_short_fails_the_page() {
        for body in [
            format!("[{GOOD},{GOOD}"),
            format!("[{GOOD},{{\"id\":\"a/b\",\"x\":[1,2"),
            format!("[{GOOD},{{\"id\":\"a/b\",\"x\":\"cut"),
        ] {
            let error = parse(body.as_bytes()).unwrap_err();
            assert!(matches!(error, PayloadError::InvalidJson(_)), "{body}");
            assert!(error.to_string().contains("cut short"), "{error}");
        }
    }

    #[test]
    fn model_id_falls_back_and_author_wins() {
        let page = page_around(r#"{"modelId":"old/name","author":"Owner","createdAt":42}"#);
        let model = &page.models[1];
        assert_eq!(model.model_id, "old/name");
        assert_eq!(model.provider, "Owner");
        assert_eq!(model.release_date, None);
        assert_eq!(model.downloads, None);
    }

    #[test]
    fn new_fields_and_unexpected_types_do_not_reject() {
        let record = r#"{"id":"a/b","gated":"manual","tags":"x","siblings":[{"rfilename":"x"}],
            "author":7,"createdAt":"not a date","widgetData":{"\\u0000":1}}"#;
        let page = page_around(record);
        assert!(page.rejects.is_empty(), "{:?}", page.rejects);
        assert_eq!(page.models[1].provider, "a");
        assert_eq!(page.models[1].raw, record);
    }
}
