//! JSON helpers shared by the fuzz targets that round-trip documents.

use serde_json::Value;

/// Whether `value` holds a float anywhere. serde_json (without `float_roundtrip`) may read a
/// float's shortest spelling back one ulp off, so write-back round trips are asserted only
/// for documents without floats.
pub fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(members) => members.values().any(has_float),
        _ => false,
    }
}
