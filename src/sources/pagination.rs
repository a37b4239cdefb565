//! Pagination, as pure decisions: given one response (its URL, its body, its `Link` header),
//! where is the next page, how many records did the page hold, and what total does the listing
//! state. The fetcher only calls these and acts on the answer, so every rule here is tested on
//! the recorded payloads without a server.
//!
//! Per source (DESIGN.md §9):
//! - Hugging Face: the `rel="next"` target of the `Link` header, resolved against the URL.
//! - OpenRouter: the body's top-level `links.next` (relative to the host) until it is null;
//!   `totalCount` / `total_count`, when stated, must equal the records fetched.
//! - Artificial Analysis: `?page=N` (1-based) until `pagination.has_more` is false or
//!   `pagination.page >= pagination.total_pages`; a body without `pagination` is one page.
//! - models.dev: one document.
//!
//! Every next-page URL must stay on the origin of the page that named it ([`same_origin`],
//! the rule redirects follow too): the fetcher sends the source's credential with every
//! request, so a next link elsewhere would hand it to whoever the API (or an attacker who
//! controls a response) names.

use serde_json::value::RawValue;
use url::Url;

use crate::model::Source;
use crate::sources::split::{self, Member};
use crate::sources::{fields, huggingface};

/// What one fetched page says about the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageStep {
    /// The next page's absolute URL, not yet checked against the origin (see [`same_origin`]).
    pub next: Option<Url>,
    /// Records in the page (every element of the listing's array, malformed ones included),
    /// when the listing's array could be split; the parser judges a body that cannot be split.
    pub records: Option<u64>,
    /// The size of the whole listing, as the body states it (OpenRouter `totalCount`).
    pub stated_total: Option<u64>,
}

/// Why the listing cannot be followed: the source fails with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaginationError {
    #[error("the next page {next} is on another origin than {current} (scheme, host and port must match); not followed, so no credential leaves")]
    OffOrigin { current: String, next: String },
    #[error("the next page link {link:?} is not a URL: {why}")]
    BadLink { link: String, why: String },
    #[error("`{field}` is {shown}, expected {expected}")]
    BadField {
        field: &'static str,
        shown: String,
        expected: &'static str,
    },
    #[error("asked for page {asked}, the API answered page {answered}")]
    WrongPage { asked: u64, answered: u64 },
    #[error("the listing is incomplete: it states {stated} records ({field}) but {fetched} were fetched")]
    CountMismatch {
        field: &'static str,
        stated: u64,
        fetched: u64,
    },
    #[error("the listing changed while it was paged: it stated {first} records, then {then}")]
    TotalChanged { first: u64, then: u64 },
}

/// What one page says: see [`PageStep`]. `current` is the URL the page was fetched from,
/// `link` its `Link` header (joined when sent several times).
pub fn next_page(source: Source, current: &Url, body: &[u8], link: Option<&str>) -> Result<PageStep, PaginationError> {
    match source {
        Source::ModelsDev => Ok(PageStep {
            next: None,
            records: None,
            stated_total: None,
        }),
        Source::HuggingFace => Ok(PageStep {
            next: link
                .and_then(huggingface::next_link)
                .map(|next| resolve(current, &next))
                .transpose()?,
            records: split::elements(body).ok().map(|items| items.len() as u64),
            stated_total: None,
        }),
        Source::OpenRouter => openrouter_step(current, body),
        Source::ArtificialAnalysis => artificial_analysis_step(current, body),
    }
}

/// The same origin (scheme, host and port) as `original`, or its upgrade from `http` to
/// `https` on the default ports (same host, and the credential gains TLS). The host alone is
/// not enough: HTTP clients strip `Authorization` when the port changes but not Artificial
/// Analysis' `x-api-key`, which would then reach whatever listens on another port of the host,
/// or travel in plain text after a downgrade. Redirects ([`crate::fetch`]) follow the same rule.
pub fn same_origin(original: &Url, target: &Url) -> bool {
    if original.host_str() != target.host_str() {
        return false;
    }
    match (original.scheme(), target.scheme()) {
        (from, to) if from == to => original.port_or_known_default() == target.port_or_known_default(),
        ("http", "https") => original.port().is_none() && target.port().is_none(),
        _ => false,
    }
}

/// `next` if it may be followed from `current`, else why not.
pub fn check_origin(current: &Url, next: Url) -> Result<Url, PaginationError> {
    if same_origin(current, &next) {
        Ok(next)
    } else {
        Err(PaginationError::OffOrigin {
            current: origin_text(current),
            next: next.to_string(),
        })
    }
}

