//! JSON objects read one level deep: members in order, each value kept as its raw JSON text.
//!
//! Ingestion reads a handful of fields of every message and stores the rest as sent. Building a
//! full `serde_json::Value` tree and serializing it again was most of the CPU time of HTTP
//! ingestion, so messages are split into members whose values stay raw text; a batch's messages
//! have their `context` split in the same pass ([`SplitMessage`]), the other objects that are
//! read (`properties`, `context.page`, ...) are split again, and the stored message is written
//! from the members, minified (copying what is known to be minified).

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The JSON type of a raw value, by its first byte (the text is valid JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    pub fn of(text: &str) -> JsonType {
        match text.as_bytes().first() {
            Some(b'n') => JsonType::Null,
            Some(b't' | b'f') => JsonType::Boolean,
            Some(b'"') => JsonType::String,
            Some(b'[') => JsonType::Array,
            Some(b'{') => JsonType::Object,
            _ => JsonType::Number,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

/// A JSON object split into members. Keys are unescaped; values are raw JSON text (borrowed from
/// the input, or owned when the server replaced them). A key that appears twice keeps its first
/// position and its last value, as JSON parsers that keep the last value read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawObject<'a> {
    members: Vec<Member<'a>>,
}

/// One member of a [`RawObject`].
#[derive(Debug, Clone, PartialEq)]
struct Member<'a> {
    key: Cow<'a, str>,
    value: Cow<'a, str>,
    /// The value is known to hold no whitespace between its tokens, so writing the object
    /// copies it instead of scanning it again: scalars as a parser hands them over, and what
    /// the server wrote itself (a merged `context` would otherwise be scanned twice).
    minified: bool,
}

impl<'a> Member<'a> {
    /// A member whose value is raw text as a JSON parser returns it (no surrounding whitespace).
    fn parsed(key: Cow<'a, str>, value: Cow<'a, str>) -> Member<'a> {
        let minified = is_scalar(&value);
        Member {
            key,
            value,
            minified,
        }
    }
}

/// True when raw JSON text (without surrounding whitespace) is a string, number or literal: a
/// single token, which has no whitespace to remove.
fn is_scalar(text: &str) -> bool {
    !matches!(text.as_bytes().first(), Some(b'{' | b'['))
}

impl<'a> RawObject<'a> {
    /// Splits `text`, which must be a JSON object.
    pub fn parse(text: &'a str) -> serde_json::Result<RawObject<'a>> {
        serde_json::from_str(text)
    }

    /// Splits a raw value when it is an object.
    pub fn of_value(text: &'a str) -> Option<RawObject<'a>> {
        if JsonType::of(text) == JsonType::Object {
            RawObject::parse(text).ok()
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.members
            .iter()
            .map(|m| (m.key.as_ref(), m.value.as_ref()))
    }

    /// The raw JSON text of a member.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.members[i].value.as_ref())
    }

    /// A member's raw text with the input's lifetime (a cheap copy when it is borrowed).
    pub fn get_cow(&self, key: &str) -> Option<Cow<'a, str>> {
        self.position(key).map(|i| self.members[i].value.clone())
    }

    /// Splits raw text when it is an object, borrowing from it when it is borrowed.
    pub fn of_cow(text: Cow<'a, str>) -> Option<RawObject<'a>> {
        match text {
            Cow::Borrowed(s) => RawObject::of_value(s),
            Cow::Owned(s) => RawObject::of_value(&s).map(RawObject::into_owned),
        }
    }

    pub fn into_owned(self) -> RawObject<'static> {
        RawObject {
            members: self
                .members
                .into_iter()
                .map(|m| Member {
                    key: Cow::Owned(m.key.into_owned()),
                    value: Cow::Owned(m.value.into_owned()),
                    minified: m.minified,
                })
                .collect(),
        }
    }

    /// A member's value when it is a string (unescaped).
    pub fn get_str(&self, key: &str) -> Option<Cow<'_, str>> {
        self.get(key).and_then(json_str)
    }

