//! XML to and from the [`Node`] tree, with quick-xml.
//!
//! Mapping (the one Eureka's XStream and Jackson codecs share): an element's attributes become
//! `@name` entries, its text becomes `$` when it also has attributes and is the element's value when
//! it has none, and repeated child elements become a [`Node::List`]. Free-form keys
//! ([`Node::Dict`], i.e. metadata) are escaped as XStream does: `_` as `__`, `$` as `_-`, and any
//! character not allowed in an element name as `_.` and four hex digits of its UTF-16 unit.

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::tree::Node;
use super::DecodeError;

/// Deepest element nesting accepted. Eureka documents are five levels deep; the bound keeps a
/// hostile document from building a tree whose recursive drop would overflow the stack.
const MAX_DEPTH: usize = 32;

/// An element being read.
struct Open {
    name: String,
    attributes: Vec<(String, Node)>,
    children: Vec<(String, Node)>,
    text: String,
}

impl Open {
    fn new(start: &BytesStart<'_>) -> Result<Open, DecodeError> {
        let name = std::str::from_utf8(start.local_name().into_inner()).map_err(|_| DecodeError::xml("element name is not UTF-8"))?.to_owned();
        let mut attributes = Vec::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| DecodeError::xml(e.to_string()))?;
            let key = std::str::from_utf8(attribute.key.local_name().into_inner()).map_err(|_| DecodeError::xml("attribute name is not UTF-8"))?;
            let value = attribute.normalized_value(XmlVersion::Implicit1_0).map_err(|e| DecodeError::xml(e.to_string()))?;
            attributes.push((format!("@{key}"), Node::Text(value.into_owned())));
        }
        Ok(Open { name, attributes, children: Vec::new(), text: String::new() })
    }

    fn add_child(&mut self, name: String, node: Node) {
        match self.children.iter_mut().find(|(k, _)| *k == name) {
            Some((_, Node::List(items))) => items.push(node),
            Some((_, existing)) => {
                let first = std::mem::replace(existing, Node::Null);
                *existing = Node::List(vec![first, node]);
            }
            None => self.children.push((name, node)),
        }
    }

    fn finish(self) -> (String, Node) {
        let node = if !self.children.is_empty() {
            let mut entries = self.attributes;
            entries.extend(self.children);
            Node::Map(entries)
        } else if !self.attributes.is_empty() {
            let mut entries = self.attributes;
            if !self.text.is_empty() {
                entries.push(("$".to_owned(), Node::Text(self.text)));
            }
            Node::Map(entries)
        } else {
            Node::Text(self.text)
        };
        (self.name, node)
    }
}

/// Parses an XML document into `{root-name: tree}`, the shape JSON documents have.
pub(crate) fn parse(bytes: &[u8]) -> Result<Node, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::xml("document is not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| DecodeError::xml(e.to_string()))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep(MAX_DEPTH));
                }
                stack.push(Open::new(&start)?);
            }
            Event::Empty(start) => {
                let (name, node) = Open::new(&start)?.finish();
                match stack.last_mut() {
                    Some(parent) => parent.add_child(name, node),
                    None => return Ok(Node::Map(vec![(name, node)])),
                }
            }
            Event::End(_) => {
                let Some(open) = stack.pop() else {
                    return Err(DecodeError::xml("closing tag without an opening one"));
                };
                let (name, node) = open.finish();
                match stack.last_mut() {
                    Some(parent) => parent.add_child(name, node),
                    None => return Ok(Node::Map(vec![(name, node)])),
                }
            }
            Event::Text(text) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&text.xml10_content().map_err(|e| DecodeError::xml(e.to_string()))?);
                }
            }
            Event::CData(data) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&data.decode().map_err(|e| DecodeError::xml(e.to_string()))?);
                }
            }
            Event::GeneralRef(reference) => {
                let Some(open) = stack.last_mut() else { continue };
                match reference.resolve_char_ref().map_err(|e| DecodeError::xml(e.to_string()))? {
                    Some(ch) => open.text.push(ch),
                    None => {
                        let name = reference.decode().map_err(|e| DecodeError::xml(e.to_string()))?;
                        let resolved = resolve_predefined_entity(&name).ok_or_else(|| DecodeError::xml(format!("unknown entity &{name};")))?;
                        open.text.push_str(resolved);
                    }
                }
            }
            Event::Eof => return Err(DecodeError::xml("document ended before its root element closed")),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Writes `{root-name: tree}` as an XML document (no declaration: py-eureka-client parses the text
/// with ElementTree, which refuses a decoded string that declares an encoding).
pub(crate) fn write(document: &Node) -> Vec<u8> {
    let mut out = String::new();
    for (name, node) in document.entries() {
        write_element(&mut out, name, node);
    }
    out.into_bytes()
}

fn write_element(out: &mut String, name: &str, node: &Node) {
    match node {
        Node::Null => {}
        Node::List(items) => {
            for item in items {
                write_element(out, name, item);
            }
        }
        Node::Map(entries) | Node::Dict(entries) => {
            let escape_keys = matches!(node, Node::Dict(_));
            out.push('<');
            out.push_str(name);
            for (key, value) in entries {
                if let (Some(attribute), Some(text)) = (key.strip_prefix('@'), scalar_text(value)) {
                    out.push(' ');
                    out.push_str(attribute);
                    out.push_str("=\"");
                    out.push_str(&escape(xml_chars(&text)));
                    out.push('"');
                }
            }
            let body: Vec<&(String, Node)> = entries.iter().filter(|(key, value)| !key.starts_with('@') && !matches!(value, Node::Null)).collect();
            if body.is_empty() {
                out.push_str("/>");
                return;
            }
            out.push('>');
            for (key, value) in body {
                if key == "$" {
                    if let Some(text) = scalar_text(value) {
                        out.push_str(&escape(xml_chars(&text)));
                    }
                } else if escape_keys {
                    // An empty key has no element name at all; XML cannot carry it.
                    if !key.is_empty() {
                        write_element(out, &escape_name(key), value);
                    }
                } else {
                    write_element(out, key, value);
                }
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        scalar => {
            let text = scalar_text(scalar).unwrap_or_default();
            out.push('<');
            out.push_str(name);
            out.push('>');
            out.push_str(&escape(xml_chars(&text)));
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

fn scalar_text(node: &Node) -> Option<String> {
    match node {
        Node::Bool(b) => Some(b.to_string()),
        Node::Int(n) => Some(n.to_string()),
        Node::Float(f) => Some(f.to_string()),
        Node::Text(text) => Some(text.clone()),
        Node::Null | Node::Map(_) | Node::Dict(_) | Node::List(_) => None,
    }
}

/// Replaces the characters XML 1.0 cannot carry at all (most C0 controls, lone surrogates are
/// impossible in `str`, U+FFFE/U+FFFF) with U+FFFD, so one odd metadata value cannot make the whole
/// registry document unreadable to every client.
fn xml_chars(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic())
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit() || c == '-' || c == '.' || (!c.is_ascii() && c.is_alphanumeric())
}

/// Escapes a free-form key as an XML element name, the XStream way (see the module doc).
pub(crate) fn escape_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, c) in key.chars().enumerate() {
        match c {
            '_' => out.push_str("__"),
            '$' => out.push_str("_-"),
            c if (i == 0 && is_name_start(c)) || (i > 0 && is_name_char(c)) => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("_.{unit:04x}"));
                }
            }
        }
    }
    out
}

