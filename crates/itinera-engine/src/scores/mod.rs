//! Voice of the customer: NPS, CSAT and CES from survey answers, each response joined to the
//! person's journey (the stage they were in and the last touchpoint before the answer), with n,
//! a confidence interval, the raw distribution and an emotion value for the journey map.
//!
//! `query` holds the request and answer types; `answers` compiles a query into an `AnswerScan`
//! that finds answers in a journey, which the three analyses share: `run` (NPS, CSAT, CES per
//! group), `promoters` (whom to invite into advocacy) and `comments` (open answers, keywords,
//! sentiment).

mod answers;
mod comments;
mod promoters;
mod query;
mod run;

pub use answers::{find_answers, Answer};
pub use comments::{find_comments, Comment, CommentsQuery, CommentsResult, Keyword};
pub use promoters::{find_promoters, Promoter, PromotersQuery, PromotersResult};
pub use query::{
    NpsFigures, ScoreBy, ScoreKind, ScoreRow, ScoreStep, ScoresQuery, ScoresResult, ShareFigures,
};
pub use run::{check_scores, run_scores};