    /// A member's value split again when it is an object.
    pub fn get_object(&self, key: &str) -> Option<RawObject<'_>> {
        self.get(key).and_then(RawObject::of_value)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.members.iter().position(|m| m.key == key)
    }

    /// Sets a member to minified JSON text (as [`RawObject::to_json`] and
    /// [`push_json_string`] write it): in place when present, else at the end.
    pub fn set(&mut self, key: &'a str, text: impl Into<Cow<'a, str>>) {
        let value = text.into();
        match self.position(key) {
            Some(i) => {
                self.members[i].value = value;
                self.members[i].minified = true;
            }
            None => self.members.push(Member {
                key: Cow::Borrowed(key),
                value,
                minified: true,
            }),
        }
    }

    /// Sets a member to a string value.
    pub fn set_str(&mut self, key: &'a str, s: &str) {
        let mut text = String::with_capacity(s.len() + 2);
        push_json_string(&mut text, s);
        self.set(key, text);
    }

    /// Adds a member only when the key is absent; `text` is raw JSON text as a parser returns
    /// it.
    pub fn set_default(&mut self, key: Cow<'a, str>, text: Cow<'a, str>) {
        if self.position(&key).is_none() {
            self.members.push(Member::parsed(key, text));
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(i) = self.position(key) {
            self.members.remove(i);
        }
    }

    /// Appends the object as minified JSON.
    pub fn write(&self, out: &mut String) {
        out.push('{');
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(out, &m.key);
            out.push(':');
            if m.minified {
                out.push_str(&m.value);
            } else {
                push_minified(out, &m.value);
            }
        }
        out.push('}');
    }

    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(
            2 + self
                .members
                .iter()
                .map(|m| m.key.len() + m.value.len() + 4)
                .sum::<usize>(),
        );
        self.write(&mut out);
        out
    }

    /// Keeps one member per key: the first position, the last value.
    fn dedup(&mut self) {
        let n = self.members.len();
        let repeated = if n <= 64 {
            (1..n).any(|i| {
                self.members[..i]
                    .iter()
                    .any(|m| m.key == self.members[i].key)
            })
        } else {
            let mut seen = std::collections::HashSet::with_capacity(n);
            !self.members.iter().all(|m| seen.insert(m.key.as_ref()))
        };
        if !repeated {
            return;
        }
        let mut out: Vec<Member<'a>> = Vec::with_capacity(n);
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        for m in self.members.drain(..) {
            match index.get(m.key.as_ref()) {
                Some(&i) => {
                    out[i].value = m.value;
                    out[i].minified = m.minified;
                }
                None => {
                    index.insert(m.key.to_string(), out.len());
                    out.push(m);
                }
            }
        }
        self.members = out;
    }
}

impl<'a> RawObject<'a> {
    /// Reads the members of a map a deserializer is visiting (for types that contain objects).
    pub fn from_map<'de: 'a, A: MapAccess<'de>>(map: A) -> Result<RawObject<'a>, A::Error> {
        Self::read_members(map, 8, None, |_| unreachable!("no member is split"))
    }

    /// [`RawObject::from_map`], with the value of the member named `split` read by `read`,
    /// which returns the text that stands in its place (see [`SplitMessage`]). `capacity`:
    /// members expected when the map does not say. A repeated key keeps its last value.
    fn read_members<'de: 'a, A: MapAccess<'de>>(
        mut map: A,
        capacity: usize,
        split: Option<&str>,
        mut read: impl FnMut(&mut A) -> Result<&'static str, A::Error>,
    ) -> Result<RawObject<'a>, A::Error> {
        let mut obj = RawObject {
            members: Vec::with_capacity(map.size_hint().unwrap_or(capacity)),
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let member = match split {
                Some(name) if key.0 == name => Member {
                    key: key.0,
                    value: Cow::Borrowed(read(&mut map)?),
                    minified: true,
                },
                _ => {
                    let value: &'de RawValue = map.next_value()?;
                    Member::parsed(key.0, Cow::Borrowed(value.get()))
                }
            };
            obj.members.push(member);
        }
        obj.dedup();
        Ok(obj)
    }

    /// The size of the object as compact JSON, near enough for size limits (keys counted
    /// unescaped, values as sent).
    pub fn json_len(&self) -> usize {
        1 + self
            .members
            .iter()
            .map(|m| m.key.len() + m.value.len() + 4)
            .sum::<usize>()
    }
}

