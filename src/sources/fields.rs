//! Field readers shared by the four parsers.
//!
//! Every parser splits its payload into raw record texts and reads each record's fields with
//! these functions, so all sources agree on what a usable value is:
//! - descriptive fields (names, flags, modalities, dates) of an unexpected type are unknown
//!   (`None`): the raw record keeps what the source said;
//! - prices and counts that are present but unusable reject the record, because storing NULL
//!   would silently turn "the source said something odd" into "the source said nothing";
//! - numbers are read from their JSON text, never through `f64`, so money stays exact.

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::de::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Model, ParsedPage, Reject, RejectReason, Source};
use crate::sources::split::{self, Member, Slice, SplitError};
use crate::sources::PayloadError;

/// How many characters of an offending value a reject's detail quotes.
const SHOWN_VALUE_CHARS: usize = 80;

/// Why one record cannot become a row. Parsers return it from their per-record function and
/// [`PageBuilder::push`] turns it into a [`Reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: RejectReason,
    /// Names the field and the value, for whoever reads `model_rejects`.
    pub detail: String,
    pub model_id: Option<String>,
}

impl Invalid {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Invalid {
        Invalid {
            reason,
            detail: detail.into(),
            model_id: None,
        }
    }

    /// Attaches the record's id, unless it is empty or holds a NUL (it could not be stored).
    pub fn with_model_id(mut self, model_id: &str) -> Invalid {
        if !model_id.is_empty() && !model_id.contains('\0') {
            self.model_id = Some(model_id.to_string());
        }
        self
    }
}

/// The longest record key the drift alarm records, in characters; a longer one is recorded
/// cut to this length with a trailing `…` (a key that long is drift worth an alarm, not a row
/// PostgreSQL's index refuses).
pub const MAX_FIELD_CHARS: usize = 200;

/// The most distinct record keys one page reports to the drift alarm. Records have a few dozen
/// keys; a source that keys records by data (ids as keys) would otherwise add a row per id.
pub const MAX_FIELDS_PER_PAGE: usize = 500;

/// Collects one payload's outcome in document order: every record becomes a model or a reject.
pub struct PageBuilder {
    source: Source,
    page: ParsedPage,
    fields: HashSet<String>,
}

impl PageBuilder {
    pub fn new(source: Source) -> PageBuilder {
        PageBuilder {
            source,
            page: ParsedPage::default(),
            fields: HashSet::new(),
        }
    }

    /// Records the outcome of one record whose raw text is `raw`.
    pub fn push(&mut self, raw: &RawValue, outcome: Result<Model, Invalid>) {
        match outcome {
            Ok(model) => {
                self.collect_fields(raw);
                self.page.models.push(model);
            }
            Err(invalid) => self.reject(invalid, raw.get()),
        }
    }

    /// Adds the record's top-level keys to the page's (the record is an object: it became a
    /// model).
    fn collect_fields(&mut self, raw: &RawValue) {
        let Ok(keys) = split::keys(raw.get().as_bytes()) else {
            return;
        };
        for key in keys {
            if self.fields.len() >= MAX_FIELDS_PER_PAGE {
                return;
            }
            if self.fields.contains(key.as_ref()) {
                continue;
            }
            let key = match key.char_indices().nth(MAX_FIELD_CHARS) {
                Some((cut, _)) => format!("{}…", &key[..cut]),
                None => key.into_owned(),
            };
            self.fields.insert(key);
        }
    }

    /// Records a reject for `raw`, which may be more than one record (a malformed provider).
    /// A NUL decoded from a key into the detail is written as an escape, so the detail stays
    /// storable.
    pub fn reject(&mut self, invalid: Invalid, raw: &str) {
        self.page.rejects.push(Reject {
            source: self.source,
            reason: invalid.reason,
            detail: invalid.detail.replace('\0', "\\u0000"),
            model_id: invalid.model_id,
            raw: raw.to_string(),
        });
    }

    /// Records the outcome of one record given as its slice of the payload: a slice that is
    /// not a JSON text (see [`record_json`]) is rejected with its bytes as text; otherwise
    /// `parse` decides.
    pub fn push_slice(&mut self, record: Slice<'_>, parse: impl FnOnce(&RawValue) -> Result<Model, Invalid>) {
        match record_json(record) {
            Ok(raw) => self.push(raw, parse(raw)),
            Err(invalid) => self.reject_bytes(invalid, record.bytes),
        }
    }

    /// Records a reject for bytes that may not be UTF-8: invalid sequences become U+FFFD, the
    /// rest is kept as is.
    pub fn reject_bytes(&mut self, invalid: Invalid, raw: &[u8]) {
        self.reject(invalid, &String::from_utf8_lossy(raw));
    }

