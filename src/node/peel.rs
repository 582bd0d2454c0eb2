//! Peeling one incoming message (D6 steps 1–4, 6, 7): the mix's core function.
//!
//! Mail in, one outcome out: the next wire message (body re-padded to `OUTER` with fresh
//! randomness), a final mix message for the exit, or a drop with its reason. The replay
//! cache (step 5) is the caller's: it gets the hash and the subkey's expiry.

use std::time::SystemTime;

use rand::{CryptoRng, Rng};

use crate::format::armor;
use crate::format::layer::{self, LayerError};
use crate::format::message::{self, Kind, Revealed};
use crate::format::sizes::OUTER;
use crate::format::verification::{self, Hash};
use crate::format::wire;
use crate::mixes::address::MixAddress;
use crate::mixes::keys::KeyRing;
use crate::mixes::modes::Modes;

/// What peeling needs to know of the node.
pub struct Node {
    pub address: MixAddress,
    pub modes: Modes,
    pub ring: KeyRing,
}

/// Why a message was dropped; `name()` is the counter it is counted under. Details of a
/// drop never contain addresses, ids or hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// Not Mixtasy mail, or not addressed to this mix at all: operator mail, bounces.
    NotMixMail,
    /// Mixtasy mail whose To: names another mix.
    NotForThisMix,
    /// Body larger than `OUTER` after de-armoring.
    Oversized,
    /// Encrypted to no subkey of this mix.
    UnknownKey,
    /// Encrypted to a subkey of this mix that has expired (or is not valid yet).
    ExpiredKey,
    /// Verification line missing, not exact, or its hash does not match (tagging).
    Verification,
    /// Two of the cipher blocks the layer's decryption feeds into AES are equal: a tag
    /// planted in the unverified tail (`cfb::distinct_inputs`).
    Tagged,
    /// Any other structural fault: armor, packets, headers, payload.
    Malformed,
    /// The message needs a mode this mix does not run.
    Mode,
    /// A dummy reached its end: destroyed as the thesis says, not an error.
    Dummy,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::NotMixMail,
        DropReason::NotForThisMix,
        DropReason::Oversized,
        DropReason::UnknownKey,
        DropReason::ExpiredKey,
        DropReason::Verification,
        DropReason::Tagged,
        DropReason::Malformed,
        DropReason::Mode,
        DropReason::Dummy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotMixMail => "not-mix-mail",
            DropReason::NotForThisMix => "not-for-this-mix",
            DropReason::Oversized => "oversized",
            DropReason::UnknownKey => "unknown-key",
            DropReason::ExpiredKey => "expired-key",
            DropReason::Verification => "verification",
            DropReason::Tagged => "tagged",
            DropReason::Malformed => "malformed",
            DropReason::Mode => "mode",
            DropReason::Dummy => "dummy",
        }
    }
}

/// A drop with a short, content-free explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({detail})", reason.name())]
pub struct Dropped {
    pub reason: DropReason,
    pub detail: String,
}

fn drop(reason: DropReason, detail: impl ToString) -> Dropped {
    Dropped { reason, detail: detail.to_string() }
}

/// The result of peeling a message that passed.
#[derive(Debug)]
pub enum Peeled {
    /// An intermediate message: the D5 mail for the next mix.
    Forward { to: MixAddress, mail: Vec<u8> },
    /// A final mix message with an original (or part of one) for delivery.
    Final { id: String, kind: Kind, payload: Vec<u8> },
}

#[derive(Debug)]
pub struct Outcome {
    pub peeled: Peeled,
    /// The Verification hash: the replay cache key.
    pub hash: Hash,
    /// Expiry of the subkey that decrypted it: how long the replay entry is kept.
    pub expires: Option<SystemTime>,
}

/// Peels one delivered mail at time `now`.
pub fn peel(mail: &[u8], node: &Node, now: SystemTime, rng: &mut (impl Rng + CryptoRng)) -> Result<Outcome, Dropped> {
    let incoming = wire::parse(mail).map_err(|e| drop(DropReason::NotMixMail, e))?;
    if incoming.remailer_type.as_deref() != Some(wire::REMAILER_TYPE) {
        return Err(drop(DropReason::NotMixMail, "no Remailer-Type: Mixtasy v1"));
    }
    if !incoming.to.iter().any(|a| MixAddress::parse(a).is_ok_and(|a| a == node.address)) {
        return Err(drop(DropReason::NotForThisMix, "To: names another address"));
    }
    let body = armor::decode(incoming.body).map_err(|e| drop(DropReason::Malformed, e))?;
    if body.len() > OUTER {
        return Err(drop(DropReason::Oversized, format!("body larger than {OUTER} bytes")));
    }
    let opened = layer::open(&body, &node.ring, now).map_err(|e| match e {
        LayerError::UnknownKey => drop(DropReason::UnknownKey, e),
        LayerError::ExpiredKey | LayerError::NotYetValidKey => drop(DropReason::ExpiredKey, e),
        LayerError::Tagged => drop(DropReason::Tagged, e),
        other => drop(DropReason::Malformed, other),
    })?;
    let (hash, rest) = verification::check(&opened.content).map_err(|e| drop(DropReason::Verification, e))?;
    let revealed = message::parse(rest).map_err(|e| drop(DropReason::Malformed, e))?;
    let peeled = match revealed {
        Revealed::Intermediate(i) => {
            if !node.modes.middleman {
                return Err(drop(DropReason::Mode, "intermediate message at a mix without middleman"));
            }
            if i.from != node.address {
                return Err(drop(DropReason::Malformed, "intermediate message From: is not this mix"));
            }
            let mut next = i.body.to_vec();
            layer::pad_random(&mut next, OUTER, rng);
            Peeled::Forward { mail: wire::build(Some(&node.address), &i.to, &next), to: i.to }
        }
        Revealed::Final(f) if f.kind == Kind::Dummy => return Err(drop(DropReason::Dummy, "dummy destroyed")),
        Revealed::Final(f) => {
            if !node.modes.exit() {
                return Err(drop(DropReason::Mode, "final message at a mix without an exit mode"));
            }
            Peeled::Final { id: f.id, kind: f.kind, payload: f.payload.into_owned() }
        }
    };
    Ok(Outcome { peeled, hash, expires: opened.subkey.expires })
}