/// Reverses [`escape_name`]. Lenient: a `_` that starts no escape stays as it is.
pub(crate) fn unescape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut units: Vec<u16> = Vec::new();
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if let Some(hex) = rest.strip_prefix("_.").and_then(|r| r.get(..4)) {
            if let Ok(unit) = u16::from_str_radix(hex, 16) {
                units.push(unit);
                rest = &rest[6..];
                continue;
            }
        }
        if !units.is_empty() {
            out.push_str(&String::from_utf16_lossy(&units));
            units.clear();
        }
        if rest.starts_with("__") {
            out.push('_');
            rest = &rest[2..];
        } else if rest.starts_with("_-") {
            out.push('$');
            rest = &rest[2..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out.push_str(&String::from_utf16_lossy(&units));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_text_and_repeats_map_to_the_json_shape() {
        let node = parse(br#"<?xml version="1.0"?><application><name>A</name><instance><port enabled="true">80</port></instance><instance><port enabled="false">81</port></instance></application>"#).unwrap();
        let app = node.get("application").unwrap();
        assert_eq!(app.get("name"), Some(&Node::Text("A".into())));
        let Some(Node::List(instances)) = app.get("instance") else { panic!("instances not a list: {app:?}") };
        assert_eq!(instances.len(), 2);
        let port = instances[1].get("port").unwrap();
        assert_eq!(port.get("@enabled"), Some(&Node::Text("false".into())));
        assert_eq!(port.get("$"), Some(&Node::Text("81".into())));
    }

    #[test]
    fn entities_and_cdata_are_resolved() {
        let node = parse(b"<a><b>x &amp; &#x41;&#66; &lt;<![CDATA[<c>]]></b></a>").unwrap();
        assert_eq!(node.get("a").and_then(|a| a.get("b")), Some(&Node::Text("x & AB <<c>".into())));
        assert!(parse(b"<a>&custom;</a>").is_err());
    }

    #[test]
    fn malformed_and_deep_documents_are_errors() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"not xml").is_err());
        assert!(parse(&[0x3c, 0x61, 0x3e, 0xff, 0x3c, 0x2f, 0x61, 0x3e]).is_err());
        let deep = "<a>".repeat(1000);
        assert!(matches!(parse(deep.as_bytes()), Err(DecodeError::TooDeep(_))));
    }

    #[test]
    fn names_escape_like_xstream_and_round_trip() {
        assert_eq!(escape_name("my_key$1"), "my__key_-1");
        assert_eq!(escape_name("management.port"), "management.port");
        assert_eq!(escape_name("1a b"), "_.0031a_.0020b");
        for key in ["my_key$1", "a b/c", "1st", "ünï", "emoji😀", "_", "__x", "a_.0041"] {
            assert_eq!(unescape_name(&escape_name(key)), key, "key {key:?}");
        }
    }

    #[test]
    fn writer_escapes_text_and_metadata_keys() {
        let doc = Node::Map(vec![(
            "instance".into(),
            Node::Map(vec![
                ("app".into(), Node::Text("a<b&\u{1}".into())),
                ("metadata".into(), Node::Dict(vec![("x_y".into(), Node::Text("1".into())), ("".into(), Node::Text("lost".into()))])),
                ("port".into(), Node::Map(vec![("$".into(), Node::Int(80)), ("@enabled".into(), Node::Text("true".into()))])),
            ]),
        )]);
        let xml = String::from_utf8(write(&doc)).unwrap();
        assert_eq!(xml, "<instance><app>a&lt;b&amp;\u{FFFD}</app><metadata><x__y>1</x__y></metadata><port enabled=\"true\">80</port></instance>");
        assert!(parse(xml.as_bytes()).is_ok());
    }
}
