//! Model to [`Node`] tree, in the Java serializer's field order (EUREKA.md, "Instance JSON").
//!
//! Ports, countryId and the lease are numbers; everything from `homePageUrl` on is a string,
//! timestamps included; `@enabled` and `isCoordinatingDiscoveryServer` are the strings
//! `"true"`/`"false"`. Empty metadata is Java's `EmptyMap` marker. Absent optional strings are left
//! out, as Java leaves out nulls.

use super::tree::Node;
use super::{Format, View};
use crate::model::{Application, Applications, DataCenterInfo, Instance, LeaseInfo, Metadata, PortInfo};

const EMPTY_MAP_CLASS: &str = "java.util.Collections$EmptyMap";

fn text(value: impl Into<String>) -> Node {
    Node::Text(value.into())
}

fn int(value: impl Into<i64>) -> Node {
    Node::Int(value.into())
}

/// Timestamps are u64 on our side; Java's are `long`, so anything past `i64::MAX` is clamped.
fn int_u64(value: u64) -> Node {
    Node::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

fn port(port: PortInfo) -> Node {
    Node::Map(vec![("$".into(), int(port.port)), ("@enabled".into(), text(port.enabled.to_string()))])
}

fn data_center(dc: &DataCenterInfo) -> Node {
    let mut entries = vec![("@class".into(), text(dc.class.as_str())), ("name".into(), text(dc.name.as_str()))];
    if let Some(metadata) = &dc.metadata {
        entries.push(("metadata".into(), dict(metadata)));
    }
    Node::Map(entries)
}

fn lease(lease: &LeaseInfo) -> Node {
    Node::Map(vec![
        ("renewalIntervalInSecs".into(), int(lease.renewal_interval_secs)),
        ("durationInSecs".into(), int(lease.duration_secs)),
        ("registrationTimestamp".into(), int_u64(lease.registration_timestamp)),
        ("lastRenewalTimestamp".into(), int_u64(lease.last_renewal_timestamp)),
        ("evictionTimestamp".into(), int_u64(lease.eviction_timestamp)),
        ("serviceUpTimestamp".into(), int_u64(lease.service_up_timestamp)),
    ])
}

fn dict(metadata: &Metadata) -> Node {
    if metadata.is_empty() {
        return Node::Map(vec![("@class".into(), text(EMPTY_MAP_CLASS))]);
    }
    Node::Dict(metadata.iter().map(|(k, v)| (k.to_owned(), text(v))).collect())
}

/// The instance object (without its `instance` wrapper).
pub(crate) fn instance(instance: &Instance, format: Format, view: View) -> Node {
    let full = view == View::Full;
    let mut e: Vec<(String, Node)> = Vec::with_capacity(22);
    e.push(("instanceId".into(), text(instance.instance_id.as_str())));
    e.push(("hostName".into(), text(instance.host_name.as_str())));
    e.push(("app".into(), text(instance.app.as_str())));
    e.push(("ipAddr".into(), text(instance.ip_addr.as_str())));
    e.push(("status".into(), text(instance.status.as_str())));
    if full {
        // XStream's legacy field name survives in XML only; JSON uses the camel-case one.
        let key = match format {
            Format::Json => "overriddenStatus",
            Format::Xml => "overriddenstatus",
        };
        e.push((key.into(), text(instance.overridden_status.as_str())));
    }
    e.push(("port".into(), port(instance.port)));
    e.push(("securePort".into(), port(instance.secure_port)));
    e.push(("countryId".into(), int(instance.country_id)));
    let dc = instance.data_center_info.clone().unwrap_or_else(DataCenterInfo::my_own);
    e.push(("dataCenterInfo".into(), data_center(&dc)));
    if full {
        e.push(("leaseInfo".into(), lease(&instance.lease_info)));
        e.push(("metadata".into(), dict(&instance.metadata)));
        let urls = [
            ("homePageUrl", &instance.home_page_url),
            ("statusPageUrl", &instance.status_page_url),
            ("healthCheckUrl", &instance.health_check_url),
            ("secureHealthCheckUrl", &instance.secure_health_check_url),
        ];
        for (key, value) in urls {
            if let Some(value) = value {
                e.push((key.into(), text(value.as_str())));
            }
        }
    }
    for (key, value) in [("vipAddress", &instance.vip_address), ("secureVipAddress", &instance.secure_vip_address)] {
        if let Some(value) = value {
            e.push((key.into(), text(value.as_str())));
        }
    }
    e.push(("isCoordinatingDiscoveryServer".into(), text(instance.is_coordinating_discovery_server.to_string())));
    e.push(("lastUpdatedTimestamp".into(), text(instance.last_updated_timestamp.to_string())));
    if full {
        e.push(("lastDirtyTimestamp".into(), text(instance.last_dirty_timestamp.to_string())));
    }
    if let Some(action) = instance.action_type {
        e.push(("actionType".into(), text(action.as_str())));
    }
    Node::Map(e)
}

/// The application object (without its `application` wrapper).
pub(crate) fn application(app: &Application, format: Format, view: View) -> Node {
    Node::Map(vec![
        ("name".into(), text(app.name.as_str())),
        ("instance".into(), Node::List(app.instances.iter().map(|i| instance(i, format, view)).collect())),
    ])
}

/// The applications object (without its `applications` wrapper).
pub(crate) fn applications(apps: &Applications, format: Format, view: View) -> Node {
    Node::Map(vec![
        ("versions__delta".into(), text(apps.versions_delta.to_string())),
        ("apps__hashcode".into(), text(apps.apps_hashcode.as_str())),
        ("application".into(), Node::List(apps.applications.iter().map(|a| application(a, format, view)).collect())),
    ])
}