/// `scheme://host:port` of a URL, for messages (never its path or query, which may carry a
/// token).
fn origin_text(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A possibly relative link resolved against the URL of the page that carried it.
fn resolve(current: &Url, link: &str) -> Result<Url, PaginationError> {
    current.join(link).map_err(|error| PaginationError::BadLink {
        link: fields::shown_text(link),
        why: error.to_string(),
    })
}

/// The URL of page `page` (1-based) of an Artificial Analysis listing: `url` with its `page`
/// query parameter set (other parameters kept).
pub fn with_page(url: &Url, page: u64) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name != "page")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let mut next = url.clone();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("page", &page.to_string());
    next
}

/// The `page` query parameter of a URL (1 when absent: the API's first page).
fn page_of(url: &Url) -> u64 {
    url.query_pairs()
        .find(|(name, _)| name == "page")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(1)
}

/// The top-level members of a listing body, or `None` when it is not an object that can be
/// split: the parser then fails the page with the precise reason, so pagination stays quiet.
fn envelope(body: &[u8]) -> Option<Vec<Member<'_>>> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    split::members(body).ok()
}

/// The value of the member `name`, as raw JSON (`None` when absent or unreadable).
fn member<'a>(members: &'a [Member<'a>], name: &str) -> Option<&'a RawValue> {
    let value = members.iter().find(|member| member.key.as_deref() == Ok(name))?.value;
    let text = std::str::from_utf8(value.bytes).ok()?;
    serde_json::from_str(text).ok()
}

/// The number of elements of the array member `name`, if it is one.
fn array_length(members: &[Member<'_>], name: &str) -> Option<u64> {
    let value = members.iter().find(|member| member.key.as_deref() == Ok(name))?.value;
    split::elements(value.bytes).ok().map(|items| items.len() as u64)
}

/// A count stated by the API: a non-negative whole number (or numeric string). JSON null is
/// "not stated"; anything else fails the source, since completeness cannot be checked.
fn stated_count(field: &'static str, raw: Option<&RawValue>) -> Result<Option<u64>, PaginationError> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Ok(None);
    };
    let bad = || PaginationError::BadField {
        field,
        shown: fields::shown(raw),
        expected: "a non-negative whole number",
    };
    match fields::count(field, Some(raw)) {
        Ok(Some(count)) => u64::try_from(count).map(Some).map_err(|_| bad()),
        Ok(None) => Ok(None),
        Err(_) => Err(bad()),
    }
}

fn openrouter_step(current: &Url, body: &[u8]) -> Result<PageStep, PaginationError> {
    let Some(members) = envelope(body) else {
        return Ok(PageStep {
            next: None,
            records: None,
            stated_total: None,
        });
    };
    let next = match member(&members, "links") {
        // The single-body shape of the list: no `links`, one page.
        None => None,
        Some(links) if links.get() == "null" => None,
        Some(links) => {
            #[derive(serde::Deserialize)]
            struct Links<'a> {
                #[serde(borrow)]
                next: Option<&'a RawValue>,
            }
            let bad_links = |expected| PaginationError::BadField {
                field: "links.next",
                shown: fields::shown(links),
                expected,
            };
            let links: Links = serde_json::from_str(links.get()).map_err(|_| bad_links("an object with `next`"))?;
            match links.next {
                None => None,
                Some(next) => match fields::text(Some(next)) {
                    Some(next) if next.is_empty() => None,
                    Some(next) => Some(resolve(current, &next)?),
                    None => {
                        return Err(PaginationError::BadField {
                            field: "links.next",
                            shown: fields::shown(next),
                            expected: "a URL or null",
                        })
                    }
                },
            }
        }
    };
    let stated_total = match stated_count("totalCount", member(&members, "totalCount"))? {
        Some(total) => Some(total),
        None => stated_count("total_count", member(&members, "total_count"))?,
    };
    Ok(PageStep {
        next,
        records: array_length(&members, "data"),
        stated_total,
    })
}

