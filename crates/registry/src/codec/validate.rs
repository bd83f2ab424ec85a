//! The checks Java's `ApplicationResource.addInstance` makes on a registration, in its order and
//! with its exact 400 messages (clients log them; some tests compare them).

use thiserror::Error;

use crate::model::Instance;

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
}

/// Checks a decoded registration for `POST /apps/{path_app}`.
///
/// # Errors
/// The first failed check, in Java's order.
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
    match &instance.data_center_info {
        None => Err(ValidationError::MissingDataCenterInfo),
        Some(dc) if blank(&dc.name) => Err(ValidationError::MissingDataCenterInfoName),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DataCenterInfo;

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

        let mut i = ok;
        i.data_center_info = Some(DataCenterInfo { name: String::new(), ..DataCenterInfo::my_own() });
        assert_eq!(validate_registration(&i, "DEMO").unwrap_err().to_string(), "Missing dataCenterInfo Name");
    }
}
