//! The body type of every HTTP response the apiserver sends: bytes, boxed
//! so that a full body, a stream (watches) and a proxied one are one type.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

pub type Body = BoxBody<Bytes, Infallible>;
