//! The round's keyserver duties: publishing the mix key after a rotation, and periodic
//! discovery of other mixes for the directory.

use std::time::SystemTime;

use anyhow::Result;

use crate::batch::state::{self, State};
use crate::node::config::Config;
use crate::node::counters::{self, meta};
use crate::node::home::NodeHome;

/// Publishing after a rotation and periodic discovery, last in the round so that a slow or
/// dead keyserver never delays mixing; failures are counted and retried next round.
pub(super) fn duties(
    home: &NodeHome,
    cert: &sequoia_openpgp::Cert,
    state: &mut State,
    url: &str,
    config: &Config,
    now: SystemTime,
) -> Result<()> {
    let ks = crate::mixes::keyserver::Keyserver::new(url, std::time::Duration::from_secs(10))?;
    if state.meta(meta::PUBLISH_PENDING)? == Some(1) || state.meta(meta::LAST_PUBLISH)?.is_none() {
        let armored = String::from_utf8(openpgp_armored(cert)?)?;
        match ks.publish(&armored) {
            Ok(()) => {
                crate::node::home::record_published(state, now)?;
                counters::bump(state.conn(), counters::KEY_PUBLISHED, 1)?;
            }
            Err(_) => counters::bump(state.conn(), counters::KEY_PUBLISH_FAILED, 1)?,
        }
    }
    let due = state
        .meta(meta::LAST_DISCOVERY)?
        .is_none_or(|t| state::unix(now) - t >= config.discovery_interval.as_secs() as i64);
    if due {
        // Past the keyserver's result limit, the trusted pingers' keyrings (issue 14).
        let pingers = home.pingers().list().unwrap_or_default();
        match crate::mixes::pingers::discover(&ks, &pingers, std::time::Duration::from_secs(60), now)
            .and_then(|answer| home.directory().refresh(answer.data(), now))
        {
            Ok(_) => {
                state.set_meta(meta::LAST_DISCOVERY, state::unix(now))?;
                counters::bump(state.conn(), counters::DIRECTORY_FETCHED, 1)?;
            }
            Err(_) => counters::bump(state.conn(), counters::DIRECTORY_FETCH_FAILED, 1)?,
        }
    }
    Ok(())
}

fn openpgp_armored(cert: &sequoia_openpgp::Cert) -> Result<Vec<u8>> {
    use sequoia_openpgp::serialize::SerializeInto;
    cert.armored().to_vec()
}
