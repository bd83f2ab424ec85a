//! [`Node`] tree to model, leniently (EUREKA.md, "Accept on register").
//!
//! Unknown fields and nulls are ignored, numbers may be strings, booleans may be strings, a single
//! object may stand for a list, and absent fields take Eureka's defaults. A field of the wrong shape
//! (a port that is not a number, say) is an error: Java rejects it too.

use std::sync::Arc;

use super::tree::{field, Node};
use super::{xml, DecodeError, Format};
use crate::model::{ActionType, Application, Applications, DataCenterInfo, Instance, LeaseInfo, Metadata, PortInfo, Status};

/// Reads `{"instance": {...}}` (or `<instance>`).
pub(crate) fn instance_document(document: &Node, format: Format) -> Result<Instance, DecodeError> {
    let root = document.get("instance").ok_or(DecodeError::MissingRoot("instance"))?;
    instance(root, format)
}

/// Reads `{"application": {...}}` (or `<application>`).
pub(crate) fn application_document(document: &Node, format: Format) -> Result<Application, DecodeError> {
    let root = document.get("application").ok_or(DecodeError::MissingRoot("application"))?;
    application(root, format)
}

/// Reads `{"applications": {...}}` (or `<applications>`).
pub(crate) fn applications_document(document: &Node, format: Format) -> Result<Applications, DecodeError> {
    let root = document.get("applications").ok_or(DecodeError::MissingRoot("applications"))?;
    let versions_delta = field(root, "versions__delta", |n| n.int::<i64>("versions__delta"))?.unwrap_or(0);
    let apps_hashcode = field(root, "apps__hashcode", |n| n.text("apps__hashcode"))?.unwrap_or_default();
    let mut applications = Vec::new();
    if let Some(list) = root.get("application") {
        for app in list.list("application")? {
            applications.push(application(app, format)?);
        }
    }
    Ok(Applications { versions_delta: u64::try_from(versions_delta).unwrap_or(0), apps_hashcode, applications })
}

fn application(node: &Node, format: Format) -> Result<Application, DecodeError> {
    let name = field(node, "name", |n| n.text("name"))?.unwrap_or_default().to_ascii_uppercase();
    let mut instances = Vec::new();
    if let Some(list) = node.get("instance") {
        for item in list.list("instance")? {
            instances.push(Arc::new(instance(item, format)?));
        }
    }
    Ok(Application { name, instances })
}

fn text(node: &Node, key: &'static str) -> Result<Option<String>, DecodeError> {
    field(node, key, |n| n.text(key))
}

fn status(node: &Node, key: &'static str) -> Result<Option<Status>, DecodeError> {
    Ok(text(node, key)?.map(|s| Status::parse_lenient(&s)))
}

fn timestamp(node: &Node, key: &'static str) -> Result<u64, DecodeError> {
    Ok(field(node, key, |n| n.int::<u64>(key))?.unwrap_or(0))
}

fn port(node: &Node, key: &'static str, default: PortInfo) -> Result<PortInfo, DecodeError> {
    let Some(value) = node.get(key) else { return Ok(default) };
    match value {
        // `{"$":8080,"@enabled":"true"}` or `<port enabled="true">8080</port>`.
        Node::Map(_) | Node::Dict(_) => Ok(PortInfo {
            port: field(value, "$", |n| n.int::<u16>(key))?.unwrap_or(default.port),
            enabled: field(value, "@enabled", |n| n.boolean("@enabled"))?.unwrap_or(default.enabled),
        }),
        // A plain `"port":8080`: the port, with the default enabled flag.
        plain => Ok(PortInfo { port: plain.int::<u16>(key)?.unwrap_or(default.port), enabled: default.enabled }),
    }
}

fn metadata(node: &Node, format: Format) -> Result<Metadata, DecodeError> {
    let mut metadata = Metadata::new();
    for (key, value) in node.entries() {
        // `@class` marks Java's EmptyMap; it is not a metadata key.
        if key.starts_with('@') || matches!(value, Node::Null) {
            continue;
        }
        let key = match format {
            Format::Xml => xml::unescape_name(key),
            Format::Json => key.clone(),
        };
        metadata.insert(key, value.text("metadata")?.unwrap_or_default());
    }
    Ok(metadata)
}

