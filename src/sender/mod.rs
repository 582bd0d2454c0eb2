//! The sender's side (D7, thesis 6.2): which mixes a message goes through, the layered
//! message itself, end-to-end encryption for the recipient, and what one submission of a
//! mail program becomes.

pub mod create;
pub mod path;
pub mod pgpmime;
pub mod submit;
