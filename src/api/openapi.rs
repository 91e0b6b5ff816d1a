//! The OpenAPI 3.1 document (`GET /openapi.json`), generated with utoipa.

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::json!({})
}