/// Values read from a JSON object as a deserializer visits it.
pub trait ReadObject<'de>: Sized {
    fn read<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

impl<'de: 'a, 'a> ReadObject<'de> for RawObject<'a> {
    fn read<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        RawObject::from_map(map)
    }
}

/// A JSON value read as `T` when it is an object; of any other value only its type is kept (a
/// message, or an object the server reads and writes again, in one pass with what holds it).
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectOr<T> {
    Object(T),
    Other(JsonType),
}

impl<'de, T: ReadObject<'de>> Deserialize<'de> for ObjectOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AnyVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: ReadObject<'de>> Visitor<'de> for AnyVisitor<T> {
            type Value = ObjectOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::read(map).map(ObjectOr::Object)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(ObjectOr::Other(JsonType::Array))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ObjectOr::Other(JsonType::Boolean))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(ObjectOr::Other(JsonType::Number))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(ObjectOr::Other(JsonType::Number))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(ObjectOr::Other(JsonType::Number))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ObjectOr::Other(JsonType::String))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ObjectOr::Other(JsonType::Null))
            }
        }
        d.deserialize_any(AnyVisitor(std::marker::PhantomData))
    }
}

/// A member's value split into members as the object holding it is read, when it is an object
/// (else only its type is kept): ingestion reads every message's `context` and writes it again,
/// and splitting it in the same pass saves a second pass over most of a message's text.
pub type Nested<'a> = ObjectOr<RawObject<'a>>;

impl<'a> ObjectOr<RawObject<'a>> {
    /// Splits raw text (as a parser returns it) the same way.
    fn of_text(text: Cow<'a, str>) -> Nested<'a> {
        match JsonType::of(&text) {
            // never taken as no object: the context would be dropped without a word
            JsonType::Object => {
                Nested::Object(RawObject::of_cow(text).expect("a parser's raw object splits"))
            }
            t => Nested::Other(t),
        }
    }

    /// Text of the value's type that stands in the holding object for the split value, so that
    /// its key keeps its place and its type reads as before.
    fn placeholder(&self) -> &'static str {
        match self {
            Nested::Object(_) | Nested::Other(JsonType::Object) => "{}",
            Nested::Other(JsonType::Null) => "null",
            Nested::Other(JsonType::Boolean) => "false",
            Nested::Other(JsonType::Number) => "0",
            Nested::Other(JsonType::String) => "\"\"",
            Nested::Other(JsonType::Array) => "[]",
        }
    }

    /// Size as compact JSON, near enough for size limits (a value that is not an object counts
    /// as its placeholder).
    fn json_len(&self) -> usize {
        match self {
            Nested::Object(o) => o.json_len(),
            other => other.placeholder().len(),
        }
    }
}

/// A message split into members, its `context` split too (see [`Nested`]). The members hold the
/// context's [`Nested::placeholder`] until it is written back.
#[derive(Debug, Clone)]
pub struct SplitMessage<'a> {
    pub members: RawObject<'a>,
    pub context: Option<Nested<'a>>,
}

impl<'a> SplitMessage<'a> {
    /// Reads a map's members as [`RawObject::from_map`] does, splitting `context` as it goes.
    pub fn from_map<'de: 'a, A: MapAccess<'de>>(map: A) -> Result<SplitMessage<'a>, A::Error> {
        let mut context = None;
        let read_context = |map: &mut A| {
            let nested: Nested<'de> = map.next_value()?;
            let placeholder = nested.placeholder();
            // a repeated key keeps its last value, as the members do
            context = Some(nested);
            Ok(placeholder)
        };
        let members = RawObject::read_members(map, 12, Some("context"), read_context)?;
        Ok(SplitMessage { members, context })
    }

