//! A typed, blocking client of Itinera's HTTP API under `/api/v1`, authorized by a read token.
//! Requests and answers are the application layer's and the engine's types, so a client and a
//! server of the same version agree on them by construction.

use itinera_app::breakdown::{BreakdownBy, BreakdownResult};
use itinera_app::jobs::JobStatus;
use itinera_app::{AnalysisRequest, PersonStagesRequest, Population};
use itinera_engine::segments::SegmentsReport;
use itinera_engine::PersonJourney;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, or the answer could not be read.
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    /// The server answered with an error.
    #[error("{url}: {status}: {message}")]
    Api {
        url: String,
        status: u16,
        /// The field the error names, when it names one.
        field: Option<String>,
        message: String,
    },
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A server and the read token to use there.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Client {
    /// `base` is the server's address, e.g. `http://127.0.0.1:8460`.
    pub fn new(base: &str, token: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::blocking::Client::new(),
        }
    }

    /// Runs an analysis (`POST /api/v1/{kind}`) for a population; the answer as the caller's
    /// result type (e.g. `FunnelResult`) or as JSON.
    pub fn analysis<R: DeserializeOwned>(
        &self,
        request: &AnalysisRequest,
        population: &Population,
    ) -> Result<R> {
        // the request serializes as {"<kind>": query}; the endpoint takes the query
        let wrapped = serde_json::to_value(request).expect("requests serialize");
        let query = wrapped
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        self.post(
            &format!("/api/v1/{}", request.kind()),
            &query_pairs(population),
            Some(&query),
        )
    }

    /// One person's stage history (`POST /api/v1/stages/person`).
    pub fn person_stages(&self, request: &PersonStagesRequest) -> Result<PersonJourney> {
        self.post("/api/v1/stages/person", &[], Some(request))
    }

    /// Any analysis once per persona or saved segment (`POST /api/v1/breakdown`).
    pub fn breakdown(&self, by: BreakdownBy, request: &AnalysisRequest) -> Result<BreakdownResult> {
        let by = match by {
            BreakdownBy::Persona => "persona",
            BreakdownBy::Segment => "segment",
        };
        self.post(
            "/api/v1/breakdown",
            &[("by", by.to_string())],
            Some(request),
        )
    }

    /// Sizes of the saved segments and personas (`POST /api/v1/segments/report`).
    pub fn segments_report(&self) -> Result<SegmentsReport> {
        self.post::<Value, _>("/api/v1/segments/report", &[], None)
    }

    /// Starts an analysis as a job (`POST /api/v1/queries`).
    pub fn start_job(
        &self,
        request: &AnalysisRequest,
        population: &Population,
    ) -> Result<JobStatus> {
        self.post("/api/v1/queries", &query_pairs(population), Some(request))
    }

    /// A job's status, with its result once done (`GET /api/v1/queries/{id}`).
    pub fn job(&self, id: &str) -> Result<JobStatus> {
        self.send(self.http.get(self.url(&format!("/api/v1/queries/{id}"))))
    }

    /// Cancels a job (`DELETE /api/v1/queries/{id}`).
    pub fn cancel_job(&self, id: &str) -> Result<JobStatus> {
        self.send(self.http.delete(self.url(&format!("/api/v1/queries/{id}"))))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<R> {
        let mut req = self.http.post(self.url(path)).query(query);
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send(req)
    }

    fn send<R: DeserializeOwned>(&self, req: reqwest::blocking::RequestBuilder) -> Result<R> {
        let req = req
            .bearer_auth(&self.token)
            .build()
            .map_err(|e| ClientError::Transport {
                url: self.base.clone(),
                reason: e.to_string(),
            })?;
        let url = req.url().path().to_string();
        let url = format!("{}{url}", self.base);
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: url.clone(),
            reason: e.to_string(),
        };
        let resp = self.http.execute(req).map_err(transport)?;
        let status = resp.status();
        let body: Value = resp.json().map_err(transport)?;
        if !status.is_success() {
            let message = body["message"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("request failed")
                .to_string();
            let field = body["errors"][0]["field"].as_str().map(str::to_string);
            return Err(ClientError::Api {
                url,
                status: status.as_u16(),
                field,
                message,
            });
        }
        serde_json::from_value(body).map_err(|e| ClientError::Transport {
            url,
            reason: format!("unexpected answer: {e}"),
        })
    }
}

fn query_pairs(p: &Population) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(s) = &p.segment {
        q.push(("segment", s.clone()));
    }
    if let Some(s) = &p.persona {
        q.push(("persona", s.clone()));
    }
    q
}
