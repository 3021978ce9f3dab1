//! The Redis protocol as the proxy sees it: where frames begin and end ([`scan`]), what a command
//! is and how it must be handled ([`command`]), and every reply the proxy writes itself
//! ([`reply`]), error texts included. Frames travel as the bytes that carried them; only the
//! proxy's own replies are encoded here. A leaf module: it imports nothing else from the crate.

pub mod command;
pub mod decode;
pub mod error;
pub mod reply;
pub mod scan;

pub use error::ProtocolError;
pub use scan::{FrameLimits, ReplyInfo, ReplyScanner, Request, RequestParser};
