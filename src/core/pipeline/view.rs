//! The request as matchers and policies see it: headers and query arguments from the nginx
//! layer ([`Incoming`]), the JSON body parsed once, on first use by a body matcher.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_json::Value;

use crate::core::matcher::RequestView;
use crate::core::request::parse_document;

/// Headers and query arguments of a request (the nginx layer reads them from the request).
pub trait Incoming {
    /// The first header with this (lower-case) name.
    fn header(&self, lowercase_name: &str) -> Option<Cow<'_, str>>;
    /// The first query argument with this name, percent-decoded.
    fn query_arg(&self, name: &str) -> Option<Cow<'_, str>>;
}

pub struct BodyView<'a, I> {
    incoming: &'a I,
    /// The body, when it is (valid) JSON.
    json_body: Option<&'a [u8]>,
    document: OnceCell<Option<Value>>,
}

impl<'a, I: Incoming> BodyView<'a, I> {
    pub fn new(incoming: &'a I, json_body: Option<&'a [u8]>) -> Self {
        BodyView {
            incoming,
            json_body,
            document: OnceCell::new(),
        }
    }
}

impl<I: Incoming> RequestView for BodyView<'_, I> {
    fn header(&self, lowercase_name: &str) -> Option<Cow<'_, str>> {
        self.incoming.header(lowercase_name)
    }

    fn query_arg(&self, name: &str) -> Option<Cow<'_, str>> {
        self.incoming.query_arg(name)
    }

    fn body(&self) -> Option<&Value> {
        self.document
            .get_or_init(|| self.json_body.and_then(parse_document))
            .as_ref()
    }
}
