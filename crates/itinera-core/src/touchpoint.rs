//! The typed row stored for every message: what the journey engine reads without parsing JSON.

use crate::channel::ChannelRules;
use crate::json::{json_str, JsonType, RawObject};
use crate::message::{number_text, Message, MessageType};
use std::borrow::Cow;

/// Longest property value kept as a typed property (longer ones stay in the message only).
pub const MAX_PROP_VALUE: usize = 200;
/// Open answers (`properties.comment`) are kept up to this length, for search and sentiment.
pub const MAX_COMMENT_VALUE: usize = 2_000;
/// Most properties kept per message.
pub const MAX_PROPS: usize = 64;

/// One touchpoint of a journey: the typed facts of a message next to the full message.
#[derive(Debug, Clone, PartialEq)]
pub struct Touchpoint {
    pub kind: MessageType,
    pub message_id: String,
    pub timestamp_ms: i64,
    pub received_at_ms: i64,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// For alias: the id being merged into `user_id`.
    pub previous_id: Option<String>,
    /// For group, and any message with `context.groupId`: the B2B account.
    pub group_id: Option<String>,
    /// Track: the event; other types: their implicit name (`page_view`, `identify`, ...).
    pub event: String,
    pub channel: String,
    /// Event name, or page/screen name, or the grouped page path.
    pub touchpoint: String,
    /// `properties.revenue`, else `properties.total`, when numeric.
    pub revenue: Option<f64>,
    /// Scalar properties and traits as (`properties.KEY` | `traits.KEY`, value as text): what
    /// selectors filter on and analyses read (roles, scores, referral codes) without parsing JSON.
    pub props: Vec<(String, String)>,
    /// The whole normalized message as JSON.
    pub body: String,
}

impl Touchpoint {
    /// Takes the message by value: its body and ids move into the touchpoint uncopied.
    pub fn from_message(mut m: Message<'_>, rules: &ChannelRules) -> Touchpoint {
        let event = match m.kind {
            MessageType::Track => m.event.clone().unwrap_or_default(),
            k => k.implicit_event_name().to_string(),
        };
        let touchpoint = match m.kind {
            MessageType::Page => m
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| {
                    m.properties()
                        .and_then(|p| p.get_str("path"))
                        .map(|p| group_page_path(&p))
                        .or_else(|| {
                            m.page()
                                .and_then(|p| p.get_str("path").map(|p| group_page_path(&p)))
                        })
                })
                .unwrap_or_else(|| event.clone()),
            MessageType::Screen => m
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| event.clone()),
            _ => event.clone(),
        };
        let revenue = m.properties().and_then(|p| {
            ["revenue", "total"].iter().find_map(|k| {
                let text = p.get(k)?;
                let value = match JsonType::of(text) {
                    JsonType::Number => text.parse::<f64>().ok(),
                    JsonType::String => json_str(text)?.trim().parse::<f64>().ok(),
                    _ => None,
                };
                value.filter(|v| v.is_finite())
            })
        });
        let group_id = m.group_id.take().or_else(|| {
            m.context()
                .and_then(|c| c.get_str("groupId"))
                .map(Cow::into_owned)
        });
        let channel = rules.classify(&m);
        let props = scalar_props(
            m.properties(),
            m.traits(),
            m.context_object("traits").as_ref(),
            m.campaign(),
        );
        Touchpoint {
            kind: m.kind,
            message_id: m.message_id,
            timestamp_ms: m.timestamp_ms,
            received_at_ms: m.received_at_ms,
            user_id: m.user_id,
            anonymous_id: m.anonymous_id,
            previous_id: m.previous_id,
            group_id,
            event,
            channel,
            touchpoint,
            revenue,
            props,
            body: m.body,
        }
    }

    /// The typed properties of a stored message body (as [`Touchpoint::props`]).
    pub fn props_from_body(body: &str) -> Vec<(String, String)> {
        let Some(root) = RawObject::of_value(body.trim_start()) else {
            return Vec::new();
        };
        let context = root.get_object("context");
        scalar_props(
            root.get_object("properties").as_ref(),
            root.get_object("traits").as_ref(),
            context
                .as_ref()
                .and_then(|c| c.get_object("traits"))
                .as_ref(),
            context
                .as_ref()
                .and_then(|c| c.get_object("campaign"))
                .as_ref(),
        )
    }

    /// The id the journey is keyed on before stitching: the user id when known.
    pub fn distinct_id(&self) -> &str {
        self.user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .unwrap_or("")
    }

    /// Pairs of ids this message says belong to one person (identify, alias, or both ids present).
    pub fn identity_links(&self) -> Vec<(&str, &str)> {
        let mut links = Vec::new();
        if let (Some(u), Some(a)) = (&self.user_id, &self.anonymous_id) {
            links.push((u.as_str(), a.as_str()));
        }
        if self.kind == MessageType::Alias {
            if let (Some(u), Some(p)) = (&self.user_id, &self.previous_id) {
                links.push((u.as_str(), p.as_str()));
            }
        }
        links
    }
}

