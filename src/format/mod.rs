//! The bytes of a Mixtasy message (D1–D5), from the packet up to the mail around it. Pure
//! functions over buffers: no files, no SQL, so that fuzzing and benchmarks see all of it.

// Framing: the bytes of one layer.
pub mod armor;
pub mod cfb;
pub mod packet;
pub mod sizes;

// One message through a mix, in processing order.
pub mod layer;
pub mod message;
pub mod verification;

// The mail that carries it, and the header fields an original keeps.
pub mod headers;
pub mod wire;
