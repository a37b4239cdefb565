//! A tolerant structural splitter: the top-level elements of a JSON array or members of a JSON
//! object, each as its exact slice of the payload, without parsing them.
//!
//! serde_json reads a document all or nothing, so one malformed record (a syntax error, bytes
//! that are not UTF-8, absurd nesting) would fail a whole page. The splitter only follows
//! strings (with their escapes) and counts brackets, and leaves each slice to be validated on
//! its own, so a bad record costs that record alone:
//! - it works on bytes: every byte it acts on (`"`, `\`, brackets, `,`) is ASCII, and UTF-8
//!   never uses ASCII bytes inside a multi-byte character, so bytes that are not UTF-8 stay
//!   inside the slice of the record that holds them;
//! - it is iterative and keeps a counter rather than a stack, so 100,000 levels of nesting cost
//!   a counter increment each and cannot overflow anything;
//! - it checks nothing inside a slice (literals, numbers, commas and colons of nested values,
//!   matching bracket kinds): that is the record's own validation.
//!
//! The outer structure must hold, because record boundaries depend on it: the value opens with
//! the expected bracket, its matching bracket closes it at depth 0, and only whitespace follows.
//! Otherwise it is a [`SplitError`] and no slice can be trusted.
//!
//! Two choices follow from splitting only at commas outside strings at depth 1:
//! - a missing comma (`[{"id":"a"} {"id":"b"}]`) makes one slice of both values, which fails
//!   validation as one malformed record whose text holds both: guessing a boundary could
//!   invent records;
//! - an empty slot (`[1,,2]`, or a trailing comma in `[1,]`) is an empty slice, so the caller
//!   can reject it; `[]` and `{}` have no slot at all.

use std::borrow::Cow;

use serde::de::IgnoredAny;

/// One element of an array, or the value of one member: its exact text, trimmed of JSON
/// whitespace, and how deeply it nests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice<'a> {
    pub bytes: &'a [u8],
    /// The most brackets open at once inside the value: 0 for a scalar, 1 for `{"a":1}`, 2 for
    /// `[[1]]`. Counted while splitting, so a caller can refuse absurd nesting without a
    /// second pass.
    pub depth: usize,
}

/// One member of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The decoded key, or why the member is not `"key": value` (a key that is not a valid
    /// JSON string, no key, no colon, an empty member), for the caller to reject.
    pub key: Result<String, String>,
    /// The value after the colon, trimmed; empty when the member cannot be read.
    pub value: Slice<'a>,
    /// The whole member, trimmed: the raw text of a reject when the member cannot be read.
    pub text: &'a [u8],
}

/// Why the outer structure cannot be split. Byte offsets count from the start of the bytes
/// given to [`elements`] or [`members`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("the text is empty")]
    Empty,
    /// Well-formed at the top level, but not the kind of value asked for.
    #[error("expected a JSON {expected}, found a JSON {found}")]
    WrongKind {
        expected: &'static str,
        found: &'static str,
    },
    /// Not a JSON value at all (serde_json's explanation).
    #[error("{0}")]
    NotJson(String),
    #[error("the text is cut short: it ends inside the string that starts at byte {0}")]
    EndsInString(usize),
    #[error("the text is cut short: it ends with {0} bracket(s) still open")]
    Unclosed(usize),
    #[error("`{found}` at byte {offset} closes the `{opened}` that opens the value")]
    MismatchedClose { offset: usize, found: char, opened: char },
    #[error("unexpected text after the end of the value, at byte {0}")]
    TrailingText(usize),
}

/// The top-level elements of the JSON array `array` (surrounding whitespace allowed), in order.
pub fn elements(array: &[u8]) -> Result<Vec<Slice<'_>>, SplitError> {
    container(array, b'[')
}

/// The top-level members of the JSON object `object` (surrounding whitespace allowed), in
/// order, repeated keys included.
pub fn members(object: &[u8]) -> Result<Vec<Member<'_>>, SplitError> {
    Ok(container(object, b'{')?.into_iter().map(member).collect())
}