    pub fn finish(mut self) -> ParsedPage {
        self.page.fields = self.fields.into_iter().collect();
        self.page.fields.sort_unstable();
        self.page
    }
}

/// The deepest a record may nest, its own braces counting as one level. Real records nest a
/// handful of levels; a record nested deeper is poison: serde_json refuses to read a value
/// nested deeper than 127 levels (so a stored record could not be read back, alone or wrapped
/// in a response), and PostgreSQL parses jsonb recursively. 64 leaves room for both.
pub const MAX_RECORD_DEPTH: usize = 64;

/// The records of a payload that must be a JSON array, each as its slice of the body.
/// `expected` describes the payload for the error (e.g. "an array of models").
pub fn document_elements<'a>(body: &'a [u8], expected: &str) -> Result<Vec<Slice<'a>>, PayloadError> {
    split::elements(without_bom(body)).map_err(|error| payload_error(error, expected))
}

/// The members of a payload that must be a JSON object, each with its slice of the body.
pub fn document_members<'a>(body: &'a [u8], expected: &str) -> Result<Vec<Member<'a>>, PayloadError> {
    split::members(without_bom(body)).map_err(|error| payload_error(error, expected))
}

/// The records of the array under `name` in a payload that must be an object such as
/// `{"status": 200, "data": [...]}`. The other members are not read, so a malformed one does
/// not fail the payload; a malformed member does fail it when `name` is missing, since that
/// member may be the array.
pub fn member_elements<'a>(body: &'a [u8], name: &str, expected: &str) -> Result<Vec<Slice<'a>>, PayloadError> {
    named_elements(&document_members(body, expected)?, name, expected)
}

/// The records of the array member `name` among a payload's `members` (see
/// [`member_elements`]), for parsers that also read other members of the envelope.
pub fn named_elements<'a>(members: &[Member<'a>], name: &str, expected: &str) -> Result<Vec<Slice<'a>>, PayloadError> {
    let mut named = members.iter().filter(|member| member.key.as_deref() == Ok(name));
    let array = match (named.next(), named.next()) {
        (Some(member), None) => member.value,
        (Some(_), Some(_)) => {
            return Err(PayloadError::UnexpectedShape(format!(
                "expected {expected}: `{name}` appears more than once"
            )))
        }
        (None, _) => {
            return Err(match members.iter().find_map(|member| member.key.as_ref().err()) {
                Some(why) => PayloadError::InvalidJson(format!("a member of the outer object cannot be read: {why}")),
                None => PayloadError::UnexpectedShape(format!("expected {expected}: there is no `{name}` member")),
            })
        }
    };
    split::elements(array.bytes).map_err(|error| match error {
        SplitError::WrongKind { found, .. } => {
            PayloadError::UnexpectedShape(format!("expected {expected}: `{name}` is a JSON {found}"))
        }
        other => PayloadError::InvalidJson(format!("in `{name}`: {other}")),
    })
}

/// A byte order mark is not JSON, but some servers send one.
fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// "JSON of another kind" is a shape problem; anything else means the text is not JSON.
fn payload_error(error: SplitError, expected: &str) -> PayloadError {
    match error {
        SplitError::WrongKind { found, .. } => {
            PayloadError::UnexpectedShape(format!("expected {expected}, found a JSON {found}"))
        }
        other => PayloadError::InvalidJson(other.to_string()),
    }
}

/// One record's slice as JSON text, or why it is not one: empty, nested deeper than
/// [`MAX_RECORD_DEPTH`], not UTF-8, or not valid JSON (serde_json's explanation, whose line
/// and column count from the start of the record).
pub fn record_json<'a>(record: Slice<'a>) -> Result<&'a RawValue, Invalid> {
    let malformed = |detail: String| Invalid::new(RejectReason::MalformedRecord, detail);
    if record.bytes.is_empty() {
        return Err(malformed(
            "the record is empty (two commas in a row, or a comma before the closing bracket)".to_string(),
        ));
    }
    if record.depth > MAX_RECORD_DEPTH {
        return Err(malformed(format!(
            "the record is nested {} levels deep, deeper than the {MAX_RECORD_DEPTH} levels accepted",
            record.depth
        )));
    }
    let text = std::str::from_utf8(record.bytes).map_err(|error| {
        malformed(format!(
            "the record is not UTF-8 text: not UTF-8 at byte {}",
            error.valid_up_to()
        ))
    })?;
    serde_json::from_str(text).map_err(|error| malformed(format!("the record is not valid JSON: {error}")))
}

