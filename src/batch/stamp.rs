//! The delivery stamp: the Date and Message-ID a mix gives the mail it writes itself (an
//! exit's deliveries, block confirmations). A leaf of its own, so that the exit and the block
//! requests both use it without depending on each other.

use std::time::SystemTime;

use rand::RngCore;

use crate::mixes::address::MixAddress;

/// The exit's own Date and Message-ID an original is delivered with (the sender's are
/// never copied), fixed when it is queued so that every delivery attempt sends the same mail.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub date: SystemTime,
    /// `<random@exit-domain>`.
    pub message_id: String,
}

impl Stamp {
    pub fn new(address: &MixAddress, now: SystemTime, rng: &mut impl RngCore) -> Self {
        Self::for_domain(address.fqdn(), now, rng)
    }

    /// A stamp of mail written by a program of `domain` that is not a mix (the nym server).
    pub fn for_domain(domain: &str, now: SystemTime, rng: &mut impl RngCore) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Stamp { date: now, message_id: format!("<{}@{domain}>", crate::format::message::hex(&b)) }
    }
}