/// Top-level scalar values of `properties`, of `traits` (the message's own, else those in
/// `context.traits`) and of the UTM campaign (`context.campaign`, as `campaign.NAME`): strings up
/// to [`MAX_PROP_VALUE`] bytes, numbers as JSON writes them, booleans as `true`/`false`. Nested
/// objects and arrays are not kept as typed properties.
pub fn scalar_props(
    properties: Option<&RawObject<'_>>,
    traits: Option<&RawObject<'_>>,
    context_traits: Option<&RawObject<'_>>,
    campaign: Option<&RawObject<'_>>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let add = |prefix: &str, m: &RawObject<'_>, out: &mut Vec<(String, String)>| {
        for (k, v) in m.iter() {
            if out.len() >= MAX_PROPS {
                return;
            }
            let text = match JsonType::of(v) {
                JsonType::String => {
                    let s = json_str(v).unwrap_or_default();
                    let limit = if prefix == "properties" && k == "comment" {
                        MAX_COMMENT_VALUE
                    } else {
                        MAX_PROP_VALUE
                    };
                    if s.len() > limit {
                        continue;
                    }
                    s.into_owned()
                }
                JsonType::Number => number_text(v),
                JsonType::Boolean => v.to_string(),
                _ => continue,
            };
            let mut key = String::with_capacity(prefix.len() + 1 + k.len());
            key.push_str(prefix);
            key.push('.');
            key.push_str(k);
            if !out.iter().any(|(e, _)| *e == key) {
                out.push((key, text));
            }
        }
    };
    if let Some(p) = properties {
        add("properties", p, &mut out);
    }
    for t in [traits, context_traits].into_iter().flatten() {
        add("traits", t, &mut out);
    }
    if let Some(c) = campaign {
        add("campaign", c, &mut out);
    }
    out
}

/// Groups a page path so that pages of one kind share a touchpoint: numeric, hex and UUID-like
/// segments become `:id`; query strings and fragments are dropped; a trailing slash is removed.
pub fn group_page_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let is_id = seg.chars().all(|c| c.is_ascii_digit())
            || (seg.len() >= 8
                && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                && seg.chars().any(|c| c.is_ascii_digit()));
        out.push_str(if is_id { ":id" } else { seg });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{normalize, NormalizeOptions};
    use serde_json::json;

    fn tp(v: serde_json::Value) -> Touchpoint {
        let text = v.to_string();
        let m = normalize(&text, None, None, &NormalizeOptions::at(0), || "id".into()).unwrap();
        Touchpoint::from_message(m, &ChannelRules::default())
    }

    #[test]
    fn names_and_revenue() {
        let t = tp(
            json!({"type":"page","anonymousId":"a","properties":{"path":"/products/123?x=1"},"timestamp":"1970-01-01T00:00:00Z"}),
        );
        assert_eq!(
            (t.event.as_str(), t.touchpoint.as_str()),
            ("page_view", "/products/:id")
        );
        let t = tp(
            json!({"type":"track","userId":"u","event":"Order Completed","properties":{"total":"19.90"},"timestamp":"1970-01-01T00:00:00Z"}),
        );
        assert_eq!(t.revenue, Some(19.9));
        assert_eq!(t.touchpoint, "Order Completed");
    }

    #[test]
    fn typed_properties() {
        let t = tp(
            json!({"type": "identify", "userId": "u", "traits": {"role": "champion", "seats": 12, "ok": true, "nested": {"a": 1}},
            "context": {"traits": {"role": "ignored-duplicate", "plan": "pro"}}}),
        );
        assert_eq!(
            t.props,
            vec![
                ("traits.ok".to_string(), "true".to_string()),
                ("traits.role".into(), "champion".into()),
                ("traits.seats".into(), "12".into()),
                ("traits.plan".into(), "pro".into()),
            ]
        );
        assert_eq!(Touchpoint::props_from_body(&t.body), t.props);
        let t = tp(
            json!({"type": "track", "userId": "u", "event": "Survey Responded", "properties": {"score": 9.5, "note": "x".repeat(300), "comment": "y".repeat(300)}}),
        );
        assert_eq!(
            t.props,
            vec![
                ("properties.comment".to_string(), "y".repeat(300)),
                ("properties.score".to_string(), "9.5".to_string())
            ],
            "long strings are left out, except open answers up to 2,000 bytes"
        );
    }

    #[test]
    fn links() {
        let t = tp(
            json!({"type":"alias","userId":"u","previousId":"p","anonymousId":"a","timestamp":"1970-01-01T00:00:00Z"}),
        );
        assert_eq!(t.identity_links(), vec![("u", "a"), ("u", "p")]);
    }

    #[test]
    fn path_grouping() {
        assert_eq!(group_page_path("/"), "/");
        assert_eq!(group_page_path("/a/b/"), "/a/b");
        assert_eq!(
            group_page_path("/o/550e8400-e29b-41d4-a716-446655440000"),
            "/o/:id"
        );
        assert_eq!(group_page_path("/blog/decade"), "/blog/decade");
    }
}