fn data_center(node: &Node, format: Format) -> Result<DataCenterInfo, DecodeError> {
    Ok(DataCenterInfo {
        class: text(node, "@class")?.unwrap_or_else(|| DataCenterInfo::DEFAULT_CLASS.to_owned()),
        name: text(node, "name")?.unwrap_or_default(),
        metadata: match node.get("metadata") {
            Some(Node::Null) | None => None,
            Some(m) => Some(metadata(m, format)?),
        },
    })
}

fn lease(node: &Node) -> Result<LeaseInfo, DecodeError> {
    let defaults = LeaseInfo::default();
    Ok(LeaseInfo {
        renewal_interval_secs: field(node, "renewalIntervalInSecs", |n| n.int::<u32>("renewalIntervalInSecs"))?.unwrap_or(defaults.renewal_interval_secs),
        duration_secs: field(node, "durationInSecs", |n| n.int::<u32>("durationInSecs"))?.unwrap_or(defaults.duration_secs),
        registration_timestamp: timestamp(node, "registrationTimestamp")?,
        last_renewal_timestamp: timestamp(node, "lastRenewalTimestamp")?,
        eviction_timestamp: timestamp(node, "evictionTimestamp")?,
        service_up_timestamp: timestamp(node, "serviceUpTimestamp")?,
    })
}

fn instance(node: &Node, format: Format) -> Result<Instance, DecodeError> {
    if !matches!(node, Node::Map(_) | Node::Dict(_)) {
        return Err(DecodeError::field("instance", "an object"));
    }
    let defaults = Instance::new("", "", "", "");
    let overridden_status = match status(node, "overriddenStatus")? {
        Some(s) => Some(s),
        None => status(node, "overriddenstatus")?,
    };
    Ok(Instance {
        instance_id: text(node, "instanceId")?.unwrap_or_default(),
        host_name: text(node, "hostName")?.unwrap_or_default(),
        app: text(node, "app")?.unwrap_or_default().to_ascii_uppercase(),
        ip_addr: text(node, "ipAddr")?.unwrap_or_default(),
        status: status(node, "status")?.unwrap_or(Status::Up),
        overridden_status: overridden_status.unwrap_or(Status::Unknown),
        port: port(node, "port", defaults.port)?,
        secure_port: port(node, "securePort", defaults.secure_port)?,
        country_id: field(node, "countryId", |n| n.int::<i64>("countryId"))?.unwrap_or(defaults.country_id),
        data_center_info: match node.get("dataCenterInfo") {
            Some(Node::Null) | None => None,
            Some(dc) => Some(data_center(dc, format)?),
        },
        lease_info: match node.get("leaseInfo") {
            Some(Node::Null) | None => defaults.lease_info,
            Some(l) => lease(l)?,
        },
        metadata: match node.get("metadata") {
            Some(m) => metadata(m, format)?,
            None => Metadata::new(),
        },
        home_page_url: text(node, "homePageUrl")?,
        status_page_url: text(node, "statusPageUrl")?,
        health_check_url: text(node, "healthCheckUrl")?,
        secure_health_check_url: text(node, "secureHealthCheckUrl")?,
        vip_address: text(node, "vipAddress")?,
        secure_vip_address: text(node, "secureVipAddress")?,
        is_coordinating_discovery_server: field(node, "isCoordinatingDiscoveryServer", |n| n.boolean("isCoordinatingDiscoveryServer"))?.unwrap_or(false),
        last_updated_timestamp: timestamp(node, "lastUpdatedTimestamp")?,
        last_dirty_timestamp: timestamp(node, "lastDirtyTimestamp")?,
        action_type: text(node, "actionType")?.and_then(|a| ActionType::parse(&a)),
    })
}