/// One member of an object as it is written: its quoted key (escapes not decoded), its value
/// and the whole member, all slices of the object's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawMember<'a> {
    pub quoted_key: &'a [u8],
    pub value: &'a [u8],
    pub text: &'a [u8],
}

/// The members of the JSON object `object` as written, without decoding their keys (no
/// allocation per member: for callers that compare keys and copy members, such as history's
/// record digests). `None` when `object` is not an object or a member is not `"key": value`.
pub fn raw_members(object: &[u8]) -> Option<Vec<RawMember<'_>>> {
    container(object, b'{')
        .ok()?
        .into_iter()
        .map(|slot| {
            let text = slot.bytes;
            if text.first() != Some(&b'"') {
                return None;
            }
            let key_end = string_end(text, 0)?;
            let value = trim(&text[key_end..]).strip_prefix(b":")?;
            Some(RawMember {
                quoted_key: &text[..key_end],
                value: trim(value),
                text,
            })
        })
        .collect()
}

/// The keys of the top-level members of the JSON object `object`, in order, decoded
/// (borrowed when a key holds no escape). A member that cannot be read has no key to give and
/// is skipped: callers that must judge members use [`members`].
pub fn keys(object: &[u8]) -> Result<Vec<Cow<'_, str>>, SplitError> {
    let slots = container(object, b'{')?;
    let mut keys = Vec::with_capacity(slots.len());
    for slot in slots {
        let text = slot.bytes;
        if text.first() != Some(&b'"') {
            continue;
        }
        let Some(key_end) = string_end(text, 0) else {
            continue;
        };
        let inner = &text[1..key_end - 1];
        let plain = !inner.iter().any(|&byte| byte == b'\\' || byte < 0x20);
        match std::str::from_utf8(inner) {
            Ok(key) if plain => keys.push(Cow::Borrowed(key)),
            _ => {
                if let Ok(key) = decode_key(&text[..key_end]) {
                    keys.push(Cow::Owned(key));
                }
            }
        }
    }
    Ok(keys)
}

/// The JSON kind a text starts with, for messages: `object`, `array`, `string`, `number`,
/// `boolean`, `null`, or `value` when it starts like none of them.
pub fn kind_of(text: &[u8]) -> &'static str {
    match trim(text).first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "number",
        _ => "value",
    }
}

/// The slots of the container that `bytes` must be, opened by `open` (`[` or `{`).
fn container(bytes: &[u8], open: u8) -> Result<Vec<Slice<'_>>, SplitError> {
    let Some(start) = bytes.iter().position(|&byte| !is_whitespace(byte)) else {
        return Err(SplitError::Empty);
    };
    if bytes[start] == open {
        split(bytes, start)
    } else {
        Err(other_value(bytes, start, open))
    }
}

/// Why a value that does not open with `open` cannot be split: another well-formed value is
/// [`SplitError::WrongKind`], anything else is the error that makes it unreadable.
fn other_value(bytes: &[u8], start: usize, open: u8) -> SplitError {
    let wrong_kind = SplitError::WrongKind {
        expected: kind_of(&[open]),
        found: kind_of(&bytes[start..]),
    };
    match bytes[start] {
        b'[' | b'{' => split(bytes, start).err().unwrap_or(wrong_kind),
        // A scalar has no nesting, so serde_json reads it whole at no risk.
        _ => match serde_json::from_slice::<IgnoredAny>(bytes) {
            Ok(_) => wrong_kind,
            Err(error) => SplitError::NotJson(error.to_string()),
        },
    }
}

