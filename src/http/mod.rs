//! HTTP/1.1, sans-IO: bytes in → parsed requests; responses → bytes out. No sockets here.
//!
//! The parser is httparse's push model: a partial request is "need more bytes", never an
//! error; limits turn into the protocol's 413/431 so a client learns what it did wrong.

pub mod body;
pub mod origin;
pub mod query;
pub mod request;
pub mod response;

pub use query::Query;
pub use request::{head_end, parse_request, Limits, Method, Parsed, Request};
pub use response::{write_response, Response};
