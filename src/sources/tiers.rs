//! Long-context price tiers (DESIGN.md §9), the rules both sources that state them share.
//!
//! A tier is the set of prices that applies from `min_context_tokens` prompt tokens on. The
//! stored list is sorted by `min_context_tokens`, holds each start once, and is `None` when the
//! source states no tier. A tier value that cannot be read exactly (a price that is not a
//! number, a start that is not a whole number, two tiers that start at the same size, a tier
//! list that is not a list) rejects the whole record: storing the row without that tier would
//! say "no long-context price" where the source said one, which is the wrong price above the
//! threshold. The record goes to `model_rejects` with the field named, and its raw text kept.
//! Entries that are not context tiers (OpenRouter's time-of-day windows, a models.dev tier of
//! another `type`) are not tiers: they stay in `data` only.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{PriceTier, RejectReason};
use crate::sources::fields::{self, Invalid};

/// The elements of a JSON array member such as `cost.tiers`. Absent or null is no list;
/// any other value rejects the record.
pub fn entries<'a>(field: &str, raw: Option<&'a RawValue>) -> Result<Vec<&'a RawValue>, Invalid> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Ok(Vec::new());
    };
    if !raw.get().starts_with('[') {
        return Err(Invalid::new(
            RejectReason::InvalidValue,
            format!(
                "`{field}` is a JSON {} ({}), expected an array of price tiers",
                fields::kind(raw),
                fields::shown(raw)
            ),
        ));
    }
    serde_json::from_str(raw.get()).map_err(|error| {
        Invalid::new(
            RejectReason::MalformedRecord,
            format!("`{field}` cannot be read: {error}"),
        )
    })
}

/// The token count a tier starts at: a non-negative whole number, required.
pub fn start(field: &str, raw: Option<&RawValue>) -> Result<i64, Invalid> {
    fields::count(field, raw)?.ok_or_else(|| {
        Invalid::new(
            RejectReason::InvalidValue,
            format!("`{field}` is absent or null: the tier's threshold is unknown"),
        )
    })
}

/// A tier entry decoded into its field struct. It must be an object; anything else rejects
/// the record.
pub fn object<'a, T: Deserialize<'a>>(field: &str, raw: &'a RawValue) -> Result<T, Invalid> {
    match fields::nested(field, Some(raw))? {
        Some(entry) => Ok(entry),
        None => Err(Invalid::new(
            RejectReason::InvalidValue,
            format!(
                "`{field}` is a JSON {} ({}), expected a price tier object",
                fields::kind(raw),
                fields::shown(raw)
            ),
        )),
    }
}

/// The stored form: sorted by `min_context_tokens`, each start once, `None` when empty.
/// `field` names the list in the reject detail.
pub fn sorted(field: &str, mut tiers: Vec<PriceTier>) -> Result<Option<Vec<PriceTier>>, Invalid> {
    if tiers.is_empty() {
        return Ok(None);
    }
    tiers.sort_by_key(|tier| tier.min_context_tokens);
    if let Some(pair) = tiers
        .windows(2)
        .find(|pair| pair[0].min_context_tokens == pair[1].min_context_tokens)
    {
        return Err(Invalid::new(
            RejectReason::InvalidValue,
            format!(
                "`{field}` has two tiers from {} tokens: which prices apply is ambiguous",
                pair[0].min_context_tokens
            ),
        ));
    }
    Ok(Some(tiers))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::str::FromStr;

    /// A tier from decimal texts (input, output, cache read, cache write), for the parsers' tests.
    pub(crate) fn tier(min_context_tokens: i64, prices: [Option<&str>; 4]) -> PriceTier {
        let [input, output, cache_read, cache_write] =
            prices.map(|price| price.map(|text| rust_decimal::Decimal::from_str(text).expect("a decimal")));
        PriceTier {
            min_context_tokens,
            input,
            output,
            cache_read,
            cache_write,
        }
    }

    fn bare(min_context_tokens: i64) -> PriceTier {
        tier(min_context_tokens, [None; 4])
    }

    #[test]
    fn tiers_are_sorted_and_each_start_is_unique() {
        assert_eq!(sorted("t", Vec::new()), Ok(None));
        assert_eq!(
            sorted("t", vec![bare(1_000_000), bare(200_000)]),
            Ok(Some(vec![bare(200_000), bare(1_000_000)]))
        );
        let error = sorted("cost.tiers", vec![bare(200_000), bare(5), bare(200_000)]).unwrap_err();
        assert_eq!(error.reason, RejectReason::InvalidValue);
        assert_eq!(
            error.detail,
            "`cost.tiers` has two tiers from 200000 tokens: which prices apply is ambiguous"
        );
    }

    #[test]
    fn a_tier_list_must_be_a_list_of_objects() {
        let raw = |json: &str| RawValue::from_string(json.to_string()).unwrap();
        assert_eq!(entries("t", None).unwrap().len(), 0);
        assert_eq!(entries("t", Some(&raw("null"))).unwrap().len(), 0);
        assert_eq!(entries("t", Some(&raw(r#"[{"a":1},2]"#))).unwrap().len(), 2);
        let error = entries("cost.tiers", Some(&raw(r#"{"a":1}"#))).unwrap_err();
        assert_eq!(
            error.detail,
            r#"`cost.tiers` is a JSON object ({"a":1}), expected an array of price tiers"#
        );
        let not_object = object::<serde::de::IgnoredAny>("t[1]", &raw("2")).unwrap_err();
        assert_eq!(
            not_object.detail,
            "`t[1]` is a JSON number (2), expected a price tier object"
        );
        assert!(object::<serde::de::IgnoredAny>("t[1]", &raw("{}")).is_ok());
        assert_eq!(start("t.size", Some(&raw("200000"))), Ok(200_000));
        assert_eq!(start("t.size", None).unwrap_err().reason, RejectReason::InvalidValue);
        assert_eq!(
            start("t.size", Some(&raw("-1"))).unwrap_err().reason,
            RejectReason::InvalidValue
        );
        assert_eq!(
            start("t.size", Some(&raw("2.5"))).unwrap_err().reason,
            RejectReason::InvalidValue
        );
    }
}
