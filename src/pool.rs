//! The pool and the timed dynamic-pool mixing algorithm (thesis 5.2, 6.4.5).
//!
//! Every t seconds (the timer's interval) the mix looks at the m messages in its pool: if
//! m >= n + f_min, (m - f_min) * frac of them, chosen at random, leave; the rest wait.

use anyhow::Result;
use rand::seq::index::sample;
use rand::Rng;
use rusqlite::{params, Transaction};

use crate::address::MixAddress;
use crate::state::State;

/// The pool parameters of `mixtasyd.toml`.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// f_min: messages always kept.
    pub min_pool: u64,
    /// n: extra messages needed before anything leaves.
    pub threshold: u64,
    /// frac: share of the surplus over f_min that leaves.
    pub rate: f64,
}

/// How many of `m` pooled messages leave this round: the thesis' formula, rounded down.
pub fn to_send(m: u64, p: Params) -> u64 {
    if m < p.threshold + p.min_pool {
        return 0;
    }
    (((m - p.min_pool) as f64) * p.rate).floor() as u64
}

/// Adds a wire mail for `rcpt` to the pool.
pub fn insert(tx: &Transaction<'_>, rcpt: &MixAddress, mail: &[u8]) -> Result<()> {
    tx.execute("INSERT INTO pool (rcpt, mail) VALUES (?1, ?2)", params![rcpt.as_str(), mail])?;
    Ok(())
}

/// Chooses which pool entries leave: `to_send` of them, uniformly at random.
pub fn choose(state: &State, p: Params, rng: &mut impl Rng) -> Result<Vec<i64>> {
    let mut st = state.conn().prepare("SELECT id FROM pool")?;
    let ids: Vec<i64> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    let k = to_send(ids.len() as u64, p) as usize;
    Ok(sample(rng, ids.len(), k.min(ids.len())).into_iter().map(|i| ids[i]).collect())
}

/// One pool entry's recipient and mail.
pub fn load(state: &State, id: i64) -> Result<(String, Vec<u8>)> {
    Ok(state.conn().query_row("SELECT rcpt, mail FROM pool WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thesis_arithmetic() {
        let p = Params { min_pool: 25, threshold: 5, rate: 0.65 };
        assert_eq!(to_send(0, p), 0);
        assert_eq!(to_send(29, p), 0, "below n + f_min nothing leaves");
        assert_eq!(to_send(30, p), 3, "(30 - 25) * 0.65 = 3.25");
        assert_eq!(to_send(125, p), 65);
        let all = Params { min_pool: 0, threshold: 1, rate: 1.0 };
        assert_eq!(to_send(0, all), 0);
        assert_eq!(to_send(7, all), 7);
        let mixminion = Params { min_pool: 5, threshold: 0, rate: 0.6 };
        assert_eq!(to_send(5, mixminion), 0);
        assert_eq!(to_send(15, mixminion), 6);
    }

    #[test]
    fn choose_takes_exactly_that_many_distinct() {
        let mut s = State::in_memory().unwrap();
        let rcpt = MixAddress::for_fqdn("x.test").unwrap();
        let tx = s.transaction().unwrap();
        for i in 0..40u8 {
            insert(&tx, &rcpt, &[i]).unwrap();
        }
        tx.commit().unwrap();
        let p = Params { min_pool: 25, threshold: 5, rate: 0.65 };
        let mut rng = rand::rng();
        let ids = choose(&s, p, &mut rng).unwrap();
        assert_eq!(ids.len(), 9, "(40 - 25) * 0.65 = 9.75");
        let mut d = ids.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 9);
    }
}
