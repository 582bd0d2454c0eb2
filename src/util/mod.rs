//! Helpers with no notion of mail, used by every folder.

pub mod clock;
pub mod fsutil;
pub mod sha1;
pub mod tuning;
