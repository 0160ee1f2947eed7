//! Durations in queries: `"7d"`, `"12h"`, `"30m"`, `"1w"` (humantime syntax) or a number of seconds.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A span of time, stored in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub i64);

impl Span {
    pub const DAY: Span = Span(86_400_000);

    pub fn ms(self) -> i64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Span, String> {
        let t = text.trim();
        if let Ok(secs) = t.parse::<f64>() {
            if secs < 0.0 || !secs.is_finite() {
                return Err(format!("`{t}` is not a positive duration"));
            }
            return Ok(Span((secs * 1000.0).round() as i64));
        }
        humantime::parse_duration(t)
            .map(|d| Span(d.as_millis().min(i64::MAX as u128) as i64))
            .map_err(|e| format!("`{t}` is not a duration like 7d, 12h or 30m: {e}"))
    }
}

/// Whole days, hours, minutes or seconds as typed (`90d`, `36h`, `30m`), else humantime's form
/// (`1h 30m 15s`; humantime's months and years are avoided, being 30.44 and 365.25 days).
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.max(0);
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms > 0 && ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        let d = std::time::Duration::from_millis(ms as u64);
        write!(f, "{}", humantime::format_duration(d))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        #[derive(Deserialize, utoipa::ToSchema)]
        #[serde(untagged)]
        enum Raw {
            Secs(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Span::parse(&s.to_string()),
            Raw::Text(t) => Span::parse(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// In the OpenAPI document: a humantime string or a number of seconds.
impl utoipa::PartialSchema for Span {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String).examples(["7d"]))
            .item(ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0.0)))
            .description(Some(
                "A duration: `\"7d\"`, `\"12h\"`, `\"30m\"`, `\"1w\"` (humantime syntax), or a number of seconds.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Span {
    fn name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(Span::parse("7d").unwrap().ms(), 7 * 86_400_000);
        assert_eq!(Span::parse("90").unwrap().ms(), 90_000);
        assert_eq!(Span::parse("1h 30m").unwrap().ms(), 5_400_000);
        assert!(Span::parse("soon").is_err());
        assert!(Span::parse("-3").is_err());
        for text in ["90d", "36h", "30m", "45s", "250ms"] {
            assert_eq!(Span::parse(text).unwrap().to_string(), text, "round trip");
        }
        let odd = Span::parse("1h 30m 15s").unwrap();
        assert_eq!(Span::parse(&odd.to_string()).unwrap(), odd);
    }
}
