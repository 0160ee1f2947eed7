//! Channel classification: which channel a touchpoint came through.
//!
//! The rules are applied in this order, first match wins (documented in `docs/channels.md`):
//! 1. an explicit property (`properties.touchpoint_channel`, then `properties.channel`);
//! 2. the event name (e.g. `Email Opened` → `email`);
//! 3. the sending library or source (`context.library.name`, e.g. a point-of-sale import → `store`);
//! 4. the UTM medium (`context.campaign.medium`), refined by the UTM source for paid social;
//! 5. the referrer domain (`context.page.referrer`): search engines, social networks, other sites;
//! 6. screen calls and mobile libraries → `app`;
//! 7. otherwise `direct`.

use crate::message::{Message, MessageType};
use serde::{Deserialize, Serialize};

/// A configurable rule set; [`ChannelRules::default`] is the documented default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ChannelRules {
    /// Property names whose value, when present, is the channel.
    pub explicit_properties: Vec<String>,
    /// Event name (case-insensitive) → channel.
    pub events: Vec<Mapping>,
    /// Substring of `context.library.name` (case-insensitive) → channel.
    pub libraries: Vec<Mapping>,
    /// UTM medium (case-insensitive, exact) → channel.
    pub utm_mediums: Vec<Mapping>,
    /// UTM sources that make a paid medium `paid_social` instead of `paid_search`.
    pub social_sources: Vec<String>,
    /// Referrer domains (suffix match) of search engines → `organic_search`.
    pub search_domains: Vec<String>,
    /// Referrer domains (suffix match) of social networks → `social`.
    pub social_domains: Vec<String>,
    /// The channel when nothing matches.
    pub default_channel: String,
}

/// One `pattern → channel` rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mapping {
    pub pattern: String,
    pub channel: String,
}

fn maps(pairs: &[(&str, &str)]) -> Vec<Mapping> {
    pairs
        .iter()
        .map(|(p, c)| Mapping {
            pattern: p.to_string(),
            channel: c.to_string(),
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Default for ChannelRules {
    fn default() -> Self {
        ChannelRules {
            explicit_properties: strings(&["touchpoint_channel", "channel"]),
            events: maps(&[
                ("Email Opened", "email"),
                ("Email Link Clicked", "email"),
                ("Email Delivered", "email"),
                ("Email Bounced", "email"),
                ("Push Notification Tapped", "push"),
                ("Call Started", "call_center"),
                ("Call Completed", "call_center"),
                ("Store Visit", "store"),
                ("Ticket Created", "support"),
                ("Ticket Resolved", "support"),
                ("Review Posted", "review"),
                ("Referral Accepted", "referral"),
            ]),
            libraries: maps(&[
                ("pos", "store"),
                ("store", "store"),
                ("call-center", "call_center"),
                ("callcenter", "call_center"),
                ("zendesk", "support"),
                ("mailchimp", "email"),
                ("sendgrid", "email"),
            ]),
            utm_mediums: maps(&[
                ("cpc", "paid_search"),
                ("ppc", "paid_search"),
                ("paid", "paid_search"),
                ("paidsearch", "paid_search"),
                ("paid_search", "paid_search"),
                ("paid_social", "paid_social"),
                ("email", "email"),
                ("e-mail", "email"),
                ("newsletter", "email"),
                ("social", "social"),
                ("social-network", "social"),
                ("sm", "social"),
                ("organic", "organic_search"),
                ("referral", "referral"),
                ("affiliate", "affiliate"),
                ("display", "display"),
                ("banner", "display"),
                ("cpm", "display"),
                ("sms", "sms"),
                ("push", "push"),
            ]),
            social_sources: strings(&[
                "facebook",
                "instagram",
                "linkedin",
                "twitter",
                "x",
                "tiktok",
                "pinterest",
                "reddit",
                "youtube",
                "snapchat",
            ]),
            search_domains: strings(&[
                "google.",
                "bing.com",
                "duckduckgo.com",
                "yahoo.com",
                "ecosia.org",
                "baidu.com",
                "yandex.",
                "qwant.com",
                "startpage.com",
                "search.brave.com",
            ]),
            social_domains: strings(&[
                "facebook.com",
                "instagram.com",
                "linkedin.com",
                "lnkd.in",
                "twitter.com",
                "x.com",
                "t.co",
                "tiktok.com",
                "pinterest.",
                "reddit.com",
                "youtube.com",
                "snapchat.com",
                "xing.com",
                "threads.net",
                "mastodon.social",
                "bsky.app",
            ]),
            default_channel: "direct".into(),
        }
    }
}

const MOBILE_LIBRARIES: [&str; 6] = [
    "analytics-ios",
    "analytics-android",
    "analytics-react-native",
    "analytics-flutter",
    "analytics-kotlin",
    "analytics-swift",
];

fn host_matches(host: &str, pattern: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('.') {
        // "google." matches google.com, google.de, www.google.co.uk
        let with_dot = format!("{prefix}.");
        host.starts_with(&with_dot) || host.contains(&format!(".{with_dot}"))
    } else {
        host == pattern || host.ends_with(&format!(".{pattern}"))
    }
}

/// Whether `needle` occurs in `haystack`, ASCII letters compared without case (a rule's pattern
/// is compared with every message, so it is not lowercased for each).
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_start_matches("www.").to_ascii_lowercase())
    })
}