/// Decodes one record into its field struct (whose fields are all `Option<&RawValue>`, so
/// only a non-object or a repeated key can fail).
pub fn decode_record<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, Invalid> {
    if !is_object(raw) {
        return Err(Invalid::new(
            RejectReason::MalformedRecord,
            format!("the record is a JSON {}, expected an object", kind(raw)),
        ));
    }
    serde_json::from_str(raw.get()).map_err(|error| {
        Invalid::new(
            RejectReason::MalformedRecord,
            format!("the record cannot be read: {error}"),
        )
    })
}

/// Decodes a nested object such as `pricing` or `limit` named `field`. Any other value is
/// unknown (`None`); an object that cannot be read (a repeated key, so which value counts is
/// ambiguous) rejects the record like a top-level repeated key does.
pub fn nested<'a, T: Deserialize<'a>>(field: &str, raw: Option<&'a RawValue>) -> Result<Option<T>, Invalid> {
    let Some(raw) = raw.filter(|raw| is_object(raw)) else {
        return Ok(None);
    };
    serde_json::from_str(raw.get()).map(Some).map_err(|error| {
        Invalid::new(
            RejectReason::MalformedRecord,
            format!("`{field}` cannot be read: {error}"),
        )
    })
}

/// Rejects a record whose text PostgreSQL cannot store: a NUL character (refused by `text`
/// and `jsonb`) or a broken UTF-16 surrogate escape (refused by `jsonb`). Finding it here
/// quarantines one record instead of failing a whole write batch. `model_id` is attached when
/// it was readable.
pub fn reject_unstorable(raw: &str, model_id: Option<&String>) -> Result<(), Invalid> {
    let invalid = match unstorable(raw) {
        None => return Ok(()),
        Some(Unstorable::Nul(offset)) => Invalid::new(
            RejectReason::NulByte,
            format!("the record contains a NUL character (\\u0000) at byte {offset}"),
        ),
        Some(Unstorable::LoneSurrogate(offset)) => Invalid::new(
            RejectReason::InvalidValue,
            format!(
                "the record contains an unpaired UTF-16 surrogate escape at byte {offset}, \
                 which PostgreSQL jsonb refuses"
            ),
        ),
    };
    Err(match model_id {
        Some(model_id) => invalid.with_model_id(model_id),
        None => invalid,
    })
}

/// What in a JSON text PostgreSQL cannot store, with its byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstorable {
    /// A `\u0000` escape or a literal NUL byte.
    Nul(usize),
    /// A high surrogate escape (`\ud800`..`\udbff`) not directly followed by a low one, or a
    /// low surrogate escape without a high one before it.
    LoneSurrogate(usize),
}

/// The first thing in JSON text that PostgreSQL cannot store, if any.
///
/// Escapes are walked pairwise, so in `\\u0000` the first backslash escapes the second one
/// and `u0000` is plain text, not a NUL.
pub fn unstorable(json: &str) -> Option<Unstorable> {
    let bytes = json.as_bytes();
    let mut index = 0;
    // Where a high surrogate escape waits for its low half, which must come right after it.
    let mut pending_high: Option<usize> = None;
    while index < bytes.len() {
        if pending_high.is_none() {
            // Only a NUL or an escape can be unstorable: skip to the next one.
            match split::find_either(bytes, index, 0, b'\\') {
                Some(next) => index = next,
                None => return None,
            }
        }
        let unit = match (bytes[index], bytes.get(index + 1)) {
            (0, _) => return Some(Unstorable::Nul(index)),
            (b'\\', Some(b'u')) => hex_unit(&bytes[index + 2..]),
            _ => None,
        };
        match (unit, pending_high) {
            (Some(0), _) => return Some(Unstorable::Nul(index)),
            (Some(0xDC00..=0xDFFF), Some(_)) => pending_high = None,
            (Some(0xDC00..=0xDFFF), None) => return Some(Unstorable::LoneSurrogate(index)),
            (_, Some(high)) => return Some(Unstorable::LoneSurrogate(high)),
            (Some(0xD800..=0xDBFF), None) => pending_high = Some(index),
            _ => {}
        }
        index += match (unit, bytes[index]) {
            (Some(_), _) => 6,
            (None, b'\\') => 2,
            (None, _) => 1,
        };
    }
    pending_high.map(Unstorable::LoneSurrogate)
}

