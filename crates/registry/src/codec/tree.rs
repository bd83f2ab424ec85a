//! The document tree both wire formats share, and its lenient accessors.
//!
//! Eureka's JSON was designed as a transcription of its XML: attributes become `@name` keys, the
//! text of an element with attributes becomes `$`, and repeated elements become arrays. Reading
//! either format into one [`Node`] tree, and writing one tree to either, keeps the field list and
//! the leniency rules (numbers as strings, booleans as strings, a single object for an array) in one
//! place: [`super::read`] and [`super::write`].

use super::DecodeError;

/// One value of a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// JSON `null` (never produced by XML).
    Null,
    /// JSON `true`/`false`.
    Bool(bool),
    /// A JSON integer. XML text stays [`Node::Text`]; the accessors parse it.
    Int(i64),
    /// A JSON number with a fraction or out of `i64` range: never valid where Eureka wants an integer.
    Float(f64),
    /// A string, or the text of an XML element.
    Text(String),
    /// An object of fixed Eureka field names, in order. Keys starting with `@` are XML attributes
    /// and `$` is an element's text.
    Map(Vec<(String, Node)>),
    /// A free-form object (metadata): like [`Node::Map`], but its keys are user data, so XML escapes
    /// them as element names (`_` as `__`, `$` as `_-`).
    Dict(Vec<(String, Node)>),
    /// A JSON array, or repeated XML elements.
    List(Vec<Node>),
}

impl Node {
    /// The value of `key` when this is an object; `None` otherwise or when absent.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) | Node::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The entries of an object (empty for anything else).
    pub(crate) fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Map(entries) | Node::Dict(entries) => entries,
            _ => &[],
        }
    }

    /// Reads a string. Numbers and booleans are accepted as their text; an object with a `$`
    /// (an XML element with attributes) gives its text. `Ok(None)` for null.
    pub(crate) fn text(&self, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self {
            Node::Null => Ok(None),
            Node::Text(text) => Ok(Some(text.clone())),
            Node::Int(n) => Ok(Some(n.to_string())),
            Node::Bool(b) => Ok(Some(b.to_string())),
            Node::Float(f) => Ok(Some(f.to_string())),
            Node::Map(_) | Node::Dict(_) => match self.get("$") {
                Some(inner) => inner.text(field),
                None => Err(DecodeError::field(field, "a string")),
            },
            Node::List(_) => Err(DecodeError::field(field, "a string")),
        }
    }

    /// Reads an integer given as a number or as a numeric string (surrounding blanks allowed), or
    /// as the `$` of an object. `Ok(None)` for null or blank text.
    pub(crate) fn int<T: TryFrom<i64>>(&self, field: &'static str) -> Result<Option<T>, DecodeError> {
        let wide = match self {
            Node::Null => return Ok(None),
            Node::Int(n) => *n,
            Node::Text(text) if text.trim().is_empty() => return Ok(None),
            Node::Text(text) => text.trim().parse::<i64>().map_err(|_| DecodeError::field(field, "an integer"))?,
            Node::Map(_) | Node::Dict(_) => match self.get("$") {
                Some(inner) => return inner.int(field),
                None => return Err(DecodeError::field(field, "an integer")),
            },
            Node::Bool(_) | Node::Float(_) | Node::List(_) => return Err(DecodeError::field(field, "an integer")),
        };
        T::try_from(wide).map(Some).map_err(|_| DecodeError::field(field, "an integer in range"))
    }

    /// Reads a boolean given as a boolean or as `"true"`/`"false"` (any case). `Ok(None)` for null.
    pub(crate) fn boolean(&self, field: &'static str) -> Result<Option<bool>, DecodeError> {
        match self {
            Node::Null => Ok(None),
            Node::Bool(b) => Ok(Some(*b)),
            Node::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                "" => Ok(None),
                _ => Err(DecodeError::field(field, "a boolean")),
            },
            _ => Err(DecodeError::field(field, "a boolean")),
        }
    }

    /// Reads a list: an array, or a single object in its place (the legacy codec and XML both write
    /// one element without a list). Null and empty text give an empty list.
    pub(crate) fn list(&self, field: &'static str) -> Result<Vec<&Node>, DecodeError> {
        match self {
            Node::Null => Ok(Vec::new()),
            Node::Text(text) if text.trim().is_empty() => Ok(Vec::new()),
            Node::List(items) => Ok(items.iter().filter(|item| !matches!(item, Node::Null)).collect()),
            Node::Map(_) | Node::Dict(_) => Ok(vec![self]),
            _ => Err(DecodeError::field(field, "an object or an array")),
        }
    }
}

/// Reads an optional field of `node` with `read`, treating an absent key like null.
pub(crate) fn field<'a, T>(
    node: &'a Node,
    key: &str,
    read: impl FnOnce(&'a Node) -> Result<Option<T>, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match node.get(key) {
        Some(value) => read(value),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_come_as_numbers_or_numeric_strings() {
        assert_eq!(Node::Int(8080).int::<u16>("port").ok(), Some(Some(8080)));
        assert_eq!(Node::Text(" 8080 ".into()).int::<u16>("port").ok(), Some(Some(8080)));
        assert_eq!(Node::Null.int::<u16>("port").ok(), Some(None));
        assert!(Node::Int(70000).int::<u16>("port").is_err());
        assert!(Node::Text("eighty".into()).int::<u16>("port").is_err());
        assert!(Node::Float(1.5).int::<u16>("port").is_err());
        let wrapped = Node::Map(vec![("@enabled".into(), Node::Text("true".into())), ("$".into(), Node::Text("9".into()))]);
        assert_eq!(wrapped.int::<u16>("port").ok(), Some(Some(9)));
    }

    #[test]
    fn booleans_come_as_booleans_or_strings() {
        assert_eq!(Node::Bool(true).boolean("b").ok(), Some(Some(true)));
        assert_eq!(Node::Text("FALSE".into()).boolean("b").ok(), Some(Some(false)));
        assert!(Node::Text("yes".into()).boolean("b").is_err());
    }

    #[test]
    fn a_single_object_reads_as_a_list() {
        let one = Node::Map(vec![("name".into(), Node::Text("A".into()))]);
        assert_eq!(one.list("application").map(|l| l.len()).ok(), Some(1));
        assert_eq!(Node::Null.list("application").map(|l| l.len()).ok(), Some(0));
        assert!(Node::Int(1).list("application").is_err());
    }
}
