//! Who the mixes are (D8, thesis 6.1.1 and 6.3): a mix's address and modes, its keys, the
//! directory of known mixes, and where their keys come from (keyservers, WKD).

pub mod address;
pub mod directory;
pub mod keys;
pub mod keyserver;
pub mod modes;
pub mod pingers;
pub mod ranking;
pub mod session;
pub mod wkd;
