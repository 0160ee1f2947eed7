//! The OpenAPI document of the query API, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and answer types. The route modules register their handlers
//! through those annotations ([`utoipa_axum::routes!`]), so a route cannot exist without its
//! documentation. `docs/openapi.json` is this document written out; a test fails when it differs
//! (`ITINERA_BLESS=1 cargo test -p itinera-server --test openapi` rewrites it).

use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Itinera query API",
        description = "Journey analyses over a project's touchpoints, and the definitions they use \
            (segments, personas, surveys, alert rules, cases). Every request carries a token of \
            the project: `Authorization: Bearer …` (created by `itinera keys create`); reading \
            needs any token, changing something an edit or admin token (docs/security.md). \
            Errors are JSON: `{\"success\": false, \"error\": \"…\", \"errors\": [{\"field\": \"…\", \
            \"reason\": \"…\"}]}`. The semantics of every field are in the docs folder \
            (funnels.md, stages.md, paths.md, retention.md, attribution.md, clv.md, scores.md, \
            segments.md). An analysis whose selectors name something the data does not have is \
            still answered, with `warnings`: a list of `QueryWarning` (the field, why, the closest \
            stored names). This document is generated from the server's code.",
    ),
    servers((url = "http://127.0.0.1:8460", description = "`itinera serve` with its defaults")),
    security(("token" = ["read"])),
    modifiers(&Tokens),
    components(schemas(ErrorBody, FieldError, itinera_engine::selector::QueryWarning)),
    tags(
        (name = "analyses", description = "Run an analysis and wait for its answer"),
        (name = "jobs", description = "Run an analysis in the background, poll it, cancel it"),
        (name = "definitions", description = "Saved segments and personas"),
        (name = "surveys", description = "Survey definitions and signed links"),
        (name = "alerts", description = "Alert rules on survey answers and the alerts that fired"),
        (name = "triggers", description = "Act when a journey moves: rules on stage entries and events, dry runs, firings"),
        (name = "cases", description = "Cases that close the loop with a customer"),
        (name = "maps", description = "Journey maps: documents with versions, drawn over live figures"),
        (name = "session", description = "Logging in to the web app and out"),
        (name = "users", description = "Users of the web app (logged-in admins only)"),
        (name = "credentials", description = "A project's write keys and tokens (admins)"),
    )
)]
pub struct ApiDoc;

/// The `token` security scheme: a bearer token of the project, whose scope an operation names
/// (`read` unless it says `edit` or `admin`).
struct Tokens;

impl Modify for Tokens {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of the project: `rt_…` reads, `et_…` also edits, `at_…` also \
                         administers (`itinera keys create --scope read|edit|admin`). An operation's \
                         security requirement names the scope it needs; a token of a lesser scope \
                         gets 403 (docs/security.md).",
                    ))
                    .build(),
            ),
        );
    }
}

/// An error answer. `code` and `message` are what the Segment SDKs read.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For invalid requests: the field at fault and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Which field of a request is wrong, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldError {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

/// The request is invalid: `errors[0].field` names the field, `errors[0].reason` says why.
#[derive(IntoResponses)]
#[response(status = 400)]
pub struct Invalid(pub ErrorBody);

/// Missing, unknown or revoked read token.
#[derive(IntoResponses)]
#[response(status = 401)]
pub struct Unauthorized(pub ErrorBody);

/// The token is valid but its scope does not allow this (a read token changing a definition).
#[derive(IntoResponses)]
#[response(status = 403)]
pub struct Forbidden(pub ErrorBody);

/// Someone else changed it meanwhile (a map saved after the version this edit started from).
#[derive(IntoResponses)]
#[response(status = 409)]
pub struct Conflict(pub ErrorBody);

/// Nothing of that name or id in this project.
#[derive(IntoResponses)]
#[response(status = 404)]
pub struct NotFound(pub ErrorBody);

/// Too many jobs are running; `Retry-After` says when to try again.
#[derive(IntoResponses)]
#[response(status = 429)]
pub struct Busy(pub ErrorBody);

/// The project's store cannot serve (a write error, a damaged file), or the query was cancelled.
#[derive(IntoResponses)]
#[response(status = 503)]
pub struct Unavailable(pub ErrorBody);

/// The document, generated once.
pub fn spec() -> &'static utoipa::openapi::OpenApi {
    static SPEC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    SPEC.get_or_init(|| crate::routes::api().split_for_parts().1)
}

/// The document as served and as written to `docs/openapi.json`.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = spec().to_pretty_json().expect("the document serializes");
        text.push('\n');
        text
    })
}
