//! The spend ledger: per budget owner, settled spend in the current period plus what
//! in-flight requests have reserved. Reserve before the upstream call, settle after.

use chrono::{DateTime, Utc};

use super::records::{Period, SpendCounter};

/// A map keyed by owner (`key:…`, `user:…`). hashbrown for `entry_ref`, which allocates
/// the key only when it inserts (std's `entry` wants an owned key on every lookup, and
/// admission looks owners up several times a request). Hashed with foldhash (seeded per
/// process) rather than SipHash, which cost ~320 instructions a lookup of these ~70-byte
/// names: entries are made only for records an admin created, so a client choosing what
/// is looked up cannot pile colliding entries into the map.
pub(super) type OwnerMap<V> = hashbrown::HashMap<String, V, foldhash::fast::RandomState>;

/// One owner's live counter.
#[derive(Debug, Default, Clone)]
pub struct Counter {
    pub spend: f64,
    pub reserved: f64,
    pub reset_at: Option<DateTime<Utc>>,
    pub soft_crossed_at: Option<DateTime<Utc>>,
    pub dirty: bool,
}

impl Counter {
    pub fn from_stored(c: SpendCounter) -> Counter {
        Counter {
            spend: c.spend,
            reserved: 0.0,
            reset_at: c.budget_reset_at,
            soft_crossed_at: c.soft_budget_crossed_at,
            dirty: false,
        }
    }

    pub fn stored(&self) -> SpendCounter {
        SpendCounter {
            spend: self.spend,
            budget_reset_at: self.reset_at,
            soft_budget_crossed_at: self.soft_crossed_at,
        }
    }

    /// Starts the period if needed and zeroes spend at a period boundary.
    pub fn roll(&mut self, period: Option<Period>, now: DateTime<Utc>) {
        let Some(p) = period else {
            if self.reset_at.take().is_some() {
                self.dirty = true;
            }
            return;
        };
        match self.reset_at {
            None => {
                self.reset_at = Some(p.after(now));
                self.dirty = true;
            }
            Some(at) if now >= at => {
                let mut next = at;
                while next <= now {
                    next = p.after(next);
                }
                self.reset_at = Some(next);
                self.spend = 0.0;
                self.soft_crossed_at = None;
                self.dirty = true;
            }
            Some(_) => {}
        }
    }
}

/// Every owner's counter; keys are `key:<hash>`, `user:<id>`, `team:<id>`,
/// `end_user:<id>`, `key_model:<hash>:<model>` (the `SPEND_COUNTERS` keys).
#[derive(Debug, Default)]
pub struct Ledger {
    pub counters: OwnerMap<Counter>,
}

impl Ledger {
    pub fn counter(&mut self, owner: &str) -> &mut Counter {
        self.counters.entry_ref(owner).or_default()
    }

    /// Counters changed since the last call, marked clean.
    pub fn take_dirty(&mut self) -> Vec<(String, SpendCounter)> {
        self.counters
            .iter_mut()
            .filter(|(_, c)| c.dirty)
            .map(|(k, c)| {
                c.dirty = false;
                (k.clone(), c.stored())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_boundary_resets_spend() {
        let t0 = Utc::now();
        let mut c = Counter::default();
        c.roll(Some(Period::Seconds(10)), t0);
        c.spend = 5.0;
        c.roll(Some(Period::Seconds(10)), t0 + chrono::Duration::seconds(5));
        assert_eq!(c.spend, 5.0);
        c.roll(
            Some(Period::Seconds(10)),
            t0 + chrono::Duration::seconds(25),
        );
        assert_eq!(c.spend, 0.0);
        assert_eq!(c.reset_at, Some(t0 + chrono::Duration::seconds(30)));
    }
}
