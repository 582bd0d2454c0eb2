//! The round's keyserver duties: publishing the mix key after a rotation, and periodic
//! discovery of other mixes for the directory.

use std::time::SystemTime;

use anyhow::Result;

use crate::batch::state::{self, State};
use crate::node::config::Config;
use crate::node::home::NodeHome;

/// Publishing after a rotation and periodic discovery, last in the round so that a slow or
/// dead keyserver never delays mixing; failures are counted and retried next round.
pub(super) fn duties(home: &NodeHome, cert: &sequoia_openpgp::Cert, state: &mut State, url: &str, config: &Config, now: SystemTime) -> Result<()> {
    let ks = crate::mixes::keyserver::Keyserver::new(url, std::time::Duration::from_secs(10))?;
    if state.meta("publish_pending")? == Some(1) || state.meta("last_publish")?.is_none() {
        let armored = String::from_utf8(openpgp_armored(cert)?)?;
        match ks.publish(&armored) {
            Ok(()) => {
                state.set_meta("publish_pending", 0)?;
                state.set_meta("last_publish", state::unix(now))?;
                state.bump("key.published", 1)?;
            }
            Err(_) => state.bump("key.publish-failed", 1)?,
        }
    }
    let due = state.meta("last_discovery")?.is_none_or(|t| state::unix(now) - t >= config.discovery_interval.as_secs() as i64);
    if due {
        match ks.fetch_all().and_then(|answer| home.directory().refresh(answer.as_deref(), now)) {
            Ok(_) => {
                state.set_meta("last_discovery", state::unix(now))?;
                state.bump("directory.fetched", 1)?;
            }
            Err(_) => state.bump("directory.fetch-failed", 1)?,
        }
    }
    Ok(())
}

fn openpgp_armored(cert: &sequoia_openpgp::Cert) -> Result<Vec<u8>> {
    use sequoia_openpgp::serialize::SerializeInto;
    Ok(cert.armored().to_vec()?)
}
