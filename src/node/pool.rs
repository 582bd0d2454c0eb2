//! The pool and the timed dynamic-pool mixing algorithm (thesis 5.2, 6.4.5).
//!
//! Every t seconds (the timer's interval) the mix looks at the m messages in its pool: if
//! m >= n + f_min, (m - f_min) * frac of them, chosen at random, leave; the rest wait.
//!
//! After the checks every message goes into the pool (6.4.5): wire mails for the next mix
//! (forwarded ones and time-triggered dummies) and, at an exit, finals (singlepart originals
//! and reassembled multiparts). All count in m and are drawn alike; a drawn final is handed
//! to the exit queue for delivery (`round`). An exit that delivered a final in the round it
//! arrived would link its input to its output by timing alone.
//!
//! Rows have random ids (`state::random_id`) and no timestamps, so the table does not
//! record arrival order.

use anyhow::Result;
use rand::seq::index::sample;
use rand::Rng;
use rusqlite::{params, Transaction};

use crate::batch::state::State;
use crate::mixes::address::MixAddress;

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

/// What a pool row holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pooled {
    /// A wire mail for the next mix (a forwarded message or a dummy).
    Forward { rcpt: String, mail: Vec<u8> },
    /// A final message's original, for the exit to deliver once drawn.
    Final { original: Vec<u8> },
}

const FORWARD: i64 = 0;
const FINAL: i64 = 1;

/// Adds a wire mail for `rcpt` to the pool.
pub fn insert(tx: &Transaction<'_>, rcpt: &MixAddress, mail: &[u8]) -> Result<()> {
    let id = crate::batch::state::random_id(tx, crate::batch::state::Queue::Pool, &mut rand::rng())?;
    tx.execute(
        "INSERT INTO pool (id, rcpt, mail, kind) VALUES (?1, ?2, ?3, ?4)",
        params![id, rcpt.as_str(), mail, FORWARD],
    )?;
    Ok(())
}

/// Adds a final message's original (already checked against `max_size`) to the pool.
pub fn insert_final(tx: &Transaction<'_>, original: &[u8]) -> Result<()> {
    let id = crate::batch::state::random_id(tx, crate::batch::state::Queue::Pool, &mut rand::rng())?;
    tx.execute("INSERT INTO pool (id, rcpt, mail, kind) VALUES (?1, '', ?2, ?3)", params![id, original, FINAL])?;
    Ok(())
}

/// The selection itself, without SQLite (the simulator fires the same function): which of
/// `m` pooled entries (by index) leave, `to_send` of them, uniformly at random.
pub fn pick(m: usize, p: Params, rng: &mut impl Rng) -> Vec<usize> {
    let k = to_send(m as u64, p) as usize;
    sample(rng, m, k.min(m)).into_vec()
}

/// Chooses which pool entries leave: `pick` over the pool's rows.
pub fn choose(state: &State, p: Params, rng: &mut impl Rng) -> Result<Vec<i64>> {
    let mut st = state.conn().prepare("SELECT id FROM pool")?;
    let ids: Vec<i64> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(pick(ids.len(), p, rng).into_iter().map(|i| ids[i]).collect())
}

/// One pool entry.
pub fn load(conn: &rusqlite::Connection, id: i64) -> Result<Pooled> {
    Ok(conn.query_row("SELECT rcpt, mail, kind FROM pool WHERE id = ?1", [id], |r| {
        Ok(match r.get::<_, i64>(2)? {
            FINAL => Pooled::Final { original: r.get(1)? },
            _ => Pooled::Forward { rcpt: r.get(0)?, mail: r.get(1)? },
        })
    })?)
}

/// Removes a drawn final inside the transaction that queues it for the exit, so that it is
/// in exactly one of the two at every instant.
pub fn remove_drawn(tx: &Transaction<'_>, id: i64) -> Result<()> {
    tx.execute("DELETE FROM pool WHERE id = ?1", [id])?;
    Ok(())
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

    /// Finals count in m and are drawn like forwarded mail.
    #[test]
    fn finals_count_and_are_drawn() {
        let mut s = State::in_memory().unwrap();
        let rcpt = MixAddress::for_fqdn("x.test").unwrap();
        let tx = s.transaction().unwrap();
        insert(&tx, &rcpt, b"wire").unwrap();
        insert_final(&tx, b"To: bob@rcpt.test\n\nhi\n").unwrap();
        tx.commit().unwrap();
        let all = Params { min_pool: 0, threshold: 1, rate: 1.0 };
        let ids = choose(&s, all, &mut rand::rng()).unwrap();
        assert_eq!(ids.len(), 2);
        let mut got: Vec<Pooled> = ids.iter().map(|&id| load(s.conn(), id).unwrap()).collect();
        got.sort_by_key(|p| matches!(p, Pooled::Final { .. }));
        assert_eq!(
            got,
            [
                Pooled::Forward { rcpt: "mixtasy@x.test".into(), mail: b"wire".to_vec() },
                Pooled::Final { original: b"To: bob@rcpt.test\n\nhi\n".to_vec() }
            ]
        );
        let two = Params { min_pool: 0, threshold: 2, rate: 1.0 };
        assert_eq!(
            choose(&s, two, &mut rand::rng()).unwrap().len(),
            2,
            "m = 2 reaches n = 2 only with the final counted"
        );
    }

    /// Neither the ids nor the rowid order (what `SELECT` without `ORDER BY` and the file
    /// itself follow) is the order rows arrived in. Arrival order would show as ids that
    /// rise with it; for random ids, the chance that 200 of them come out in arrival order
    /// (or its reverse) is 2/200!.
    #[test]
    fn rows_do_not_record_arrival_order() {
        let mut s = State::in_memory().unwrap();
        let rcpt = MixAddress::for_fqdn("x.test").unwrap();
        let tx = s.transaction().unwrap();
        for i in 0..200u8 {
            insert(&tx, &rcpt, &[i]).unwrap();
        }
        tx.commit().unwrap();
        let rows: Vec<(i64, Vec<u8>)> = s
            .conn()
            .prepare("SELECT id, mail FROM pool")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let arrival: Vec<u8> = rows.iter().map(|(_, m)| m[0]).collect();
        let mut sorted = arrival.clone();
        sorted.sort();
        assert_eq!(sorted, (0..200u8).collect::<Vec<_>>());
        assert!(
            arrival != sorted && arrival.iter().rev().copied().collect::<Vec<_>>() != sorted,
            "rowid order is arrival order"
        );
        // Ids against arrival: about half of consecutive arrivals have a smaller id.
        let mut by_arrival = rows.clone();
        by_arrival.sort_by_key(|(_, m)| m[0]);
        let falls = by_arrival.windows(2).filter(|w| w[1].0 < w[0].0).count();
        assert!(falls > 0 && falls < 199, "ids rise or fall with arrival: {falls} of 199 fall");
        assert!(rows.iter().any(|(id, _)| !(1..=200).contains(id)), "SQLite's own ids");
    }
}