/// The UTF-16 code unit of the four hex digits starting `bytes`.
fn hex_unit(bytes: &[u8]) -> Option<u16> {
    let digits = std::str::from_utf8(bytes.get(..4)?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

/// A record's id: a non-empty JSON string. `field` names it in the reject detail.
pub fn required_id(field: &str, raw: Option<&RawValue>) -> Result<String, Invalid> {
    let missing = |what: String| Invalid::new(RejectReason::MissingId, format!("`{field}` {what}"));
    let raw = raw.ok_or_else(|| missing("is absent or null".to_string()))?;
    match text(Some(raw)) {
        Some(id) if !id.is_empty() => Ok(id),
        Some(_) => Err(missing("is an empty string".to_string())),
        None => Err(missing(format!(
            "is a {} ({}), expected a string",
            kind(raw),
            shown(raw)
        ))),
    }
}

/// A JSON string; anything else is unknown.
pub fn text(raw: Option<&RawValue>) -> Option<String> {
    let raw = raw?;
    if !raw.get().starts_with('"') {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// A JSON boolean; anything else is unknown.
pub fn flag(raw: Option<&RawValue>) -> Option<bool> {
    match raw?.get() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A JSON array of strings; any other value (or an array holding non-strings) is unknown.
pub fn text_list(raw: Option<&RawValue>) -> Option<Vec<String>> {
    let raw = raw?;
    if !raw.get().starts_with('[') {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// A price in USD per million tokens as the source states it: a non-negative decimal, from a
/// JSON number or a numeric string. JSON null or absent is unknown.
pub fn price(field: &str, raw: Option<&RawValue>) -> Result<Option<Decimal>, Invalid> {
    let Some(value) = decimal(field, raw, 0, RejectReason::InvalidPrice)? else {
        return Ok(None);
    };
    if value.is_sign_negative() {
        return Err(Invalid::new(
            RejectReason::InvalidPrice,
            format!("`{field}` is {value}, a price cannot be negative"),
        ));
    }
    Ok(Some(value))
}

/// A count such as a context length or a number of downloads: a non-negative whole number
/// that fits a PostgreSQL `bigint`. JSON null or absent is unknown.
pub fn count(field: &str, raw: Option<&RawValue>) -> Result<Option<i64>, Invalid> {
    let Some(value) = decimal(field, raw, 0, RejectReason::InvalidValue)? else {
        return Ok(None);
    };
    let invalid = |why: &str| Invalid::new(RejectReason::InvalidValue, format!("`{field}` is {value}, {why}"));
    if value.is_sign_negative() {
        return Err(invalid("expected a non-negative whole number"));
    }
    if !value.fract().is_zero() {
        return Err(invalid("expected a whole number"));
    }
    i64::try_from(value)
        .map_err(|_| invalid("beyond the 64-bit integer range"))
        .map(Some)
}

/// The decimal a JSON number or numeric string states, multiplied by 10^`shift` (exactly, by
/// moving the decimal point). A value that is present but not such a number is an `Invalid`
/// with `reason`; JSON null or absent is `None`.
pub fn decimal(
    field: &str,
    raw: Option<&RawValue>,
    shift: i32,
    reason: RejectReason,
) -> Result<Option<Decimal>, Invalid> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let invalid = |why: String| Invalid::new(reason, format!("`{field}` is {}, {why}", shown(raw)));
    let Some(number) = number_text(raw) else {
        return Err(invalid(format!("a {}, expected a number", kind(raw))));
    };
    match decimal_from_text(&number, shift) {
        Ok(value) => Ok(Some(value)),
        Err(DecimalError::NotANumber) => Err(invalid("not a decimal number".to_string())),
        Err(DecimalError::OutOfRange) => Err(invalid("beyond what a 28-digit decimal holds exactly".to_string())),
    }
}

/// The text of a JSON number, or the content of a JSON string (sources such as OpenRouter send
/// numbers as strings). Other JSON values have no number text.
fn number_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
        b'-' | b'0'..=b'9' => Some(Cow::Borrowed(text)),
        _ => None,
    }
}

/// Why a text is not a storable decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Not of the form `[+-]digits[.digits][e[+-]digits]`.
    NotANumber,
    /// Too large, or too many decimal places, for a `Decimal` (96-bit mantissa, scale ≤ 28).
    OutOfRange,
}

/// Parses a decimal number (JSON number syntax, also `+1`, `.5`, `5.` and surrounding
/// whitespace) multiplied by 10^`shift`, exactly, into a normalized `Decimal`.
///
/// The digits are read as an integer mantissa and the position of the decimal point as a
/// scale, so no precision is lost on the way (unlike `f64`), exponents such as `1e-6` work,
/// and shifting (per token to per million tokens) cannot round.
pub fn decimal_from_text(text: &str, shift: i32) -> Result<Decimal, DecimalError> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (significand, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], parse_exponent(&unsigned[at + 1..])?),
        None => (unsigned, 0),
    };
    let (integer, fraction) = significand.split_once('.').unwrap_or((significand, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if (integer.is_empty() && fraction.is_empty()) || !all_digits(integer) || !all_digits(fraction) {
        return Err(DecimalError::NotANumber);
    }

    let digits = format!("{integer}{fraction}");
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let trailing_zeros = (digits.len() - significant.len()) as i64;
    let scale = fraction.len() as i64 - trailing_zeros - exponent - i64::from(shift);

    let mut mantissa: i128 = significant.parse().map_err(|_| DecimalError::OutOfRange)?;
    if scale < 0 {
        let factor = u32::try_from(-scale)
            .ok()
            .and_then(|power| 10i128.checked_pow(power))
            .ok_or(DecimalError::OutOfRange)?;
        mantissa = mantissa.checked_mul(factor).ok_or(DecimalError::OutOfRange)?;
    }
    if negative {
        mantissa = -mantissa;
    }
    let scale = u32::try_from(scale.max(0)).map_err(|_| DecimalError::OutOfRange)?;
    Decimal::try_from_i128_with_scale(mantissa, scale)
        .map(|value| value.normalize())
        .map_err(|_| DecimalError::OutOfRange)
}

/// An exponent's value, saturated far beyond any representable decimal so that absurd
/// exponents are "out of range" rather than an overflow.
fn parse_exponent(text: &str) -> Result<i64, DecimalError> {
    const SATURATION: i64 = 1_000_000;
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(DecimalError::NotANumber);
    }
    let magnitude = digits.bytes().fold(0i64, |value, digit| {
        (value * 10 + i64::from(digit - b'0')).min(SATURATION)
    });
    Ok(if negative { -magnitude } else { magnitude })
}

/// A date from a JSON string (see [`date_from_text`]); anything else is unknown.
pub fn date(raw: Option<&RawValue>) -> Option<NaiveDate> {
    date_from_text(&text(raw)?)
}

/// A calendar date from `YYYY-MM-DD`, `YYYY-MM` or `YYYY` (the first day of the month or
/// year: models.dev gives coarse dates for older models) or from an RFC 3339 timestamp (its
/// UTC date). Anything else is unknown: a date is descriptive, never a reason to reject.
pub fn date_from_text(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    if let Ok(timestamp) = DateTime::parse_from_rfc3339(text) {
        return Some(timestamp.with_timezone(&Utc).date_naive());
    }
    let mut parts = text.split('-');
    let year = parts.next().filter(|year| year.len() == 4)?;
    let month = parts.next().unwrap_or("1");
    let day = parts.next().unwrap_or("1");
    if parts.next().is_some() {
        return None;
    }
    let number = |part: &str, width: usize| -> Option<u32> {
        let digits = !part.is_empty() && part.len() <= width;
        (digits && part.bytes().all(|byte| byte.is_ascii_digit())).then(|| part.parse().ok())?
    };
    let year = i32::try_from(number(year, 4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(month, 2)?, number(day, 2)?)
}

/// The UTC date of a Unix timestamp in seconds (a JSON number or numeric string); anything
/// else is unknown.
pub fn date_from_unix_seconds(raw: Option<&RawValue>) -> Option<NaiveDate> {
    let seconds = decimal_from_text(&number_text(raw?)?, 0).ok()?.trunc();
    let seconds = i64::try_from(seconds).ok()?;
    DateTime::from_timestamp(seconds, 0).map(|timestamp| timestamp.date_naive())
}

/// The part of `id` before the first `/`, or `""` when it names no owner.
pub fn owner_of(id: &str) -> &str {
    id.split_once('/').map_or("", |(owner, _)| owner)
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// The JSON kind of a raw value, for reject details.
pub fn kind(raw: &RawValue) -> &'static str {
    split::kind_of(raw.get().as_bytes())
}

/// A raw value quoted in a reject detail, cut short so that details stay readable.
pub fn shown(raw: &RawValue) -> String {
    shown_text(raw.get())
}

/// A text quoted in a reject detail, cut short so that details stay readable.
pub fn shown_text(text: &str) -> String {
    match text.char_indices().nth(SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn model_from(raw: &RawValue) -> Result<Model, Invalid> {
        Ok(Model::new(
            Source::OpenRouter,
            String::new(),
            "x".into(),
            raw.get().to_string(),
        ))
    }

    #[test]
    fn a_page_reports_the_distinct_keys_of_its_models_only() {
        let mut page = PageBuilder::new(Source::OpenRouter);
        page.push(
            &raw(r#"{"id":"a","pricing":{"nested":1},"name":"A"}"#),
            model_from(&raw("{}")),
        );
        page.push(
            &raw(r#"{"name":"B","id":"b","brand_new":true}"#),
            model_from(&raw("{}")),
        );
        let rejected = raw(r#"{"id":"c","only_in_a_reject":1}"#);
        page.push(&rejected, Err(Invalid::new(RejectReason::InvalidValue, "bad")));
        let long = format!(r#"{{"{}":1}}"#, "k".repeat(MAX_FIELD_CHARS + 50));
        page.push(&raw(&long), model_from(&raw("{}")));
        let fields = page.finish().fields;
        let cut = format!("{}…", "k".repeat(MAX_FIELD_CHARS));
        assert_eq!(fields, ["brand_new", "id", cut.as_str(), "name", "pricing"]);
    }

    #[test]
    fn a_page_reports_at_most_max_fields_per_page() {
        let mut page = PageBuilder::new(Source::OpenRouter);
        for index in 0..MAX_FIELDS_PER_PAGE + 10 {
            page.push(&raw(&format!(r#"{{"key_{index}":1}}"#)), model_from(&raw("{}")));
        }
        assert_eq!(page.finish().fields.len(), MAX_FIELDS_PER_PAGE);
    }

    #[test]
    fn decimal_from_text_is_exact_for_plain_and_scientific_numbers() {
        let cases = [
            ("0.0000025", 0, "0.0000025"),
            ("0.0000025", 6, "2.5"),
            ("0.00000008333333333333334", 6, "0.08333333333333334"),
            ("1e-6", 0, "0.000001"),
            ("2.5E+3", 0, "2500"),
            ("1.5e2", 6, "150000000"),
            ("-1", 6, "-1000000"),
            ("0.0", 0, "0"),
            ("-0", 0, "0"),
            (" 42 ", 0, "42"),
            ("+.5", 0, "0.5"),
            ("5.", 0, "5"),
            ("1000000000000000000000000000000e-10", 0, "100000000000000000000"),
            ("0e-400", 0, "0"),
        ];
        for (text, shift, expected) in cases {
            assert_eq!(
                decimal_from_text(text, shift),
                Ok(dec(expected)),
                "{text} shifted by {shift}"
            );
        }
    }

    #[test]
    fn decimal_from_text_refuses_what_it_cannot_hold_exactly() {
        for text in [
            "", "abc", "1,5", "0x10", "NaN", "Infinity", ".", "-", "1e", "1e+", "1..2",
        ] {
            assert_eq!(decimal_from_text(text, 0), Err(DecimalError::NotANumber), "{text}");
        }
        for text in [
            "1e400",
            "1e-400",
            "99999999999999999999999999999999",
            "1e999999999999999",
        ] {
            assert_eq!(decimal_from_text(text, 0), Err(DecimalError::OutOfRange), "{text}");
        }
    }

    #[test]
    fn decimal_from_text_is_normalized() {
        let value = decimal_from_text("2.50000", 0).unwrap();
        assert_eq!(value.to_string(), "2.5");
    }

    #[test]
    fn unstorable_finds_nul_escapes_counting_preceding_backslashes() {
        let nul = |json: &str| match unstorable(json) {
            Some(Unstorable::Nul(offset)) => Some(offset),
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(nul(r#"{"a":"x\u0000"}"#), Some(7));
        assert_eq!(nul(r#"{"a":"\\\u0000"}"#), Some(8));
        assert_eq!(nul(r#"{"a":"\u00001"}"#), Some(6));
        assert_eq!(nul("{\"a\":\"\0\"}"), Some(6));
        for clean in [
            r#"{"a":"\\u0000"}"#,
            r#"{"a":"\u0001"}"#,
            r#"{"a":"\\"}"#,
            r#"{"\u00e9":"\""}"#,
        ] {
            assert_eq!(unstorable(clean), None, "{clean}");
        }
    }

    #[test]
    fn unstorable_finds_unpaired_surrogate_escapes() {
        assert_eq!(unstorable(r#"{"a":"\ud83d\ude00"}"#), None);
        assert_eq!(unstorable(r#"{"a":"\\ud83d"}"#), None);
        assert_eq!(unstorable(r#"{"a":"\ud83d"}"#), Some(Unstorable::LoneSurrogate(6)));
        assert_eq!(unstorable(r#"{"a":"\ud83dx"}"#), Some(Unstorable::LoneSurrogate(6)));
        assert_eq!(unstorable(r#"{"a":"\ud83d\n"}"#), Some(Unstorable::LoneSurrogate(6)));
        assert_eq!(
            unstorable(r#"{"a":"\ud83d\ud83d"}"#),
            Some(Unstorable::LoneSurrogate(6))
        );
        assert_eq!(unstorable(r#"{"a":"\ude00"}"#), Some(Unstorable::LoneSurrogate(6)));
        assert_eq!(unstorable(r#"{"a":"x\uDE00"}"#), Some(Unstorable::LoneSurrogate(7)));
        assert_eq!(unstorable(r#""\ud83d"#), Some(Unstorable::LoneSurrogate(1)));
    }

    #[test]
    fn required_id_names_what_is_wrong() {
        assert_eq!(required_id("id", Some(&raw(r#""a/b""#))), Ok("a/b".to_string()));
        let reason = |value: Option<&RawValue>| required_id("id", value).unwrap_err().reason;
        assert_eq!(reason(None), RejectReason::MissingId);
        assert_eq!(reason(Some(&raw(r#""""#))), RejectReason::MissingId);
        assert_eq!(reason(Some(&raw("42"))), RejectReason::MissingId);
        let detail = required_id("id", Some(&raw("42"))).unwrap_err().detail;
        assert_eq!(detail, "`id` is a number (42), expected a string");
    }

    #[test]
    fn price_accepts_numbers_and_numeric_strings_and_rejects_the_rest() {
        assert_eq!(price("p", None), Ok(None));
        assert_eq!(price("p", Some(&raw("0.132"))), Ok(Some(dec("0.132"))));
        assert_eq!(price("p", Some(&raw(r#""3""#))), Ok(Some(dec("3"))));
        assert_eq!(price("p", Some(&raw("1e-6"))), Ok(Some(dec("0.000001"))));
        for bad in [r#""abc""#, "-5", "1e400", "true", "{}", "[1]"] {
            let invalid = price("cost.input", Some(&raw(bad))).unwrap_err();
            assert_eq!(invalid.reason, RejectReason::InvalidPrice, "{bad}");
            assert!(invalid.detail.contains("`cost.input`"), "{}", invalid.detail);
        }
    }

    #[test]
    fn count_accepts_whole_non_negative_numbers_that_fit_i64() {
        assert_eq!(count("c", Some(&raw("128000"))), Ok(Some(128_000)));
        assert_eq!(count("c", Some(&raw("1.28e5"))), Ok(Some(128_000)));
        assert_eq!(count("c", Some(&raw("0"))), Ok(Some(0)));
        assert_eq!(count("c", Some(&raw(r#""4096""#))), Ok(Some(4096)));
        for bad in ["-1", "1.5", "9223372036854775808", "1e400", r#""many""#, "false"] {
            let invalid = count("limit.context", Some(&raw(bad))).unwrap_err();
            assert_eq!(invalid.reason, RejectReason::InvalidValue, "{bad}");
        }
        assert_eq!(count("c", Some(&raw("9223372036854775807"))), Ok(Some(i64::MAX)));
    }

    #[test]
    fn descriptive_fields_of_an_unexpected_type_are_unknown() {
        assert_eq!(text(Some(&raw(r#""GPT \"4\"""#))), Some("GPT \"4\"".to_string()));
        assert_eq!(text(Some(&raw("4"))), None);
        assert_eq!(flag(Some(&raw("true"))), Some(true));
        assert_eq!(flag(Some(&raw(r#""yes""#))), None);
        assert_eq!(
            text_list(Some(&raw(r#"["text","image"]"#))),
            Some(vec!["text".to_string(), "image".to_string()])
        );
        assert_eq!(text_list(Some(&raw(r#"["text",1]"#))), None);
        assert_eq!(text_list(Some(&raw(r#"{"0":"text"}"#))), None);
    }

    #[test]
    fn dates_take_the_first_day_of_coarse_dates() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(date_from_text("2025-06-16"), day(2025, 6, 16));
        assert_eq!(date_from_text("2026-01"), day(2026, 1, 1));
        assert_eq!(date_from_text("2024"), day(2024, 1, 1));
        assert_eq!(date_from_text("2025-11-04T08:25:31.000Z"), day(2025, 11, 4));
        assert_eq!(date_from_text("2025-11-04T23:30:00-02:00"), day(2025, 11, 5));
        for bad in ["", "soon", "2025-13", "2025-02-30", "25-01-01", "2025-01-01-01"] {
            assert_eq!(date_from_text(bad), None, "{bad}");
        }
        assert_eq!(date(Some(&raw("20250616"))), None);
    }

    #[test]
    fn unix_seconds_become_utc_dates() {
        assert_eq!(
            date_from_unix_seconds(Some(&raw("1778613011"))),
            NaiveDate::from_ymd_opt(2026, 5, 12)
        );
        assert_eq!(date_from_unix_seconds(Some(&raw(r#""x""#))), None);
        assert_eq!(date_from_unix_seconds(Some(&raw("1e30"))), None);
    }

    fn slice(text: &str, depth: usize) -> Slice<'_> {
        Slice {
            bytes: text.as_bytes(),
            depth,
        }
    }

    #[test]
    fn document_members_keep_order_and_duplicate_keys() {
        let members = document_members(br#"{"b":1,"a":{"x":2},"b":3}"#, "an object").unwrap();
        let keys: Vec<&str> = members.iter().map(|member| member.key.as_deref().unwrap()).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(members[1].value.bytes, br#"{"x":2}"#);
    }

    #[test]
    fn documents_tell_invalid_json_from_unexpected_shape() {
        let invalid = document_members(b"not json", "an object");
        assert!(matches!(invalid, Err(PayloadError::InvalidJson(_))));
        let truncated = document_members(b"{\"a\":", "an object");
        assert!(matches!(truncated, Err(PayloadError::InvalidJson(_))));
        let shape = document_members(b"[1]", "an object");
        assert!(matches!(shape, Err(PayloadError::UnexpectedShape(_))));
        assert!(document_members(b"\xEF\xBB\xBF{}", "an object").is_ok());
        assert!(document_elements(b"\xEF\xBB\xBF [] ", "an array").is_ok());
        let error = document_elements(b"[{\"id\":\"a\"}", "an array of models").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the response is not valid JSON: the text is cut short: it ends with 1 bracket(s) still open"
        );
        let error = document_elements(b"{}", "an array of models").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the response is JSON but not of the expected shape: expected an array of models, found a JSON object"
        );
    }

    #[test]
    fn member_elements_find_the_named_array() {
        fn elements(body: &str) -> Result<Vec<Slice<'_>>, PayloadError> {
            member_elements(body.as_bytes(), "data", "an object with a `data` array")
        }
        let found = elements(r#"{"status":200,"extra":{"x": oops},"data":[1, {"a":2}]}"#).unwrap();
        assert_eq!(found, [slice("1", 0), slice(r#"{"a":2}"#, 1)]);
        for shape in [
            r#"{}"#,
            r#"{"data":{}}"#,
            r#"{"data":null}"#,
            r#"{"data":[],"data":[]}"#,
            "[[]]",
        ] {
            assert!(
                matches!(elements(shape), Err(PayloadError::UnexpectedShape(_))),
                "{shape}"
            );
        }
        for broken in [
            r#"{"data" []}"#,
            r#"{"data":[1,2}"#,
            r#"{"data":[1] 2}"#,
            r#"{"data":[1"#,
        ] {
            assert!(
                matches!(elements(broken), Err(PayloadError::InvalidJson(_))),
                "{broken}"
            );
        }
        let error = elements(r#"{"data":[1] 2}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the response is not valid JSON: in `data`: unexpected text after the end of the value, at byte 4"
        );
    }

    #[test]
    fn record_json_refuses_what_is_not_a_json_text() {
        assert_eq!(record_json(slice(r#"{"id":"a"}"#, 1)).unwrap().get(), r#"{"id":"a"}"#);
        let detail = |record: Slice| {
            let invalid = record_json(record).unwrap_err();
            assert_eq!(invalid.reason, RejectReason::MalformedRecord);
            invalid.detail
        };
        assert_eq!(
            detail(slice(r#"{"id": "a", "likes": }"#, 1)),
            "the record is not valid JSON: expected value at line 1 column 22"
        );
        assert_eq!(
            detail(slice(r#"{"id":"a"} {"id":"b"}"#, 1)),
            "the record is not valid JSON: trailing characters at line 1 column 12"
        );
        assert!(detail(slice("", 0)).starts_with("the record is empty"));
        assert_eq!(
            detail(Slice {
                bytes: b"{\"id\":\"a\xFF\"}",
                depth: 1
            }),
            "the record is not UTF-8 text: not UTF-8 at byte 8"
        );
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(
            detail(slice(&deep, 65)),
            "the record is nested 65 levels deep, deeper than the 64 levels accepted"
        );
        let limit = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(record_json(slice(&limit, 64)).is_ok());
    }

    #[test]
    fn owner_is_the_part_before_the_first_slash() {
        assert_eq!(owner_of("openai/gpt-4o"), "openai");
        assert_eq!(owner_of("@cf/meta/llama"), "@cf");
        assert_eq!(owner_of("gpt2"), "");
    }

    #[test]
    fn shown_values_are_cut_short() {
        let long = format!("\"{}\"", "é".repeat(200));
        let quoted = shown(&raw(&long));
        assert_eq!(quoted.chars().count(), SHOWN_VALUE_CHARS + 1);
        assert!(quoted.ends_with('…'));
    }
}
