//! Eureka's JSON and XML wire formats, both ways (EUREKA.md).
//!
//! Both formats go through one document tree: `json` and `xml` turn bytes into a tree and back,
//! `read` maps a tree to the [`crate::model`] types leniently (what real clients send), and
//! `write` maps the model to a tree in the Java serializer's field order (what real clients
//! read). [`validate_registration`] adds Java's 400 checks for a registration.
//!
//! Every input is peer-controlled: decoding returns a typed [`DecodeError`] and never panics.

mod json;
mod read;
mod tree;
mod validate;
mod write;
mod xml;

use thiserror::Error;

use crate::model::{Application, Applications, Instance};
pub use validate::{validate_registration, ValidationError};

/// A wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: eureka-js-client, Spring Cloud.
    Json,
    /// `application/xml`: py-eureka-client, and Java's default when the client asks for nothing.
    Xml,
}

impl Format {
    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml",
        }
    }

    /// Guesses the format from the first non-blank byte (`{` or `<`), for bodies whose
    /// `Content-Type` says neither.
    pub fn sniff(body: &[u8]) -> Option<Format> {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Some(Format::Json),
            Some(b'<') => Some(Format::Xml),
            _ => None,
        }
    }
}

/// How much of each instance to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every field.
    Full,
    /// `X-Eureka-Accept: compact`: no URLs, leaseInfo, metadata, overriddenStatus nor lastDirtyTimestamp.
    Compact,
}

