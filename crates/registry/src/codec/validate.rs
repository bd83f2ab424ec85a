//! The checks Java's `ApplicationResource.addInstance` makes on a registration, in its order and
//! with its exact 400 messages (clients log them; some tests compare them).

use thiserror::Error;

use crate::model::{Instance, MetadataTooLarge};

/// Why a registration was refused with 400. `Display` is the exact Java response body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// No instanceId, AmazonInfo `instance-id` nor hostName.
    #[error("Missing instanceId")]
    MissingInstanceId,
    /// Blank hostName.
    #[error("Missing hostname")]
    MissingHostName,
    /// Blank ipAddr.
    #[error("Missing ip address")]
    MissingIpAddr,
    /// Blank app.
    #[error("Missing appName")]
    MissingAppName,
    /// The body's app is not the path's `{APP}` (both upper-cased).
    #[error("Mismatched appName, expecting {expected} but was {actual}")]
    MismatchedAppName {
        /// The application name of the path.
        expected: String,
        /// The application name of the body.
        actual: String,
    },
    /// No dataCenterInfo object.
    #[error("Missing dataCenterInfo")]
    MissingDataCenterInfo,
    /// A dataCenterInfo without a name.
    #[error("Missing dataCenterInfo Name")]
    MissingDataCenterInfoName,
    /// Metadata (the instance's, or its dataCenterInfo's) beyond wsgate's limits: a check Java
    /// does not make, worded like Java's.
    #[error(transparent)]
    MetadataTooLarge(#[from] MetadataTooLarge),
}

/// Checks a decoded registration for `POST /apps/{path_app}`.
///
/// # Errors
/// The first failed check, in Java's order, then wsgate's own: metadata within
/// [`crate::Metadata::MAX_KEYS`] keys and [`crate::Metadata::MAX_BYTES`] bytes.
pub fn validate_registration(instance: &Instance, path_app: &str) -> Result<(), ValidationError> {
    let blank = |s: &str| s.trim().is_empty();
    if blank(instance.id()) {
        return Err(ValidationError::MissingInstanceId);
    }
    if blank(&instance.host_name) {
        return Err(ValidationError::MissingHostName);
    }
    if blank(&instance.ip_addr) {
        return Err(ValidationError::MissingIpAddr);
    }
    if blank(&instance.app) {
        return Err(ValidationError::MissingAppName);
    }
    let expected = path_app.to_ascii_uppercase();
    if instance.app != expected {
        return Err(ValidationError::MismatchedAppName { expected, actual: instance.app.clone() });
    }
    let dc_metadata = match &instance.data_center_info {
        None => return Err(ValidationError::MissingDataCenterInfo),
        Some(dc) if blank(&dc.name) => return Err(ValidationError::MissingDataCenterInfoName),
        Some(dc) => dc.metadata.as_ref(),
    };
    instance.metadata.check_size()?;
    if let Some(metadata) = dc_metadata {
        metadata.check_size()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataCenterInfo, Metadata};

    #[test]
    fn messages_are_javas() {
        let ok = Instance::new("demo", "id", "host", "10.0.0.1");
        assert_eq!(validate_registration(&ok, "demo"), Ok(()));

        let mut i = ok.clone();
        i.instance_id.clear();
        i.host_name.clear();
        assert_eq!(validate_registration(&i, "DEMO").unwrap_err().to_string(), "Missing instanceId");

        let mut i = ok.clone();
        i.host_name = " ".into();
        assert_eq!(validate_registration(&i, "DEMO").unwrap_err().to_string(), "Missing hostname");

        let mut i = ok.clone();
        i.ip_addr.clear();
        assert_eq!(validate_registration(&i, "DEMO").unwrap_err().to_string(), "Missing ip address");

        let mut i = ok.clone();
        i.app.clear();
        assert_eq!(validate_registration(&i, "DEMO").unwrap_err().to_string(), "Missing appName");

        assert_eq!(validate_registration(&ok, "other").unwrap_err().to_string(), "Mismatched appName, expecting OTHER but was DEMO");

        let mut i = ok.clone();
        i.data_center_info = None;
        assert_eq!(validate_registration(&i, "DEMO").unwrap_err().to_string(), "Missing dataCenterInfo");

        let mut i = ok.clone();
        i.data_center_info = Some(DataCenterInfo { name: String::new(), ..DataCenterInfo::my_own() });
        assert_eq!(validate_registration(&i, "DEMO").unwrap_err().to_string(), "Missing dataCenterInfo Name");

        let mut i = ok.clone();
        i.metadata = (0..=Metadata::MAX_KEYS).map(|n| (n.to_string(), "")).collect();
        let keys = Metadata::MAX_KEYS + 1;
        let bytes = i.metadata.byte_size();
        assert_eq!(
            validate_registration(&i, "DEMO").unwrap_err().to_string(),
            format!("Metadata too large, expecting at most 256 keys and 65536 bytes but was {keys} keys and {bytes} bytes")
        );
        i.metadata = (0..Metadata::MAX_KEYS).map(|n| (n.to_string(), "")).collect();
        assert_eq!(validate_registration(&i, "DEMO"), Ok(()), "at the limit is within it");

        let mut i = ok;
        i.data_center_info = Some(DataCenterInfo { metadata: Some([("k", "v".repeat(Metadata::MAX_BYTES))].into_iter().collect()), ..DataCenterInfo::my_own() });
        assert!(matches!(validate_registration(&i, "DEMO"), Err(ValidationError::MetadataTooLarge(_))));
    }
}