fn artificial_analysis_step(current: &Url, body: &[u8]) -> Result<PageStep, PaginationError> {
    let one_page = PageStep {
        next: None,
        records: None,
        stated_total: None,
    };
    let Some(members) = envelope(body) else {
        return Ok(one_page);
    };
    let records = array_length(&members, "data");
    let pagination = match member(&members, "pagination") {
        None => return Ok(PageStep { records, ..one_page }),
        Some(raw) if raw.get() == "null" => return Ok(PageStep { records, ..one_page }),
        Some(raw) => raw,
    };
    #[derive(serde::Deserialize)]
    struct Pagination<'a> {
        #[serde(borrow)]
        page: Option<&'a RawValue>,
        #[serde(borrow)]
        total_pages: Option<&'a RawValue>,
        #[serde(borrow)]
        has_more: Option<&'a RawValue>,
    }
    let pagination: Pagination = serde_json::from_str(pagination.get()).map_err(|_| PaginationError::BadField {
        field: "pagination",
        shown: fields::shown(pagination),
        expected: "an object with page, total_pages and has_more",
    })?;
    let asked = page_of(current);
    let answered = stated_count("pagination.page", pagination.page)?;
    if let Some(answered) = answered.filter(|answered| *answered != asked) {
        return Err(PaginationError::WrongPage { asked, answered });
    }
    let total_pages = stated_count("pagination.total_pages", pagination.total_pages)?;
    let has_more = match pagination.has_more.map(|raw| raw.get()) {
        None | Some("null") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(PaginationError::BadField {
                field: "pagination.has_more",
                shown: pagination.has_more.map(fields::shown).unwrap_or_default(),
                expected: "true or false",
            })
        }
    };
    let last = has_more == Some(false) || total_pages.is_some_and(|total| asked >= total);
    // Neither says there is more: nothing to follow.
    let more = !last && (has_more == Some(true) || total_pages.is_some());
    Ok(PageStep {
        next: more.then(|| with_page(current, asked + 1)),
        records,
        stated_total: None,
    })
}

/// Records fetched so far against the total the listing states: a pure ledger the fetcher
/// keeps (and hands over to a restarted fetcher, inside its resume position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingCount {
    /// Records in the pages before the next one.
    pub records: u64,
    /// The total the first page that stated one stated.
    pub stated_total: Option<u64>,
}

