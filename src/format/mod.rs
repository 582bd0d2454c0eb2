//! The bytes of a Mixtasy message (D1–D5), from the packet up to the mail around it. Pure
//! functions over buffers: no files, no SQL, so that fuzzing and benchmarks see all of it.

// Framing: the bytes of one layer.
pub mod sizes;
pub mod packet;
pub mod cfb;
pub mod armor;

// One message through a mix, in processing order.
pub mod layer;
pub mod verification;
pub mod message;

// The mail that carries it, and the header fields an original keeps.
pub mod wire;
pub mod headers;