    /// Splits the `context` of a message whose members were read whole.
    pub fn from_object(mut members: RawObject<'a>) -> SplitMessage<'a> {
        let context = members.position("context").map(|i| {
            let member = &mut members.members[i];
            let nested = Nested::of_text(member.value.clone());
            member.value = Cow::Borrowed(nested.placeholder());
            member.minified = true;
            nested
        });
        SplitMessage { members, context }
    }

    /// The size of the message as compact JSON, near enough for size limits.
    pub fn json_len(&self) -> usize {
        let placeholder = self.context.as_ref().map_or(0, |c| c.placeholder().len());
        self.members.json_len() - placeholder + self.context.as_ref().map_or(0, Nested::json_len)
    }
}

impl<'de: 'a, 'a> ReadObject<'de> for SplitMessage<'a> {
    fn read<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        SplitMessage::from_map(map)
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawObject::from_map(map)
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// An object key, borrowed from the input unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The string a raw JSON value holds, unescaped; `None` when it is not a string.
pub fn json_str(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    let plain = s
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f);
    if plain {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("strings serialize"));
    }
}

/// Appends valid JSON text without the whitespace between its tokens (so a stored message is
/// one line, whatever the client's formatting).
pub fn push_minified(out: &mut String, text: &str) {
    let b = text.as_bytes();
    let mut i = 0;
    let mut start = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while let Some(k) = memchr::memchr2(b'"', b'\\', &b[i..]) {
                    if b[i + k] == b'\\' {
                        i += k + 2;
                    } else {
                        i += k + 1;
                        break;
                    }
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => {
                out.push_str(&text[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[start..]);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn members_keep_order_and_last_value() {
        let o =
            RawObject::parse(r#"{"b": 1, "a": {"x": [1, 2]}, "b": "two", "k\"ey": null}"#).unwrap();
        assert_eq!(
            o.iter().collect::<Vec<_>>(),
            vec![
                ("b", r#""two""#),
                ("a", r#"{"x": [1, 2]}"#),
                ("k\"ey", "null")
            ]
        );
        assert_eq!(o.to_json(), r#"{"b":"two","a":{"x":[1,2]},"k\"ey":null}"#);
        assert_eq!(o.get_str("b").as_deref(), Some("two"));
        assert_eq!(o.get_object("a").unwrap().get("x"), Some("[1, 2]"));
    }

    #[test]
    fn written_objects_are_minified_whatever_their_members_came_from() {
        let mut o = RawObject::parse("{ \"a\" : [ 1 , 2 ] , \"s\" : \"x  y\" }").unwrap();
        o.set_default(Cow::Borrowed("b"), Cow::Borrowed("{ \"c\" :\n true }"));
        o.set(
            "d",
            RawObject::parse("{ \"e\" : [ null ] }").unwrap().to_json(),
        );
        assert_eq!(
            o.to_json(),
            r#"{"a":[1,2],"s":"x  y","b":{"c":true},"d":{"e":[null]}}"#
        );
    }

    #[test]
    fn long_objects_keep_the_last_value_too() {
        let mut m = serde_json::Map::new();
        let mut text = String::from("{");
        for i in 0..100 {
            text.push_str(&format!("\"k{}\":{i},", i % 70));
            m.insert(format!("k{}", i % 70), json!(i));
        }
        text.push_str("\"end\":true}");
        m.insert("end".into(), json!(true));
        let o = RawObject::parse(&text).unwrap();
        assert_eq!(o.len(), 71);
        let back: Value = serde_json::from_str(&o.to_json()).unwrap();
        assert_eq!(back, Value::Object(m));
    }

    #[test]
    fn escaped_strings() {
        assert_eq!(json_str(r#""a\nb""#).as_deref(), Some("a\nb"));
        assert_eq!(json_str("12"), None);
        let mut s = String::new();
        push_json_string(&mut s, "quote\" and \u{1}");
        assert_eq!(
            serde_json::from_str::<String>(&s).unwrap(),
            "quote\" and \u{1}"
        );
    }

    proptest! {
        /// Minifying keeps the value and leaves no whitespace outside strings.
        #[test]
        fn minified_json_is_the_same_value(v in arb_json(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
            let mut out = String::new();
            push_minified(&mut out, &text);
            prop_assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), v.clone());
            prop_assert_eq!(out, v.to_string());
        }
    }

    /// Any JSON value, with strings that need escaping and keys with spaces.
    pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[ \\\\\"a-z\n\t{}:,]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[ a-z\"]{0,5}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
