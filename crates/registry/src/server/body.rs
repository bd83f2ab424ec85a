//! Request bodies in (size limit, gzip, format) and response bodies out (negotiation, gzip).

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::header::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use thiserror::Error;

use crate::codec::{Format, View};

/// How long a client may take to send its body once the headers are in.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request body was refused.
#[derive(Debug, Error)]
pub(crate) enum BodyError {
    /// Larger than the limit, before or after gzip decoding (413).
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// Not sent within [`BODY_TIMEOUT`] (408).
    #[error("request body not received in time")]
    Timeout,
    /// A `Content-Encoding` other than gzip or identity (415).
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    /// Broken gzip, a broken connection, or neither JSON nor XML (400).
    #[error("cannot parse request body")]
    Unreadable,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Reads the whole body, at most `limit` bytes of it, decoding gzip, and tells its format from
/// `Content-Type` or, failing that, from its first byte.
pub(crate) async fn read<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<(Bytes, Format), BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Refuse an announced oversize body before reading a byte of it.
    if header(headers, "content-length").trim().parse::<u64>().is_ok_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let encoding = header(headers, "content-encoding").trim().to_ascii_lowercase();
    let gzip = match encoding.as_str() {
        "" | "identity" => false,
        "gzip" | "x-gzip" => true,
        _ => return Err(BodyError::UnsupportedEncoding),
    };
    let collected = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await {
        Err(_) => return Err(BodyError::Timeout),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return Err(BodyError::TooLarge(limit)),
        Ok(Err(_)) => return Err(BodyError::Unreadable),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let bytes = if gzip { gunzip(&collected, limit)? } else { collected };
    let content_type = header(headers, "content-type").to_ascii_lowercase();
    let format = if content_type.contains("json") {
        Format::Json
    } else if content_type.contains("xml") {
        Format::Xml
    } else {
        Format::sniff(&bytes).ok_or(BodyError::Unreadable)?
    };
    Ok((bytes, format))
}

/// Decodes gzip, refusing output past `limit` (a small compressed body can expand a thousandfold).
fn gunzip(compressed: &[u8], limit: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    GzDecoder::new(compressed).take(limit as u64 + 1).read_to_end(&mut out).map_err(|_| BodyError::Unreadable)?;
    if out.len() > limit {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

/// What the client asked to get back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wants {
    /// JSON if `Accept` mentions json, otherwise XML (also when there is no `Accept`): Java's rule.
    pub(crate) format: Format,
    /// `X-Eureka-Accept: compact`.
    pub(crate) view: View,
    /// `Accept-Encoding` accepts gzip (see [`accepts_gzip`]).
    pub(crate) gzip: bool,
}

impl Wants {
    pub(crate) fn of(headers: &HeaderMap) -> Wants {
        let format = if header(headers, "accept").to_ascii_lowercase().contains("json") { Format::Json } else { Format::Xml };
        let view = if header(headers, "x-eureka-accept").trim().eq_ignore_ascii_case("compact") { View::Compact } else { View::Full };
        let gzip = accepts_gzip(header(headers, "accept-encoding"));
        Wants { format, view, gzip }
    }
}

/// Whether an `Accept-Encoding` value accepts gzip (RFC 9110 §12.5.3): `gzip` or `x-gzip` with a
/// quality above 0, or else `*` with a quality above 0. `gzip;q=0` refuses it. A quality that does
/// not parse counts as 1, as most servers read it.
fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut wildcard = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, value)| value.trim().parse::<f32>().unwrap_or(1.0));
        match coding.as_str() {
            "gzip" | "x-gzip" => return quality > 0.0,
            "*" => wildcard = Some(quality > 0.0),
            _ => {}
        }
    }
    wildcard.unwrap_or(false)
}

/// gzip-compresses a response body; `None` if compression failed (the caller sends it plain).
pub(crate) fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[tokio::test]
    async fn bodies_are_limited_decoded_and_typed() {
        let json = Bytes::from_static(br#"{"instance":{}}"#);
        let (_, format) = read(&headers(&[]), Full::new(json.clone()), 100).await.unwrap();
        assert_eq!(format, Format::Json);
        let (_, format) = read(&headers(&[("content-type", "application/xml")]), Full::new(Bytes::from_static(b"<instance/>")), 100).await.unwrap();
        assert_eq!(format, Format::Xml);
        assert!(matches!(read(&headers(&[]), Full::new(json.clone()), 5).await, Err(BodyError::TooLarge(5))));
        assert!(matches!(read(&headers(&[("content-length", "1000")]), Full::new(json.clone()), 100).await, Err(BodyError::TooLarge(_))));
        assert!(matches!(read(&headers(&[("content-encoding", "br")]), Full::new(json.clone()), 100).await, Err(BodyError::UnsupportedEncoding)));
        assert!(matches!(read(&headers(&[]), Full::new(Bytes::from_static(b"hello")), 100).await, Err(BodyError::Unreadable)));

        let zipped = gzip(&json).unwrap();
        let (bytes, format) = read(&headers(&[("content-encoding", "gzip")]), Full::new(Bytes::from(zipped)), 100).await.unwrap();
        assert_eq!((bytes, format), (json, Format::Json));
        let bomb = gzip(&vec![b' '; 10_000]).unwrap();
        assert!(bomb.len() < 100);
        assert!(matches!(read(&headers(&[("content-encoding", "gzip")]), Full::new(Bytes::from(bomb)), 1000).await, Err(BodyError::TooLarge(_))));
        assert!(matches!(read(&headers(&[("content-encoding", "gzip")]), Full::new(Bytes::from_static(b"not gzip")), 100).await, Err(BodyError::Unreadable)));
    }

    #[test]
    fn negotiation_follows_javas_rule() {
        assert_eq!(Wants::of(&headers(&[])).format, Format::Xml);
        assert_eq!(Wants::of(&headers(&[("accept", "application/json, */*")])).format, Format::Json);
        assert_eq!(Wants::of(&headers(&[("accept", "*/*")])).format, Format::Xml);
        assert_eq!(Wants::of(&headers(&[("x-eureka-accept", "compact")])).view, View::Compact);
        assert!(Wants::of(&headers(&[("accept-encoding", "gzip, deflate")])).gzip);
    }

    #[test]
    fn gzip_is_accepted_by_quality_not_by_substring() {
        for accepted in ["gzip", "GZIP", "deflate, gzip;q=0.5", "x-gzip", "*", "br, *;q=0.1", "gzip; q=1.0", "gzip;q=oops"] {
            assert!(accepts_gzip(accepted), "{accepted}");
        }
        for refused in ["", "identity", "gzip;q=0", "gzip; q=0.000", "deflate, gzip;q=0, *", "*;q=0", "br", "notgzip", "gzipped"] {
            assert!(!accepts_gzip(refused), "{refused}");
        }
    }
}
