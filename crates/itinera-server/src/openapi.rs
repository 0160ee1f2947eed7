//! The OpenAPI document of the HTTP API (`docs/openapi.json`), served at
//! `/api/v1/openapi.json`. Its paths are checked against the router by a test, so a route
//! cannot be added or removed without the document.

/// The document, as served.
pub fn document() -> &'static str {
    include_str!("../../../docs/openapi.json")
}
