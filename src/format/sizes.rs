//! The two sizes every Mixtasy message has (D1: 1 kbyte = 1024 bytes).

/// Bytes covered by a Verification line; a final mix message is exactly this long after it.
pub const INNER: usize = 20 * 1024;
/// Binary bytes of every wire body (D5): what the sender pads to and every mix re-pads to.
pub const OUTER: usize = 30 * 1024;