/// Splits the container whose opening bracket is at `start` at its commas of depth 1.
fn split(bytes: &[u8], start: usize) -> Result<Vec<Slice<'_>>, SplitError> {
    let open = bytes[start];
    let mut slices = Vec::new();
    let mut depth = 1;
    let mut slot_start = start + 1;
    // The most brackets open at once since the slot started, the container's own included.
    let mut slot_depth = 1;
    let mut index = start + 1;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'"' => {
                index = string_end(bytes, index).ok_or(SplitError::EndsInString(index))?;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                slot_depth = slot_depth.max(depth);
            }
            b']' | b'}' if depth > 1 => depth -= 1,
            b']' | b'}' => {
                if byte != closing(open) {
                    return Err(SplitError::MismatchedClose {
                        offset: index,
                        found: char::from(byte),
                        opened: char::from(open),
                    });
                }
                let last = slice(&bytes[slot_start..index], slot_depth);
                if !last.bytes.is_empty() || !slices.is_empty() {
                    slices.push(last);
                }
                let after = index + 1;
                return match bytes[after..].iter().position(|&byte| !is_whitespace(byte)) {
                    Some(offset) => Err(SplitError::TrailingText(after + offset)),
                    None => Ok(slices),
                };
            }
            b',' if depth == 1 => {
                slices.push(slice(&bytes[slot_start..index], slot_depth));
                slot_start = index + 1;
                slot_depth = 1;
            }
            _ => {}
        }
        index += 1;
    }
    Err(SplitError::Unclosed(depth))
}

/// The index just past the quote that closes the string whose opening quote is at `open`, or
/// `None` when the text ends first. A backslash escapes the byte after it, whatever it is.
fn string_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut index = open + 1;
    loop {
        index = find_either(bytes, index, b'"', b'\\')?;
        if bytes[index] == b'"' {
            return Some(index + 1);
        }
        index += 2;
    }
}

/// The index of the first byte at or after `from` that is `first` or `second`.
///
/// Most of a payload is string content, and the scans for string ends (here) and for NULs
/// and escapes ([`crate::sources::fields::unstorable`]) are the hot loops of parsing, so this
/// tests eight bytes at a time.
pub(crate) fn find_either(bytes: &[u8], from: usize, first: u8, second: u8) -> Option<usize> {
    let mut index = from;
    while let Some(chunk) = bytes.get(index..index + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("a chunk of eight bytes"));
        let found = matching_bytes(word, first) | matching_bytes(word, second);
        if found != 0 {
            // Loaded little-endian, the lowest set bit marks the first matching byte.
            return Some(index + (found.trailing_zeros() / 8) as usize);
        }
        index += 8;
    }
    let rest = bytes.get(index..)?;
    let offset = rest.iter().position(|&byte| byte == first || byte == second)?;
    Some(index + offset)
}

/// Sets the high bit of the bytes of `word` equal to `byte`: the "has a zero byte" bit trick
/// on `word ^ byte` repeated. Only the lowest set bit is exact (a borrow can mark a byte above
/// a match), which is all [`find_either`] uses.
fn matching_bytes(word: u64, byte: u8) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zeroed = word ^ (ONES * u64::from(byte));
    zeroed.wrapping_sub(ONES) & !zeroed & HIGHS
}

fn closing(open: u8) -> u8 {
    if open == b'[' {
        b']'
    } else {
        b'}'
    }
}

fn slice(slot: &[u8], slot_depth: usize) -> Slice<'_> {
    Slice {
        bytes: trim(slot),
        depth: slot_depth - 1,
    }
}

