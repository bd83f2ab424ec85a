//! Request headers as the JSON object the echo endpoints answer with.

use std::collections::BTreeMap;

use hyper::HeaderMap;

/// The headers as a map from lower-case name to value, sorted by name.
///
/// Repeated headers are joined with `, ` in the order received; values that are not UTF-8
/// are decoded lossily.
pub(crate) fn joined(headers: &HeaderMap) -> BTreeMap<&str, String> {
    headers
        .keys()
        .map(|name| {
            let values: Vec<_> = headers
                .get_all(name)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()))
                .collect();
            (name.as_str(), values.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn repeated_headers_are_joined_in_order() {
        let mut headers = HeaderMap::new();
        headers.append("X-Demo", HeaderValue::from_static("one"));
        headers.append("host", HeaderValue::from_static("example"));
        headers.append("x-demo", HeaderValue::from_static("two"));
        let joined = joined(&headers);
        assert_eq!(joined.len(), 2);
        assert_eq!(joined["x-demo"], "one, two");
        assert_eq!(joined["host"], "example");
    }

    #[test]
    fn non_utf8_values_are_decoded_lossily() {
        let mut headers = HeaderMap::new();
        headers.insert("x-bytes", HeaderValue::from_bytes(b"a\xffb").unwrap());
        assert_eq!(joined(&headers)["x-bytes"], "a\u{fffd}b");
    }
}