impl ListingCount {
    /// Adds one page. A total that differs from an earlier page's means the listing moved
    /// under the pager (offsets shift: records may be skipped or listed twice).
    pub fn add(&mut self, step: &PageStep) -> Result<(), PaginationError> {
        self.records += step.records.unwrap_or(0);
        match (self.stated_total, step.stated_total) {
            (Some(first), Some(then)) if first != then => Err(PaginationError::TotalChanged { first, then }),
            (None, Some(total)) => {
                self.stated_total = Some(total);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// After the last page: the fetched count must be the stated total.
    pub fn check_complete(&self, source: Source) -> Result<(), PaginationError> {
        match self.stated_total {
            Some(stated) if stated != self.records => Err(PaginationError::CountMismatch {
                field: match source {
                    Source::OpenRouter => "totalCount",
                    _ => "total",
                },
                stated,
                fetched: self.records,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::test_fixtures;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn origins_match_on_scheme_host_and_port_or_an_upgrade_to_https() {
        let allowed = |from: &str, to: &str| same_origin(&url(from), &url(to));
        assert!(allowed("https://a.example/x", "https://a.example/y"));
        assert!(allowed("http://127.0.0.1:9000/x", "http://127.0.0.1:9000/y"));
        assert!(allowed("http://a.example/x", "https://a.example/x"));
        assert!(allowed("https://a.example/x", "https://a.example:443/y"));
        assert!(!allowed("https://a.example/x", "https://b.example/x"));
        assert!(!allowed("https://a.example/x", "https://sub.a.example/x"));
        assert!(!allowed("http://127.0.0.1:9000/x", "http://127.0.0.1:9001/x"));
        assert!(!allowed("http://127.0.0.1:9000/x", "http://127.0.0.2:9000/x"));
        assert!(!allowed("https://a.example/x", "http://a.example/x"));
        assert!(!allowed("http://a.example:8080/x", "https://a.example/x"));
        assert!(!allowed("https://a.example/x", "ftp://a.example/x"));
    }

    #[test]
    fn an_off_origin_next_is_refused_with_the_origins_only() {
        let current = url("http://127.0.0.1:9000/api/models?token=secret");
        let error = check_origin(&current, url("http://127.0.0.1:9001/api/models?cursor=2")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the next page http://127.0.0.1:9001/api/models?cursor=2 is on another origin than \
             http://127.0.0.1:9000 (scheme, host and port must match); not followed, so no credential leaves"
        );
        let same = url("http://127.0.0.1:9000/api/models?cursor=2");
        assert_eq!(check_origin(&current, same.clone()), Ok(same));
    }

    #[test]
    fn openrouter_follows_links_next_relative_to_the_host_and_reads_the_total() {
        let current = url("http://127.0.0.1:9000/api/v1/models");
        let page1 = next_page(
            Source::OpenRouter,
            &current,
            &test_fixtures::read("openrouter_models_page1.json"),
            None,
        )
        .unwrap();
        assert_eq!(
            page1.next.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:9000/api/v1/models?offset=200&limit=200")
        );
        assert_eq!((page1.records, page1.stated_total), (Some(200), Some(364)));
        let page2 = next_page(
            Source::OpenRouter,
            page1.next.as_ref().unwrap(),
            &test_fixtures::read("openrouter_models_page2.json"),
            None,
        )
        .unwrap();
        assert_eq!(
            (&page2.next, page2.records, page2.stated_total),
            (&None, Some(164), Some(364))
        );

        let mut count = ListingCount::default();
        count.add(&page1).unwrap();
        count.add(&page2).unwrap();
        assert_eq!(count.check_complete(Source::OpenRouter), Ok(()));
    }

    #[test]
    fn openrouter_single_body_is_one_page_without_a_total() {
        let step = next_page(
            Source::OpenRouter,
            &url("https://openrouter.ai/api/v1/models"),
            &test_fixtures::read("openrouter_models.json"),
            None,
        )
        .unwrap();
        assert_eq!((step.next, step.records, step.stated_total), (None, Some(364), None));
    }

    #[test]
    fn openrouter_link_forms() {
        let current = url("https://openrouter.ai/api/v1/models?offset=0");
        let step = |body: &str| next_page(Source::OpenRouter, &current, body.as_bytes(), None);
        assert_eq!(step(r#"{"data":[],"links":{"next":null}}"#).unwrap().next, None);
        assert_eq!(step(r#"{"data":[],"links":null}"#).unwrap().next, None);
        assert_eq!(step(r#"{"data":[],"links":{}}"#).unwrap().next, None);
        assert_eq!(
            step(r#"{"data":[1,2],"links":{"next":"?offset=2"}}"#)
                .unwrap()
                .next
                .map(String::from),
            Some("https://openrouter.ai/api/v1/models?offset=2".to_string())
        );
        // An absolute link elsewhere is resolved as written; the origin check refuses it.
        let elsewhere = step(r#"{"data":[],"links":{"next":"https://evil.example/api/v1/models"}}"#)
            .unwrap()
            .next
            .unwrap();
        assert!(check_origin(&current, elsewhere).is_err());
        assert_eq!(step(r#"{"data":[1],"total_count":"7"}"#).unwrap().stated_total, Some(7));
        for bad in [
            r#"{"data":[],"links":{"next":42}}"#,
            r#"{"data":[],"links":"next"}"#,
            r#"{"data":[],"totalCount":-1}"#,
            r#"{"data":[],"totalCount":"many"}"#,
            r#"{"data":[],"totalCount":3.5}"#,
        ] {
            assert!(
                matches!(step(bad), Err(PaginationError::BadField { .. })),
                "{bad}: {:?}",
                step(bad)
            );
        }
        // A body that is not an object is the parser's to judge.
        assert_eq!(
            step("not json").unwrap(),
            PageStep {
                next: None,
                records: None,
                stated_total: None
            }
        );
    }

    #[test]
    fn a_total_that_differs_from_the_records_fetched_is_an_incomplete_listing() {
        let page = |records, stated_total| PageStep {
            next: None,
            records: Some(records),
            stated_total,
        };
        let mut count = ListingCount::default();
        count.add(&page(200, Some(365))).unwrap();
        count.add(&page(164, Some(365))).unwrap();
        assert_eq!(
            count.check_complete(Source::OpenRouter).unwrap_err().to_string(),
            "the listing is incomplete: it states 365 records (totalCount) but 364 were fetched"
        );
        let mut moved = ListingCount::default();
        moved.add(&page(200, Some(364))).unwrap();
        assert_eq!(
            moved.add(&page(164, Some(365))),
            Err(PaginationError::TotalChanged { first: 364, then: 365 })
        );
        let mut unstated = ListingCount::default();
        unstated.add(&page(10, None)).unwrap();
        assert_eq!(unstated.check_complete(Source::OpenRouter), Ok(()));
    }

    #[test]
    fn artificial_analysis_pages_until_has_more_is_false() {
        let first = with_page(&url("http://127.0.0.1:9000/api/v2/language/models/free"), 1);
        assert_eq!(
            first.as_str(),
            "http://127.0.0.1:9000/api/v2/language/models/free?page=1"
        );
        let page1 = next_page(
            Source::ArtificialAnalysis,
            &first,
            &test_fixtures::read("aa_language_models_free_page1.json"),
            None,
        )
        .unwrap();
        assert_eq!(
            page1.next.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:9000/api/v2/language/models/free?page=2")
        );
        assert_eq!(page1.records, Some(6));
        let page2 = next_page(
            Source::ArtificialAnalysis,
            page1.next.as_ref().unwrap(),
            &test_fixtures::read("aa_language_models_free_page2.json"),
            None,
        )
        .unwrap();
        assert_eq!((page2.next, page2.records), (None, Some(6)));
        // The retired endpoint's body has no `pagination`: one page.
        let legacy = next_page(
            Source::ArtificialAnalysis,
            &url("https://artificialanalysis.ai/api/v2/data/llms/models"),
            &test_fixtures::read("aa_models.json"),
            None,
        )
        .unwrap();
        assert_eq!((legacy.next, legacy.records), (None, Some(12)));
    }

    #[test]
    fn artificial_analysis_stop_rules() {
        let at = |page: u64| with_page(&url("https://artificialanalysis.ai/api/v2/language/models?x=1"), page);
        let next = |page: u64, pagination: &str| {
            let body = format!(r#"{{"data":[],"pagination":{pagination}}}"#);
            next_page(Source::ArtificialAnalysis, &at(page), body.as_bytes(), None).map(|step| step.next)
        };
        assert_eq!(
            next(1, r#"{"page":1,"total_pages":3,"has_more":true}"#).unwrap(),
            Some(at(2))
        );
        assert_eq!(
            at(2).as_str(),
            "https://artificialanalysis.ai/api/v2/language/models?x=1&page=2"
        );
        // has_more false wins over total_pages, and page >= total_pages stops even with has_more.
        assert_eq!(next(1, r#"{"page":1,"total_pages":3,"has_more":false}"#).unwrap(), None);
        assert_eq!(next(3, r#"{"page":3,"total_pages":3,"has_more":true}"#).unwrap(), None);
        assert_eq!(next(2, r#"{"total_pages":3}"#).unwrap(), Some(at(3)));
        assert_eq!(next(2, r#"{"has_more":true}"#).unwrap(), Some(at(3)));
        assert_eq!(next(2, r#"{"page":2}"#).unwrap(), None);
        assert_eq!(next(1, "null").unwrap(), None);
        assert_eq!(
            next(2, r#"{"page":1,"total_pages":3,"has_more":true}"#),
            Err(PaginationError::WrongPage { asked: 2, answered: 1 })
        );
        assert!(matches!(
            next(1, r#"{"page":1,"has_more":"yes"}"#),
            Err(PaginationError::BadField {
                field: "pagination.has_more",
                ..
            })
        ));
        assert!(matches!(
            next(1, r#"[1]"#),
            Err(PaginationError::BadField {
                field: "pagination",
                ..
            })
        ));
    }

    #[test]
    fn hugging_face_resolves_the_link_header_and_counts_items() {
        let current = url("http://127.0.0.1:9000/api/models?limit=2");
        let step = next_page(
            Source::HuggingFace,
            &current,
            br#"[{"id":"a/b"},{"id":"c/d"}]"#,
            Some(r#"</api/models?limit=2&cursor=abc>; rel="next""#),
        )
        .unwrap();
        assert_eq!(
            step.next.as_ref().map(Url::as_str),
            Some("http://127.0.0.1:9000/api/models?limit=2&cursor=abc")
        );
        assert_eq!(step.records, Some(2));
        let elsewhere = next_page(
            Source::HuggingFace,
            &current,
            b"[]",
            Some(r#"<http://127.0.0.1:9001/api/models?cursor=abc>; rel="next""#),
        )
        .unwrap();
        assert!(matches!(
            check_origin(&current, elsewhere.next.unwrap()),
            Err(PaginationError::OffOrigin { .. })
        ));
        let last = next_page(Source::HuggingFace, &current, b"[]", None).unwrap();
        assert_eq!(last.next, None);
    }
}