/// Why a document could not be read. `Display` is for logs, not a contract.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Not JSON, or nested too deep.
    #[error("malformed JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Not well-formed XML.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// XML nested deeper than any Eureka document.
    #[error("XML nested deeper than {0} elements")]
    TooDeep(usize),
    /// The document's root is not the expected one (`instance`, `application`, `applications`).
    #[error("the document has no `{0}` root")]
    MissingRoot(&'static str),
    /// A known field has the wrong shape.
    #[error("field `{field}` must be {expected}")]
    Field {
        /// The field's wire name.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

impl DecodeError {
    fn field(field: &'static str, expected: &'static str) -> DecodeError {
        DecodeError::Field { field, expected }
    }

    fn xml(message: impl Into<String>) -> DecodeError {
        DecodeError::Xml(message.into())
    }
}

fn parse(bytes: &[u8], format: Format) -> Result<tree::Node, DecodeError> {
    match format {
        Format::Json => json::parse(bytes),
        Format::Xml => xml::parse(bytes),
    }
}

fn emit(root: &str, node: tree::Node, format: Format) -> Vec<u8> {
    let document = tree::Node::Map(vec![(root.to_owned(), node)]);
    match format {
        Format::Json => json::write(&document),
        Format::Xml => xml::write(&document),
    }
}

/// Reads an instance document (`{"instance":{...}}` or `<instance>`), as sent to register.
///
/// Absent fields take Eureka's defaults; timestamps absent read as 0 (the registry fills them).
/// The result is not validated: see [`validate_registration`].
///
/// # Errors
/// [`DecodeError`] when the bytes are not a well-formed instance document.
pub fn decode_instance(bytes: &[u8], format: Format) -> Result<Instance, DecodeError> {
    read::instance_document(&parse(bytes, format)?, format)
}

/// Reads an application document (`{"application":{...}}`).
///
/// # Errors
/// [`DecodeError`] when the bytes are not a well-formed application document.
pub fn decode_application(bytes: &[u8], format: Format) -> Result<Application, DecodeError> {
    read::application_document(&parse(bytes, format)?, format)
}

/// Reads an applications document (`{"applications":{...}}`), full or delta.
///
/// # Errors
/// [`DecodeError`] when the bytes are not a well-formed applications document.
pub fn decode_applications(bytes: &[u8], format: Format) -> Result<Applications, DecodeError> {
    read::applications_document(&parse(bytes, format)?, format)
}

/// Writes an instance document.
pub fn encode_instance(instance: &Instance, format: Format, view: View) -> Vec<u8> {
    emit("instance", write::instance(instance, format, view), format)
}

/// Writes an application document.
pub fn encode_application(application: &Application, format: Format, view: View) -> Vec<u8> {
    emit("application", write::application(application, format, view), format)
}

/// Writes an applications document.
pub fn encode_applications(applications: &Applications, format: Format, view: View) -> Vec<u8> {
    emit("applications", write::applications(applications, format, view), format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionType, Metadata, Status};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// EUREKA.md's instance JSON, verbatim.
    const EXAMPLE_JSON: &str = concat!(
        r#"{"instance":{"instanceId":"10.0.0.5:demo:8080","hostName":"10.0.0.5","app":"DEMO","ipAddr":"10.0.0.5","#,
        r#""status":"UP","overriddenStatus":"UNKNOWN","port":{"$":8080,"@enabled":"true"},"securePort":{"$":443,"@enabled":"false"},"#,
        r#""countryId":1,"dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},"#,
        r#""leaseInfo":{"renewalIntervalInSecs":30,"durationInSecs":90,"registrationTimestamp":1700000000000,"#,
        r#""lastRenewalTimestamp":1700000030000,"evictionTimestamp":0,"serviceUpTimestamp":1700000000000},"#,
        r#""metadata":{"management.port":"8080"},"homePageUrl":"http://10.0.0.5:8080/","statusPageUrl":"http://10.0.0.5:8080/actuator/info","#,
        r#""healthCheckUrl":"http://10.0.0.5:8080/actuator/health","vipAddress":"demo","secureVipAddress":"demo","#,
        r#""isCoordinatingDiscoveryServer":"false","lastUpdatedTimestamp":"1700000000000","lastDirtyTimestamp":"1699999999000","actionType":"ADDED"}}"#
    );

    fn example() -> Instance {
        decode_instance(EXAMPLE_JSON.as_bytes(), Format::Json).unwrap()
    }

    #[test]
    fn the_example_json_reads_every_field() {
        let i = example();
        assert_eq!((i.instance_id.as_str(), i.host_name.as_str(), i.app.as_str(), i.ip_addr.as_str()), ("10.0.0.5:demo:8080", "10.0.0.5", "DEMO", "10.0.0.5"));
        assert_eq!((i.status, i.overridden_status), (Status::Up, Status::Unknown));
        assert_eq!((i.port.port, i.port.enabled, i.secure_port.port, i.secure_port.enabled), (8080, true, 443, false));
        assert_eq!(i.data_center_info.as_ref().map(|d| d.name.as_str()), Some("MyOwn"));
        assert_eq!(i.lease_info.last_renewal_timestamp, 1_700_000_030_000);
        assert_eq!(i.metadata.get("management.port"), Some("8080"));
        assert_eq!(i.health_check_url.as_deref(), Some("http://10.0.0.5:8080/actuator/health"));
        assert_eq!((i.last_updated_timestamp, i.last_dirty_timestamp), (1_700_000_000_000, 1_699_999_999_000));
        assert_eq!(i.action_type, Some(ActionType::Added));
    }

    #[test]
    fn the_example_json_is_written_back_byte_for_byte() {
        let written = encode_instance(&example(), Format::Json, View::Full);
        assert_eq!(String::from_utf8(written).unwrap(), EXAMPLE_JSON);
    }

    #[test]
    fn xml_has_the_documented_shape_and_round_trips() {
        let i = example();
        let xml = String::from_utf8(encode_instance(&i, Format::Xml, View::Full)).unwrap();
        for part in [
            "<instance><instanceId>10.0.0.5:demo:8080</instanceId><hostName>10.0.0.5</hostName><app>DEMO</app><ipAddr>10.0.0.5</ipAddr>",
            "<status>UP</status><overriddenstatus>UNKNOWN</overriddenstatus><port enabled=\"true\">8080</port>",
            "<securePort enabled=\"false\">443</securePort><countryId>1</countryId>",
            "<dataCenterInfo class=\"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo\"><name>MyOwn</name></dataCenterInfo>",
            "<leaseInfo><renewalIntervalInSecs>30</renewalIntervalInSecs>",
            "<serviceUpTimestamp>1700000000000</serviceUpTimestamp></leaseInfo>",
            "<metadata><management.port>8080</management.port></metadata>",
            "<vipAddress>demo</vipAddress><secureVipAddress>demo</secureVipAddress><isCoordinatingDiscoveryServer>false</isCoordinatingDiscoveryServer>",
            "<lastDirtyTimestamp>1699999999000</lastDirtyTimestamp><actionType>ADDED</actionType></instance>",
        ] {
            assert!(xml.contains(part), "{part} missing from {xml}");
        }
        assert_eq!(decode_instance(xml.as_bytes(), Format::Xml).unwrap(), i);
    }

    #[test]
    fn applications_round_trip_in_both_formats_with_the_documented_envelope() {
        let mut second = example();
        second.instance_id = "10.0.0.6:demo:8080".into();
        second.metadata = [("a_b$c", "1"), ("zone", "x<y")].into_iter().collect();
        let apps = Applications {
            versions_delta: 1,
            apps_hashcode: "UP_2_".into(),
            applications: vec![Application { name: "DEMO".into(), instances: vec![Arc::new(example()), Arc::new(second)] }],
        };
        let json = String::from_utf8(encode_applications(&apps, Format::Json, View::Full)).unwrap();
        assert!(json.starts_with(r#"{"applications":{"versions__delta":"1","apps__hashcode":"UP_2_","application":[{"name":"DEMO","instance":[{"instanceId""#), "{json}");
        let xml = String::from_utf8(encode_applications(&apps, Format::Xml, View::Full)).unwrap();
        assert!(xml.starts_with("<applications><versions__delta>1</versions__delta><apps__hashcode>UP_2_</apps__hashcode><application><name>DEMO</name><instance>"), "{xml}");
        assert!(xml.contains("<metadata><a__b_-c>1</a__b_-c><zone>x&lt;y</zone></metadata>"), "{xml}");
        for (bytes, format) in [(json.as_bytes(), Format::Json), (xml.as_bytes(), Format::Xml)] {
            assert_eq!(decode_applications(bytes, format).unwrap(), apps);
        }
    }

    #[test]
    fn hostile_metadata_keys_leave_the_xml_document_well_formed() {
        // What `PUT .../metadata?%40x%3D%221%22%3E%3Cevil%2F%3E%3Cy=v` stores, and keys expat refuses.
        let mut i = example();
        for key in ["@x=\"1\"><evil/><y", "$", "@class", "x\u{b2}", "\u{aa}", "x\u{2160}", "9lives", "a:b", "\u{e9}t\u{e9}"] {
            i.metadata.insert(key, "v");
        }
        i.data_center_info.as_mut().unwrap().metadata = Some([("@instance-id", "i-1"), ("$", "x")].into_iter().collect());
        let apps = Applications { versions_delta: 1, apps_hashcode: "UP_1_".into(), applications: vec![Application { name: "DEMO".into(), instances: vec![Arc::new(i.clone())] }] };
        for view in [View::Full, View::Compact] {
            let xml = String::from_utf8(encode_applications(&apps, Format::Xml, view)).unwrap();
            xml::tests::check_strict(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
            assert!(!xml.contains("<evil"), "{xml}");
        }
        let xml = encode_instance(&i, Format::Xml, View::Full);
        xml::tests::check_strict(std::str::from_utf8(&xml).unwrap()).unwrap();
        assert_eq!(decode_instance(&xml, Format::Xml).unwrap(), i, "every key reads back as it was");
    }

    #[test]
    fn application_documents_round_trip() {
        let app = Application { name: "DEMO".into(), instances: vec![Arc::new(example())] };
        for format in [Format::Json, Format::Xml] {
            assert_eq!(decode_application(&encode_application(&app, format, View::Full), format).unwrap(), app);
        }
        assert!(matches!(decode_application(br#"{"instance":{}}"#, Format::Json), Err(DecodeError::MissingRoot("application"))));
    }

    #[test]
    fn decoding_many_metadata_keys_is_linear() {
        // About the largest registration body (1 MiB): 80,000 keys. Quadratic decoding took seconds.
        let keys = 80_000;
        let json = format!(r#"{{"instance":{{"metadata":{{{}}}}}}}"#, (0..keys).map(|n| format!(r#""k{n}":"v""#)).collect::<Vec<_>>().join(","));
        let xml = format!("<instance><metadata>{}</metadata></instance>", (0..keys).map(|n| format!("<k{n}>v</k{n}>")).collect::<String>());
        for (bytes, format) in [(json.as_bytes(), Format::Json), (xml.as_bytes(), Format::Xml)] {
            let started = Instant::now();
            let i = decode_instance(bytes, format).unwrap();
            let took = started.elapsed();
            assert_eq!((i.metadata.len(), i.metadata.get("k79999")), (keys, Some("v")));
            // Linear decoding takes tens of milliseconds even unoptimised; quadratic took seconds optimised.
            assert!(took < Duration::from_secs(3), "{format:?}: {took:?}");
            assert!(i.metadata.check_size().is_err());
        }
        // Repeated elements of one name stay one list, however many.
        let xml = format!("<applications>{}</applications>", "<application><name>A</name></application>".repeat(keys));
        let started = Instant::now();
        assert_eq!(decode_applications(xml.as_bytes(), Format::Xml).unwrap().applications.len(), keys);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn empty_registry_and_empty_metadata() {
        let empty = Applications { versions_delta: 3, apps_hashcode: String::new(), applications: vec![] };
        assert_eq!(String::from_utf8(encode_applications(&empty, Format::Json, View::Full)).unwrap(), r#"{"applications":{"versions__delta":"3","apps__hashcode":"","application":[]}}"#);
        assert_eq!(String::from_utf8(encode_applications(&empty, Format::Xml, View::Full)).unwrap(), "<applications><versions__delta>3</versions__delta><apps__hashcode></apps__hashcode></applications>");
        let mut i = example();
        i.metadata = Metadata::new();
        let json = String::from_utf8(encode_instance(&i, Format::Json, View::Full)).unwrap();
        assert!(json.contains(r#""metadata":{"@class":"java.util.Collections$EmptyMap"}"#));
        let xml = String::from_utf8(encode_instance(&i, Format::Xml, View::Full)).unwrap();
        assert!(xml.contains(r#"<metadata class="java.util.Collections$EmptyMap"/>"#));
        assert!(decode_instance(json.as_bytes(), Format::Json).unwrap().metadata.is_empty());
        assert!(decode_instance(xml.as_bytes(), Format::Xml).unwrap().metadata.is_empty());
    }

    #[test]
    fn compact_view_drops_the_documented_fields() {
        let json = String::from_utf8(encode_instance(&example(), Format::Json, View::Compact)).unwrap();
        for gone in ["homePageUrl", "statusPageUrl", "healthCheckUrl", "leaseInfo", "metadata", "overriddenStatus", "lastDirtyTimestamp"] {
            assert!(!json.contains(gone), "{gone} in {json}");
        }
        assert!(json.contains(r#""vipAddress":"demo""#));
    }

    #[test]
    fn eureka_js_client_registration_reads_with_defaults() {
        // What eureka-js-client 4.5 sends: lower-case app, no instanceId, plain-ish port.
        let body = br#"{"instance":{"app":"jqservice","hostName":"localhost","ipAddr":"127.0.0.1","statusPageUrl":"http://localhost:8080/info",
            "port":{"$":8080,"@enabled":true},"vipAddress":"jq.service","dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},"status":"UP"}}"#;
        let i = decode_instance(body, Format::Json).unwrap();
        assert_eq!((i.app.as_str(), i.id()), ("JQSERVICE", "localhost"));
        assert_eq!((i.port.port, i.port.enabled), (8080, true));
        assert_eq!((i.secure_port.port, i.secure_port.enabled), (7002, false));
        assert_eq!((i.lease_info.renewal_interval_secs, i.lease_info.duration_secs), (30, 90));
        assert_eq!((i.overridden_status, i.country_id, i.last_dirty_timestamp), (Status::Unknown, 1, 0));
        assert_eq!(validate_registration(&i, "jqservice"), Ok(()));
    }

    #[test]
    fn lenient_inputs_are_accepted() {
        let body = br#"{"instance":{"instanceId":"a","hostName":"h","app":"x","ipAddr":"1.2.3.4","status":"sleeping",
            "overriddenstatus":"OUT_OF_SERVICE","port":8081,"securePort":{"$":"8443","@enabled":"TRUE"},"countryId":"2",
            "leaseInfo":{"renewalIntervalInSecs":"1","durationInSecs":3,"registrationTimestamp":null},
            "metadata":{"n":5,"b":true,"nil":null,"@class":"java.util.LinkedHashMap"},"homePageUrl":null,"secureHealthCheckUrl":"",
            "isCoordinatingDiscoveryServer":false,"lastDirtyTimestamp":1699999999000,"sid":"na","unknown":{"deep":[1,2]},
            "dataCenterInfo":{"@class":"x","name":"MyOwn","metadata":{"instance-id":"i-1"}}}}"#;
        let i = decode_instance(body, Format::Json).unwrap();
        assert_eq!((i.status, i.overridden_status), (Status::Unknown, Status::OutOfService));
        assert_eq!((i.port.port, i.port.enabled, i.secure_port.port, i.secure_port.enabled), (8081, true, 8443, true));
        assert_eq!((i.country_id, i.lease_info.renewal_interval_secs, i.lease_info.duration_secs), (2, 1, 3));
        assert_eq!(i.metadata.iter().collect::<Vec<_>>(), vec![("n", "5"), ("b", "true")]);
        assert_eq!((i.home_page_url, i.secure_health_check_url.as_deref()), (None, Some("")));
        assert_eq!(i.last_dirty_timestamp, 1_699_999_999_000);
    }

    #[test]
    fn a_single_object_stands_for_an_array() {
        let body = br#"{"applications":{"versions__delta":1,"apps__hashcode":"UP_1_","application":{"name":"a","instance":{"instanceId":"i","hostName":"h","app":"A","ipAddr":"1"}}}}"#;
        let apps = decode_applications(body, Format::Json).unwrap();
        assert_eq!(apps.applications.len(), 1);
        assert_eq!(apps.applications[0].name, "A");
        assert_eq!(apps.applications[0].instances[0].instance_id, "i");
    }

    #[test]
    fn py_eureka_client_xml_reads() {
        let body = br#"<instance><instanceId>10.1.1.1:py-svc:9090</instanceId><hostName>10.1.1.1</hostName><app>PY-SVC</app>
            <ipAddr>10.1.1.1</ipAddr><status>UP</status><overriddenstatus>UNKNOWN</overriddenstatus><port enabled="true">9090</port>
            <securePort enabled="false">9443</securePort><countryId>1</countryId>
            <dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>
            <metadata><my__key>v</my__key></metadata><secureHealthCheckUrl></secureHealthCheckUrl></instance>"#;
        let i = decode_instance(body, Format::Xml).unwrap();
        assert_eq!((i.id(), i.port.port, i.secure_port.port), ("10.1.1.1:py-svc:9090", 9090, 9443));
        assert_eq!(i.metadata.get("my_key"), Some("v"));
        assert_eq!(validate_registration(&i, "py-svc"), Ok(()));
    }

    #[test]
    fn malformed_documents_are_typed_errors() {
        let cases: [(&[u8], Format); 8] = [
            (b"", Format::Json),
            (b"{\"instance\":", Format::Json),
            (b"[]", Format::Json),
            (br#"{"instance":{"port":"eighty"}}"#, Format::Json),
            (br#"{"instance":{"port":{"$":70000}}}"#, Format::Json),
            (br#"{"instance":[1]}"#, Format::Json),
            (b"<instance><port>8080</instance>", Format::Xml),
            (b"<application/>", Format::Xml),
        ];
        for (bytes, format) in cases {
            assert!(decode_instance(bytes, format).is_err(), "{:?} accepted", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn sniffing_looks_at_the_first_non_blank_byte() {
        assert_eq!(Format::sniff(b" \n{}"), Some(Format::Json));
        assert_eq!(Format::sniff(b"<a/>"), Some(Format::Xml));
        assert_eq!(Format::sniff(b"x"), None);
    }
}
