//! Parsing the gateway's configuration documents as JSON that says one thing: a key that
//! appears twice in an object (where `serde_json` would keep the last value and silently drop
//! the first, a whole tenant for a repeated `namespaces`) is an error naming its JSON path.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::fields::at;
use crate::core::config_error::ConfigError;

/// Parses `text` into a value, refusing duplicate keys.
pub fn parse(text: &[u8]) -> Result<Value, ConfigError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = Node {
        path: String::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => Err(match duplicate.into_inner() {
            Some(path) => ConfigError {
                path,
                message: "appears twice (a JSON key must be unique in its object)".to_string(),
            },
            None => ConfigError {
                path: String::new(),
                message: format!("invalid JSON: {e}"),
            },
        }),
    }
}

/// One value of the document at `path`; the first duplicate key found is put in `duplicate`.
struct Node<'a> {
    path: String,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Node {
            path: format!("{}[{}]", self.path, items.len()),
            duplicate: self.duplicate,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = at(&self.path, &key);
            if obj.contains_key(&key) {
                self.duplicate.borrow_mut().get_or_insert(path);
                return Err(A::Error::custom("duplicate key"));
            }
            let v = map.next_value_seed(Node {
                path,
                duplicate: self.duplicate,
            })?;
            obj.insert(key, v);
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(text: &str) -> String {
        parse(text.as_bytes()).expect_err("duplicate").to_string()
    }

    #[test]
    fn the_same_values_as_serde_json() {
        let text = r#"{"a":[1,-2,3.5,"x\u00e9",null,true,{"b":{}}],"c":18446744073709551615}"#;
        let ours = parse(text.as_bytes()).expect("valid");
        let theirs: Value = serde_json::from_str(text).expect("valid");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn duplicate_keys_are_named_by_path() {
        assert_eq!(
            dup(r#"{"namespaces":[],"version":"1","namespaces":[]}"#),
            "namespaces: appears twice (a JSON key must be unique in its object)"
        );
        assert!(dup(r#"{"namespaces":[{"code":"a","code":"b"}]}"#)
            .starts_with("namespaces[0].code: appears twice"));
        assert!(dup(r#"{"x":{"y":[0,{"z":1,"z":1}]}}"#).starts_with("x.y[1].z: appears twice"));
        // escapes do not hide a duplicate
        assert!(dup(r#"{"code":"a","c\u006fde":"b"}"#).starts_with("code: appears twice"));
    }

    #[test]
    fn the_same_key_in_different_objects_is_fine() {
        assert!(parse(br#"{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}]}"#).is_ok());
    }

    #[test]
    fn invalid_json_and_trailing_bytes() {
        assert!(dup("{\"a\":").starts_with("invalid JSON: "));
        assert!(dup("{} {}").starts_with("invalid JSON: trailing characters"));
    }
}