/// Reads one object slot as `"key": value`.
fn member(slot: Slice<'_>) -> Member<'_> {
    let text = slot.bytes;
    let malformed = |why: &str| Member {
        key: Err(why.to_string()),
        value: Slice { bytes: &[], depth: 0 },
        text,
    };
    if text.is_empty() {
        return malformed("the member is empty (two commas in a row, or a comma before the closing brace)");
    }
    if text[0] != b'"' {
        return malformed("the member does not start with a quoted key");
    }
    // The slot was cut outside strings, so the key's closing quote is inside it.
    let Some(key_end) = string_end(text, 0) else {
        return malformed("the member's key is not closed");
    };
    let Some(value) = trim(&text[key_end..]).strip_prefix(b":") else {
        return malformed("the member has no `:` after its key");
    };
    Member {
        key: decode_key(&text[..key_end]),
        value: Slice {
            bytes: trim(value),
            depth: slot.depth,
        },
        text,
    }
}

/// A quoted key's text. Keys without escapes are taken as they are; the others go through
/// serde_json, which decodes escapes and refuses what a JSON string cannot hold.
fn decode_key(quoted: &[u8]) -> Result<String, String> {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.iter().any(|&byte| byte == b'\\' || byte < 0x20) {
        if let Ok(key) = std::str::from_utf8(inner) {
            return Ok(key.to_string());
        }
    }
    serde_json::from_slice::<String>(quoted)
        .map_err(|error| format!("the member's key is not a valid JSON string: {error}"))
}

/// The four whitespace bytes of JSON (not the form feed that `trim_ascii` also removes).
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&byte| !is_whitespace(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&byte| !is_whitespace(byte))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element texts of `array`, which must split.
    fn texts(array: &str) -> Vec<&str> {
        elements(array.as_bytes())
            .unwrap_or_else(|error| panic!("{array}: {error}"))
            .into_iter()
            .map(|element| std::str::from_utf8(element.bytes).unwrap())
            .collect()
    }

    fn keys<'a>(members: &'a [Member<'_>]) -> Vec<Result<&'a str, &'a str>> {
        members
            .iter()
            .map(|member| member.key.as_deref().map_err(String::as_str))
            .collect()
    }

    fn values<'a>(members: &[Member<'a>]) -> Vec<&'a str> {
        members
            .iter()
            .map(|member| std::str::from_utf8(member.value.bytes).unwrap())
            .collect()
    }

    #[test]
    fn keys_are_the_decoded_top_level_keys() {
        let object = br#" {"id": 1, "nested": {"inner": 2}, "esc\u00e9": [3], "a,b": "x:y", bad, "": null} "#;
        let found: Vec<String> = super::keys(object).unwrap().into_iter().map(String::from).collect();
        assert_eq!(found, ["id", "nested", "esc\u{e9}", "a,b", ""]);
        let plain = super::keys(borrowed_plain()).unwrap();
        assert!(matches!(plain[0], Cow::Borrowed("plain")));
        assert!(matches!(super::keys(b"[1]"), Err(SplitError::WrongKind { .. })));
        assert_eq!(super::keys(b"{}").unwrap().len(), 0);
    }

    fn borrowed_plain() -> &'static [u8] {
        br#"{"plain":1}"#
    }

    #[test]
    fn elements_are_the_exact_texts_between_commas_of_depth_one() {
        assert_eq!(
            texts(r#"[1,"a",null,{"b":[2,3]},[4,[5]]]"#),
            ["1", r#""a""#, "null", r#"{"b":[2,3]}"#, "[4,[5]]"]
        );
        assert_eq!(texts("[]"), Vec::<&str>::new());
        assert_eq!(texts(" \n[ \t\r\n ] \n"), Vec::<&str>::new());
        assert_eq!(texts("[ {} , [] ,\n\t{ \"a\" : 1 }\n]"), ["{}", "[]", "{ \"a\" : 1 }"]);
    }

    #[test]
    fn strings_hide_brackets_commas_and_escaped_quotes() {
        let cases = [
            (r#"["a,b","[{","}]"]"#, vec![r#""a,b""#, r#""[{""#, r#""}]""#]),
            (r#"[{"x":"say \"hi\", ]"},2]"#, vec![r#"{"x":"say \"hi\", ]"}"#, "2"]),
            (
                r#"["back\\",",",{"k\\\"":"]"}]"#,
                vec![r#""back\\""#, r#"",""#, r#"{"k\\\"":"]"}"#],
            ),
            (
                r#"["\u005d\u0022",{"\u007b":1}]"#,
                vec![r#""\u005d\u0022""#, r#"{"\u007b":1}"#],
            ),
        ];
        for (array, expected) in cases {
            assert_eq!(texts(array), expected, "{array}");
        }
    }

    #[test]
    fn depth_counts_the_brackets_open_inside_each_element() {
        let array = br#"[1, {"a":[[2]]}, [], "[[[", {"b":{}}]"#;
        let depths: Vec<usize> = elements(array).unwrap().iter().map(|element| element.depth).collect();
        assert_eq!(depths, [0, 3, 1, 0, 2]);
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        let levels = 100_000;
        let array = format!(
            r#"[{{"x":{}{}}},{{"id":"ok"}}]"#,
            "[".repeat(levels),
            "]".repeat(levels)
        );
        let split = elements(array.as_bytes()).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].depth, levels + 1);
        assert_eq!(split[1].bytes, br#"{"id":"ok"}"#);
    }

    #[test]
    fn malformed_elements_stay_inside_their_own_slice() {
        assert_eq!(
            texts(r#"[{"id":"a","likes": },{"id":"a" "x": 1},{"id":"ok"}]"#),
            [r#"{"id":"a","likes": }"#, r#"{"id":"a" "x": 1}"#, r#"{"id":"ok"}"#]
        );
        // A missing comma joins two values into one slice, rejected as one record.
        assert_eq!(texts(r#"[{"id":"a"} {"id":"b"},3]"#), [r#"{"id":"a"} {"id":"b"}"#, "3"]);
        // Empty slots are kept, so that they can be rejected.
        assert_eq!(texts("[1,,2]"), ["1", "", "2"]);
        assert_eq!(texts("[1, ]"), ["1", ""]);
        assert_eq!(texts("[,]"), ["", ""]);
    }

    #[test]
    fn bytes_that_are_not_utf8_stay_in_their_element() {
        let mut array = br#"[{"id":"a"},{"id":"b"#.to_vec();
        array.extend_from_slice(b"\xFF\xFE\"\x80,\"c\":\"]\xC3\"}");
        array.extend_from_slice(br#",{"id":"c"}]"#);
        let split = elements(&array).unwrap();
        assert_eq!(split.len(), 3);
        assert_eq!(split[1].bytes, b"{\"id\":\"b\xFF\xFE\"\x80,\"c\":\"]\xC3\"}");
        assert_eq!(split[2].bytes, br#"{"id":"c"}"#);
    }

    #[test]
    fn a_broken_outer_structure_is_an_error() {
        let cases = [
            ("", SplitError::Empty),
            (" \n ", SplitError::Empty),
            ("[1,2", SplitError::Unclosed(1)),
            (r#"[{"id":[1,"#, SplitError::Unclosed(3)),
            (r#"[{"id":"ab"#, SplitError::EndsInString(7)),
            (r#"["a\"]"#, SplitError::EndsInString(1)),
            ("[1]]", SplitError::TrailingText(3)),
            ("[1] x", SplitError::TrailingText(4)),
            (
                "[1}",
                SplitError::MismatchedClose {
                    offset: 2,
                    found: '}',
                    opened: '[',
                },
            ),
            (
                r#"{"a":1}"#,
                SplitError::WrongKind {
                    expected: "array",
                    found: "object",
                },
            ),
            (
                " null ",
                SplitError::WrongKind {
                    expected: "array",
                    found: "null",
                },
            ),
            (
                r#""[1]""#,
                SplitError::WrongKind {
                    expected: "array",
                    found: "string",
                },
            ),
        ];
        for (array, expected) in cases {
            assert_eq!(elements(array.as_bytes()), Err(expected), "{array}");
        }
        // An object of another kind is checked for structure before being called the wrong kind.
        assert_eq!(elements(br#"{"a":"#), Err(SplitError::Unclosed(1)));
        for garbage in ["Rate limited", "<html>", "nul", "\u{0}\u{1}"] {
            assert!(
                matches!(elements(garbage.as_bytes()), Err(SplitError::NotJson(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn members_decode_keys_and_keep_values_exact() {
        let object = br#" { "a" : 1 , "b\"c": {"x":[1,2]}, "\u00e9":"v,}" ,"a":null} "#;
        let split = members(object).unwrap();
        assert_eq!(keys(&split), [Ok("a"), Ok("b\"c"), Ok("é"), Ok("a")]);
        assert_eq!(values(&split), ["1", r#"{"x":[1,2]}"#, r#""v,}""#, "null"]);
        assert_eq!(split[1].text, br#""b\"c": {"x":[1,2]}"#);
        assert_eq!(split[1].value.depth, 2);
        assert!(members(b"{}").unwrap().is_empty());
        assert!(members(b" {\n} ").unwrap().is_empty());
        assert_eq!(keys(&members(br#"{"k:,}":1}"#).unwrap()), [Ok("k:,}")]);
    }

    #[test]
    fn malformed_members_are_returned_with_the_reason() {
        let object = br#"{"ok":1, a:1, "b" 2, "c\x":3, "", "d":, "e\ud800":4,}"#;
        let split = members(object).unwrap();
        let texts: Vec<&[u8]> = split.iter().map(|member| member.text).collect();
        assert_eq!(
            texts,
            [
                &br#""ok":1"#[..],
                b"a:1",
                br#""b" 2"#,
                br#""c\x":3"#,
                br#""""#,
                br#""d":"#,
                br#""e\ud800":4"#,
                b""
            ]
        );
        let reasons: Vec<&str> = split
            .iter()
            .map(|member| member.key.as_ref().err().map_or("", String::as_str))
            .collect();
        assert_eq!(reasons[0], "");
        assert_eq!(reasons[1], "the member does not start with a quoted key");
        assert_eq!(reasons[2], "the member has no `:` after its key");
        assert!(reasons[3].starts_with("the member's key is not a valid JSON string: invalid escape"));
        assert_eq!(reasons[4], "the member has no `:` after its key");
        // A readable key with an empty value: the value's own validation rejects it.
        assert_eq!(split[5].key.as_deref(), Ok("d"));
        assert_eq!(split[5].value.bytes, b"");
        assert!(reasons[6].starts_with("the member's key is not a valid JSON string"));
        assert!(reasons[7].starts_with("the member is empty"));
    }

    #[test]
    fn keys_that_are_not_utf8_are_malformed() {
        let split = members(b"{\"\xFF\":1,\"ok\":2}").unwrap();
        assert!(split[0].key.is_err());
        assert_eq!(split[0].text, b"\"\xFF\":1");
        assert_eq!(split[1].key.as_deref(), Ok("ok"));
    }

    #[test]
    fn find_either_finds_the_first_of_two_bytes_anywhere() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for (at, &byte) in text.iter().enumerate() {
            assert_eq!(find_either(text, 0, byte, b'!'), Some(at), "{}", char::from(byte));
            assert_eq!(find_either(text, 0, b'!', byte), Some(at));
            assert_eq!(find_either(text, at, byte, b'!'), Some(at));
            assert_eq!(find_either(text, at + 1, byte, b'!'), None);
        }
        // Bytes just above or below a match, and high bytes, are not matches.
        let tricky = b"\x21\x23\xA2\x22\x80\xFF\x00\x5B\x5C";
        assert_eq!(find_either(tricky, 0, b'"', 0xFE), Some(3));
        assert_eq!(find_either(tricky, 0, 0x00, b'\\'), Some(6));
        assert_eq!(find_either(tricky, 7, b'\\', b'\\'), Some(8));
        assert_eq!(find_either(tricky, 9, b'a', b'b'), None);
        assert_eq!(find_either(tricky, 10, b'a', b'b'), None);
    }

    #[test]
    fn members_of_something_else_are_an_error() {
        assert_eq!(
            members(b"[1]"),
            Err(SplitError::WrongKind {
                expected: "object",
                found: "array",
            })
        );
        assert_eq!(members(br#"{"a":{"b":1}"#), Err(SplitError::Unclosed(1)));
    }
}
