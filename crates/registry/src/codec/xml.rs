//! XML to and from the [`Node`] tree, with quick-xml.
//!
//! Mapping (the one Eureka's XStream and Jackson codecs share): an element's attributes become
//! `@name` entries, its text becomes `$` when it also has attributes and is the element's value when
//! it has none, and repeated child elements become a [`Node::List`]. Free-form keys
//! ([`Node::Dict`], i.e. metadata) are always written as child elements, escaped as XStream does:
//! `_` as `__`, `$` as `_-`, and any other character that is not an ASCII letter (or, after the
//! first, a digit, `.` or `-`) as `_.` and four hex digits of its UTF-16 unit, so every name the
//! writer emits is a valid XML name for every parser.

use std::collections::HashMap;

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
    /// Position of each child name in `children`, once there are [`INDEX_FROM`] of them: a
    /// metadata element with tens of thousands of keys must not cost a scan per key.
    index: Option<HashMap<String, usize>>,
    text: String,
}

/// From this many distinct children on, [`Open::add_child`] finds repeats through a hash index.
const INDEX_FROM: usize = 16;

impl Open {
    fn new(start: &BytesStart<'_>) -> Result<Open, DecodeError> {
        let name = std::str::from_utf8(start.local_name().into_inner()).map_err(|_| DecodeError::xml("element name is not UTF-8"))?.to_owned();
        let mut attributes = Vec::new();
        // quick-xml's duplicate check is linear in the attribute count (hashed past a few).
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| DecodeError::xml(e.to_string()))?;
            let key = std::str::from_utf8(attribute.key.local_name().into_inner()).map_err(|_| DecodeError::xml("attribute name is not UTF-8"))?;
            let value = attribute.normalized_value(XmlVersion::Implicit1_0).map_err(|e| DecodeError::xml(e.to_string()))?;
            attributes.push((format!("@{key}"), Node::Text(value.into_owned())));
        }
        Ok(Open { name, attributes, children: Vec::new(), index: None, text: String::new() })
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.children.iter().position(|(k, _)| k == name),
        }
    }

    fn add_child(&mut self, name: String, node: Node) {
        let Some(i) = self.position(&name) else {
            if let Some(index) = &mut self.index {
                index.insert(name.clone(), self.children.len());
            }
            self.children.push((name, node));
            if self.index.is_none() && self.children.len() >= INDEX_FROM {
                self.index = Some(self.children.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
            }
            return;
        };
        match &mut self.children[i].1 {
            Node::List(items) => items.push(node),
            existing => {
                let first = std::mem::replace(existing, Node::Null);
                *existing = Node::List(vec![first, node]);
            }
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

fn open_tag(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
}

fn close_tag(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Writes one element. `name` is always a valid XML name: a fixed Eureka field name, or a
/// free-form key passed through [`escape_name`].
fn write_element(out: &mut String, name: &str, node: &Node) {
    match node {
        Node::Null => {}
        Node::List(items) => {
            for item in items {
                write_element(out, name, item);
            }
        }
        // Free-form keys (metadata) are user data: every one becomes a child element with an
        // escaped name. None becomes an attribute (`@x`) or the element's text (`$`), which would
        // let a key such as `x="1"><evil/><y` write markup of its choosing.
        Node::Dict(entries) => {
            let body: Vec<&(String, Node)> = entries.iter().filter(|(key, value)| !key.is_empty() && !matches!(value, Node::Null)).collect();
            open_tag(out, name);
            if body.is_empty() {
                out.push_str("/>");
                return;
            }
            out.push('>');
            for (key, value) in body {
                // An empty key has no element name at all; XML cannot carry it (filtered above).
                write_element(out, &escape_name(key), value);
            }
            close_tag(out, name);
        }
        Node::Map(entries) => {
            open_tag(out, name);
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
                } else {
                    write_element(out, key, value);
                }
            }
            close_tag(out, name);
        }
        scalar => {
            let text = scalar_text(scalar).unwrap_or_default();
            open_tag(out, name);
            out.push('>');
            out.push_str(&escape(xml_chars(&text)));
            close_tag(out, name);
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

/// Whether `c` may stand for itself in an escaped name: ASCII letters anywhere, digits, `.` and `-`
/// after the first character. `_` is a legal name character too, but it is the escape character
/// and is written `__`. Everything else, non-ASCII letters included, is escaped: which non-ASCII
/// characters XML allows in names differs between the editions of XML 1.0 and between parsers
/// (expat, behind Python's ElementTree, refuses `<x²>` and `<xⅠ>`), while ASCII is valid in all.
fn is_plain_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || (!first && (c.is_ascii_digit() || c == '.' || c == '-'))
}

/// Escapes a free-form key as an XML element name, the XStream way (see the module doc): `_` as
/// `__`, `$` as `_-`, and every character outside `[A-Za-z]` (first) or `[A-Za-z0-9.-]` (then) as
/// `_.` and four hex digits per UTF-16 unit. The result always matches `[A-Za-z_][A-Za-z0-9._-]*`.
pub(crate) fn escape_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, c) in key.chars().enumerate() {
        match c {
            '_' => out.push_str("__"),
            '$' => out.push_str("_-"),
            c if is_plain_name_char(c, i == 0) => out.push(c),
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
        if let Some(hex) = rest.strip_prefix("_.").and_then(|r| r.get(..4)).filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit())) {
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
pub(crate) mod tests {
    use super::*;

    /// Whether `name` is in the ASCII subset of the XML Name production that every parser accepts
    /// (what [`escape_name`] promises): `[A-Za-z_][A-Za-z0-9._-]*`.
    fn is_strict_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    }

    fn is_xml_char(c: char) -> bool {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    }

    /// Checks character data up to the next `<`: XML chars only, `&` only as a predefined or
    /// numeric reference, no `]]>`. Returns the rest.
    fn strict_text<'a>(text: &'a str, what: &str) -> Result<&'a str, String> {
        let end = text.find('<').unwrap_or(text.len());
        let (data, rest) = text.split_at(end);
        if let Some(c) = data.chars().find(|c| !is_xml_char(*c)) {
            return Err(format!("{what}: character {c:?} is not allowed in XML"));
        }
        if data.contains("]]>") {
            return Err(format!("{what}: `]]>` in text"));
        }
        let mut refs = data.split('&').skip(1);
        if let Some(bad) = refs.find(|r| {
            let Some((name, _)) = r.split_once(';') else { return true };
            !matches!(name, "lt" | "gt" | "amp" | "quot" | "apos")
                && !name.strip_prefix("#x").is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
                && !name.strip_prefix('#').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        }) {
            return Err(format!("{what}: bad reference &{bad}"));
        }
        Ok(rest)
    }

    /// A strict well-formedness check of what [`write`] emits (no declarations, comments, CDATA or
    /// processing instructions): one root, matching tags, strict names, unique quoted attributes,
    /// escaped text. quick-xml's reader is lenient about names, so round trips alone prove nothing
    /// about what ElementTree (expat) or Java accept.
    pub(crate) fn check_strict(xml: &str) -> Result<(), String> {
        let mut stack: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = xml;
        loop {
            rest = strict_text(rest, "text")?;
            if stack.is_empty() && !xml[..xml.len() - rest.len()].trim().is_empty() && roots == 0 {
                return Err("text before the root element".into());
            }
            let Some(tag) = rest.strip_prefix('<') else { break };
            if let Some(after) = tag.strip_prefix('/') {
                let end = after.find('>').ok_or("unterminated end tag")?;
                let name = &after[..end];
                if stack.pop() != Some(name) {
                    return Err(format!("end tag </{name}> does not close the open element"));
                }
                rest = &after[end + 1..];
                continue;
            }
            let name_end = tag.find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/').ok_or("unterminated start tag")?;
            let name = &tag[..name_end];
            if !is_strict_name(name) {
                return Err(format!("element name {name:?} is not a strict XML name"));
            }
            if stack.is_empty() {
                roots += 1;
                if roots > 1 {
                    return Err("more than one root element".into());
                }
            }
            let mut attrs = &tag[name_end..];
            let mut seen: Vec<&str> = Vec::new();
            loop {
                let trimmed = attrs.trim_start_matches(|c: char| c.is_ascii_whitespace());
                if let Some(after) = trimmed.strip_prefix("/>") {
                    rest = after;
                    break;
                }
                if let Some(after) = trimmed.strip_prefix('>') {
                    stack.push(name);
                    rest = after;
                    break;
                }
                if trimmed.len() == attrs.len() {
                    return Err(format!("no blank before an attribute of <{name}>"));
                }
                let eq = trimmed.find('=').ok_or("attribute without a value")?;
                let attr = &trimmed[..eq];
                if !is_strict_name(attr) || seen.contains(&attr) {
                    return Err(format!("attribute name {attr:?} of <{name}> is not a strict, unique XML name"));
                }
                seen.push(attr);
                let value = trimmed[eq + 1..].strip_prefix('"').ok_or("attribute value not quoted")?;
                let close = value.find('"').ok_or("unterminated attribute value")?;
                if !strict_text(&value[..close], "attribute value")?.is_empty() {
                    return Err(format!("`<` in an attribute value of <{name}>"));
                }
                attrs = &value[close + 1..];
            }
        }
        match (stack.last(), roots, rest.is_empty()) {
            (Some(open), _, _) => Err(format!("<{open}> is never closed")),
            (None, 1, true) => Ok(()),
            _ => Err("no root element".into()),
        }
    }

    #[test]
    fn the_strict_check_refuses_what_parsers_refuse() {
        assert_eq!(check_strict("<a x=\"1\"><b>t &amp; &#65;</b><c/></a>"), Ok(()));
        for bad in [
            "<metadata x=\"1\"><evil/><y=\"v\">1</y=\"v\"></metadata>",
            "<m><x\u{b2}>1</x\u{b2}></m>",
            "<m><\u{aa}>1</\u{aa}></m>",
            "<m><1a>1</1a></m>",
            "<a><b></a>",
            "<a>&x;</a>",
            "<a>\u{1}</a>",
            "<a/><b/>",
            "<a x=\"1\" x=\"2\"/>",
        ] {
            assert!(check_strict(bad).is_err(), "{bad} passed");
        }
    }

    #[test]
    fn metadata_keys_never_become_markup() {
        let keys = ["@x=\"1\"><evil/><y", "$", "@class", "x\u{b2}", "\u{aa}", "x\u{2160}", "1st", "-x", ".x", "a:b", "a b", "x<y", "emoji\u{1f600}", "\u{e9}t\u{e9}", "my_key$1", "_.0041", "xml"];
        let dict = Node::Dict(keys.iter().map(|k| ((*k).to_owned(), Node::Text("v".into()))).collect());
        let doc = Node::Map(vec![("instance".into(), Node::Map(vec![("metadata".into(), dict)]))]);
        let xml = String::from_utf8(write(&doc)).unwrap();
        check_strict(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
        assert!(xml.starts_with("<instance><metadata><_.0040x_.003d_.00221_.0022_.003e_.003cevil"), "{xml}");
        let parsed = parse(xml.as_bytes()).unwrap();
        let metadata = parsed.get("instance").and_then(|i| i.get("metadata")).unwrap();
        let read: Vec<String> = metadata.entries().iter().map(|(k, _)| unescape_name(k)).collect();
        assert_eq!(read, keys);
    }

    #[test]
    fn escaped_names_are_strict_xml_names_for_every_character() {
        let mut key = String::new();
        for c in (0..0x3100u32).chain(0xFF00..0x1_0000).chain([0x1_F600, 0x10_FFFF]).filter_map(char::from_u32) {
            for candidate in [c.to_string(), format!("a{c}")] {
                let name = escape_name(&candidate);
                assert!(is_strict_name(&name), "{candidate:?} escaped to {name:?}");
                assert_eq!(unescape_name(&name), candidate);
            }
            key.push(c);
        }
        assert!(is_strict_name(&escape_name(&key)));
        assert_eq!(unescape_name(&escape_name(&key)), key);
    }


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
        assert_eq!(escape_name("x\u{b2}"), "x_.00b2");
        assert_eq!(unescape_name("a_.+041"), "a_.+041", "only four hex digits are an escape");
        for key in ["my_key$1", "a b/c", "1st", "ünï", "emoji😀", "_", "__x", "a_.0041", "$", "@x"] {
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
