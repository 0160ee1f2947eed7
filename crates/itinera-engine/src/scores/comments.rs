use super::answers::{AnswerScan, GroupState};
use super::*;
use crate::error::{EngineError, Result};
use crate::journey::{Field, JourneySource, ScanOptions};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// Open answers: searchable, with a sentiment score and the most frequent keywords.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentsQuery {
    /// Which answers (kind, survey, `by`, range).
    pub scores: ScoresQuery,
    #[serde(default = "default_comment_property")]
    pub comment_property: String,
    /// Every word must occur in the comment (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// At most this many comments, newest first (keywords count all matches).
    #[serde(default = "default_comment_limit")]
    pub limit: usize,
}

pub(super) fn default_comment_property() -> String {
    "properties.comment".into()
}
pub(super) fn default_comment_limit() -> usize {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comment {
    pub person: String,
    pub ts_ms: i64,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub comment: String,
    /// Compound score, −1…+1 (see [`crate::sentiment`]).
    pub sentiment: f64,
    /// The language the sentiment was read in: `en` or `de`.
    pub language: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Keyword {
    pub term: String,
    /// Comments containing it.
    pub comments: u64,
    pub mean_score: f64,
    pub mean_sentiment: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommentsResult {
    /// Comments matching (before the limit).
    pub n: u64,
    pub mean_sentiment: Option<f64>,
    pub comments: Vec<Comment>,
    pub keywords: Vec<Keyword>,
    pub definition: String,
}

/// Words that say nothing about a topic, in English and German.
pub(super) const STOPWORDS: &[&str] = &[
    "the", "and", "for", "was", "are", "but", "not", "you", "your", "with", "this", "that", "have",
    "has", "had", "were", "they", "them", "their", "there", "from", "very", "just", "too", "all",
    "any", "can", "could", "would", "should", "will", "our", "out", "get", "got", "its", "it's",
    "i'm", "did", "does", "been", "more", "much", "also", "than", "then", "when", "what", "which",
    "who", "how", "why", "about", "into", "only", "really", "some", "one", "like", "der", "die",
    "das", "und", "ist", "nicht", "sehr", "ein", "eine", "einen", "war", "mit", "für", "auf",
    "aber", "auch", "ich", "wir", "sie", "es", "den", "dem", "des", "von", "zu", "zum", "zur",
    "bei", "noch", "schon", "wie", "was", "hat", "habe", "haben", "sind", "wird", "wurde", "mir",
    "mich", "uns", "ihr", "ihre", "kein", "keine", "nur", "oder", "als", "dass", "man", "so",
];

pub(super) fn terms(text: &str) -> Vec<String> {
    let mut t: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| w.chars().count() >= 3 && !STOPWORDS.contains(&w.as_str()))
        .collect();
    t.sort();
    t.dedup();
    t
}

pub fn find_comments<S: JourneySource>(
    source: &S,
    q: &CommentsQuery,
    opts: &ScanOptions,
) -> Result<CommentsResult> {
    let a = AnswerScan::compile(source, &q.scores)?;
    let comment_key = source.with_vocabulary(|v| v.code(Field::PropKey, &q.comment_property));
    let words: Vec<String> = q
        .search
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let mut scan = opts.clone();
    scan.from_ms = q.scores.from_ms.or(opts.from_ms);
    scan.to_ms = q.scores.to_ms.or(opts.to_ms);
    type Found = (u32, i64, f64, u64, u32);
    let parts = source.scan(
        &scan,
        || (Vec::new(), GroupState::default()),
        |(out, state): &mut (Vec<Found>, GroupState), j| {
            state.begin();
            for i in 0..j.len() {
                let Some(Some(score)) = a.answer(j, i) else {
                    continue;
                };
                let Some(c) = comment_key.and_then(|k| j.props.get(i, k)) else {
                    continue;
                };
                let g = if q.scores.by.is_some() {
                    a.group(j, i, state)
                } else {
                    0
                };
                out.push((j.person, j.ts[i], score, g, c));
            }
        },
    );
    if opts.control.as_ref().is_some_and(|c| c.is_cancelled()) {
        return Err(EngineError::Cancelled);
    }
    let analyzer = vader_sentiment::SentimentIntensityAnalyzer::new();
    let mut comments: Vec<Comment> = source.with_vocabulary(|v| {
        parts
            .into_iter()
            .flat_map(|p| p.0)
            .filter_map(|(person, ts, score, g, c)| {
                let text = v.name(Field::PropValue, c);
                let lower = text.to_lowercase();
                if !words.iter().all(|w| lower.contains(w.as_str())) {
                    return None;
                }
                let (sentiment, language) = crate::sentiment::score(&analyzer, text);
                Some(Comment {
                    person: v.name(Field::DistinctId, person).to_string(),
                    ts_ms: ts,
                    score,
                    group: q.scores.by.map(|_| a.name(v, g)),
                    sentiment,
                    language: language.into(),
                    comment: text.to_string(),
                })
            })
            .collect()
    });
    comments.sort_by(|x, y| y.ts_ms.cmp(&x.ts_ms).then(x.person.cmp(&y.person)));
    let n = comments.len() as u64;
    let mut counts: FxHashMap<String, (u64, f64, f64)> = FxHashMap::default();
    for c in &comments {
        for t in terms(&c.comment) {
            let e = counts.entry(t).or_default();
            e.0 += 1;
            e.1 += c.score;
            e.2 += c.sentiment;
        }
    }
    let mut keywords: Vec<Keyword> = counts
        .into_iter()
        .filter(|(_, (k, _, _))| *k >= 2)
        .map(|(term, (k, s, m))| Keyword {
            term,
            comments: k,
            mean_score: s / k as f64,
            mean_sentiment: m / k as f64,
        })
        .collect();
    keywords.sort_by(|x, y| y.comments.cmp(&x.comments).then(x.term.cmp(&y.term)));
    keywords.truncate(30);
    let mean_sentiment =
        (n > 0).then(|| comments.iter().map(|c| c.sentiment).sum::<f64>() / n as f64);
    comments.truncate(q.limit);
    Ok(CommentsResult {
        n,
        mean_sentiment,
        comments,
        keywords,
        definition: "sentiment: compound score -1..+1; English by VADER (vader_sentiment crate, MIT), German by Itinera's own lexicon with VADER's rules; the language is guessed from stop words; keywords: words of 3+ letters, English and German stop words removed, counted once per comment".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A labelled sample of customer comments (written for this test, labels by hand): how often
    /// the sign of the compound score Itinera gives a comment agrees with the label
    /// (|compound| < 0.05 = neutral).
    #[test]
    fn sentiment_on_a_labelled_sample() {
        let sample: &[(&str, i8)] = &[
            ("The delivery was fast and the packaging was great", 1),
            ("Excellent service, very friendly staff", 1),
            ("I love the new app, it is so easy to use", 1),
            ("Support solved my problem in minutes, thank you!", 1),
            ("Good value for the price", 1),
            ("Great quality, I will buy again", 1),
            ("The checkout was smooth and simple", 1),
            ("Happy with my order", 1),
            ("Amazing experience from start to finish", 1),
            ("Helpful advice in the store", 1),
            (
                "The parcel arrived damaged and nobody answered my emails",
                -1,
            ),
            ("Terrible support, I waited two weeks for a reply", -1),
            ("The app keeps crashing, very frustrating", -1),
            ("Too expensive for such poor quality", -1),
            ("Worst purchase I have made this year", -1),
            ("The delivery was late and the driver was rude", -1),
            ("I am disappointed with the product", -1),
            ("Hard to find what I needed, confusing website", -1),
            ("Refund still not processed, unacceptable", -1),
            ("Broken on arrival", -1),
            ("I ordered a blue shirt", 0),
            ("Delivered on Tuesday", 0),
            ("I used the website on my phone", 0),
            ("The order number is in the email", 0),
            ("I called the hotline", 0),
        ];
        // through Itinera's own path: language detection, then the English analyzer
        let analyzer = vader_sentiment::SentimentIntensityAnalyzer::new();
        let right = sample
            .iter()
            .filter(|(t, l)| {
                let (compound, lang) = crate::sentiment::score(&analyzer, t);
                assert_eq!(lang, "en", "{t}");
                crate::sentiment::polarity(compound) == *l
            })
            .count();
        // measured: see docs/surveys.md; the test keeps it from regressing
        assert!(
            right * 100 >= sample.len() * 70,
            "{right} of {}",
            sample.len()
        );
        eprintln!(
            "vader agreement on the labelled sample: {right} of {}",
            sample.len()
        );
    }

    #[test]
    fn keywords_skip_stop_words() {
        assert_eq!(
            terms("The delivery was LATE, the delivery driver und der Fahrer"),
            vec!["delivery", "driver", "fahrer", "late"]
        );
    }
}
