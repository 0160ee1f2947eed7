//! Cases that close the loop with a customer: opened by alerts or by hand, updated as they are
//! worked, and followed up with a survey link e-mailed to the customer.

use crate::error::{AppError, Result};
use crate::{outbound, surveys, App};
use itinera_core::clock::now_ms;
use itinera_meta::{Case, CaseUpdate};
use serde::{Deserialize, Serialize};

/// A case opened by hand.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub title: String,
    #[serde(default)]
    pub person: Option<String>,
}

/// A follow-up: which survey to send, how long its link lasts, where the e-mail address is.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    pub survey: String,
    #[serde(default = "thirty")]
    pub days: u32,
    /// The trait holding the customer's e-mail address.
    #[serde(default = "email_trait")]
    pub email_property: String,
}

fn thirty() -> u32 {
    30
}

fn email_trait() -> String {
    "traits.email".into()
}

/// What a follow-up did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FollowUpResult {
    pub case: Option<Case>,
    pub path: String,
    pub emailed_to: Option<String>,
}

pub fn create(app: &App, project: &str, c: &NewCase) -> Result<Option<Case>> {
    if c.title.trim().is_empty() || c.title.len() > 500 {
        return Err(AppError::invalid("title", "1-500 characters"));
    }
    let meta = app.meta();
    let id = meta.open_case(project, None, c.person.as_deref(), &c.title)?;
    Ok(meta.cases(project, None)?.into_iter().find(|x| x.id == id))
}

pub fn update(app: &App, project: &str, id: i64, u: &CaseUpdate) -> Result<Case> {
    match app.meta().update_case(project, id, u) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(AppError::NotFound(format!("no case {id}"))),
        Err(itinera_meta::MetaError::BadValue(reason)) => Err(AppError::invalid("status", reason)),
        Err(e) => Err(e.into()),
    }
}

/// A signed survey link for the case's customer, recorded on the case and e-mailed to them when
/// the SMTP relay is set and their e-mail trait is known. Blocking (a trait lookup, SMTP).
pub fn follow_up(app: &App, project: &str, id: i64, f: &FollowUp) -> Result<FollowUpResult> {
    if f.days == 0 || f.days > 365 {
        return Err(AppError::invalid("days", "1-365"));
    }
    let case = app
        .meta()
        .case(project, id)?
        .ok_or_else(|| AppError::NotFound(format!("no case {id}")))?;
    let person = case
        .person
        .clone()
        .ok_or_else(|| AppError::invalid("person", "the case names no customer"))?;
    let survey = surveys::find(&app.meta(), project, &f.survey)?;
    let expires = now_ms() + f.days as i64 * 86_400_000;
    let path = surveys::signed_link(&app.meta(), project, &survey.id, &person, expires)?;
    let question = survey.question.get("en").cloned().unwrap_or_default();
    let emailed = if app.config.smtp.host.is_empty() {
        None
    } else {
        match app
            .backend(project)?
            .person_trait(&person, &f.email_property)
        {
            None => None,
            Some(to) => {
                let text = format!(
                    "{question}\n\nPlease tell us here: {}{path}\n",
                    app.config.public_url.trim_end_matches('/')
                );
                outbound::send_mail(
                    app,
                    std::slice::from_ref(&to),
                    "A quick question from us",
                    &text,
                )
                .map_err(AppError::Unavailable)?;
                Some(to)
            }
        }
    };
    let note = format!(
        "survey {} sent{}: {path}",
        survey.id,
        emailed
            .as_deref()
            .map(|t| format!(" to {t}"))
            .unwrap_or_default()
    );
    let update = CaseUpdate {
        follow_up: Some(note),
        status: (case.status == "open").then(|| "waiting_on_customer".to_string()),
        ..Default::default()
    };
    let case = app.meta().update_case(project, id, &update)?;
    Ok(FollowUpResult {
        case,
        path,
        emailed_to: emailed,
    })
}