impl ChannelRules {
    /// The channel of one normalized message.
    pub fn classify(&self, m: &Message) -> String {
        if let Some(props) = m.properties() {
            for p in &self.explicit_properties {
                if let Some(c) = props.get_str(p) {
                    if !c.is_empty() {
                        return c.to_ascii_lowercase();
                    }
                }
            }
        }
        if let Some(event) = &m.event {
            if let Some(r) = self
                .events
                .iter()
                .find(|r| r.pattern.eq_ignore_ascii_case(event))
            {
                return r.channel.clone();
            }
        }
        let library = m
            .context_str("library", "name")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !library.is_empty() {
            if let Some(r) = self
                .libraries
                .iter()
                .find(|r| contains_ignoring_case(&library, &r.pattern))
            {
                return r.channel.clone();
            }
        }
        let campaign = m.campaign();
        if let Some(medium) = campaign.and_then(|c| c.get_str("medium")) {
            let medium = medium.to_ascii_lowercase();
            if let Some(r) = self.utm_mediums.iter().find(|r| r.pattern == medium) {
                let source = campaign
                    .and_then(|c| c.get_str("source"))
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if r.channel == "paid_search" && self.social_sources.contains(&source) {
                    return "paid_social".into();
                }
                return r.channel.clone();
            }
        }
        let page = m.page();
        if let Some(referrer) = page.and_then(|p| p.get_str("referrer")) {
            if let Some(host) = host_of(&referrer) {
                let own = page
                    .and_then(|p| p.get_str("url"))
                    .and_then(|u| host_of(&u));
                if own.as_deref() != Some(host.as_str()) {
                    if self.search_domains.iter().any(|d| host_matches(&host, d)) {
                        return "organic_search".into();
                    }
                    if self.social_domains.iter().any(|d| host_matches(&host, d)) {
                        return "social".into();
                    }
                    return "referral".into();
                }
            }
        }
        if m.kind == MessageType::Screen || MOBILE_LIBRARIES.iter().any(|l| library == *l) {
            return "app".into();
        }
        self.default_channel.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{normalize, NormalizeOptions};
    use serde_json::json;

    fn channel(v: serde_json::Value) -> String {
        let text = v.to_string();
        let m = normalize(&text, None, None, &NormalizeOptions::at(0), || "id".into()).unwrap();
        ChannelRules::default().classify(&m)
    }

    #[test]
    fn rules_in_order() {
        let base = |extra: serde_json::Value| {
            let mut v = json!({"type":"page","anonymousId":"a","timestamp":"1970-01-01T00:00:00Z"});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            channel(v)
        };
        assert_eq!(base(json!({})), "direct");
        assert_eq!(base(json!({"properties":{"channel":"Store"}})), "store");
        assert_eq!(
            base(json!({"context":{"campaign":{"medium":"cpc","source":"google"}}})),
            "paid_search"
        );
        assert_eq!(
            base(json!({"context":{"campaign":{"medium":"cpc","source":"facebook"}}})),
            "paid_social"
        );
        assert_eq!(
            base(json!({"context":{"page":{"referrer":"https://www.google.de/search?q=x"}}})),
            "organic_search"
        );
        assert_eq!(
            base(json!({"context":{"page":{"referrer":"https://l.instagram.com/"}}})),
            "social"
        );
        assert_eq!(
            base(json!({"context":{"page":{"referrer":"https://blog.example.org/a"}}})),
            "referral"
        );
        assert_eq!(
            base(
                json!({"context":{"page":{"referrer":"https://shop.test/a","url":"https://shop.test/b"}}})
            ),
            "direct",
            "a referrer on the same site is no channel"
        );
        assert_eq!(
            base(json!({"context":{"library":{"name":"itinera-pos-import"}}})),
            "store"
        );
        assert_eq!(
            base(json!({"context":{"library":{"name":"analytics-ios"}}})),
            "app"
        );
        // a team's own rule, written with capitals, matches a library name in any case
        let mut rules = ChannelRules::default();
        rules.libraries.insert(
            0,
            Mapping {
                pattern: "SalesForce".into(),
                channel: "sales".into(),
            },
        );
        let text = json!({"type":"page","anonymousId":"a","context":{"library":{"name":"Itinera-SALESFORCE-sync"}}})
            .to_string();
        let m = normalize(&text, None, None, &NormalizeOptions::at(0), || "id".into()).unwrap();
        assert_eq!(rules.classify(&m), "sales");
        assert_eq!(
            channel(
                json!({"type":"track","event":"Email Opened","userId":"u","timestamp":"1970-01-01T00:00:00Z"})
            ),
            "email"
        );
    }

    #[test]
    fn rules_round_trip_through_toml_shape() {
        let r = ChannelRules::default();
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ChannelRules>(&s).unwrap(), r);
        let partial: ChannelRules =
            serde_json::from_str(r#"{"default_channel":"unknown"}"#).unwrap();
        assert_eq!(partial.default_channel, "unknown");
        assert_eq!(partial.search_domains, r.search_domains);
    }
}
