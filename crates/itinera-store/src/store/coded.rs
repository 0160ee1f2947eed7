//! Touchpoints turned into the memory table's columns in two steps: coding them against the
//! dictionaries as they stand, which only reads them and may run on any thread, then entering
//! what the dictionaries did not hold yet, in order, under their lock.
//!
//! A replay of the log codes its records on every core and enters them on one thread; the
//! writer does both steps itself.

use crate::columns::{Columns, NO_GROUP};
use crate::delta::DICTS;
use itinera_core::Touchpoint;

use super::config::{
    DICT_CHANNELS, DICT_EVENTS, DICT_GROUPS, DICT_IDS, DICT_PROP_KEYS, DICT_PROP_VALUES,
    DICT_TOUCHPOINTS,
};
use super::state::Dicts;

/// Where the code of a string not yet in its dictionary goes once it is entered.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The row (or, for properties, the pair) of the dictionary's column.
    Column(u32),
    /// One side of an identity link.
    Link(u32, usize),
}

/// Rows coded against the dictionaries, waiting for [`Coded::enter`].
pub(crate) struct Coded {
    cols: Columns,
    /// Distinct-id codes of the pairs of ids the rows say are one person.
    links: Vec<[u32; 2]>,
    /// Strings their dictionary did not hold when the rows were coded: the dictionary, where
    /// the code goes, the string; in the order interning row by row meets them, so that new
    /// strings get the codes a serial interning would give.
    unknown: Vec<(usize, Target, String)>,
}

/// Looks strings up in the dictionaries for [`Coded::code`].
struct Coder<'a> {
    dicts: &'a Dicts,
    /// Neighbouring rows mostly share their person, event, channel, touchpoint and account (a
    /// batch comes from one client): the last string found in each dictionary is compared
    /// before the dictionary is searched.
    last: [Option<(&'a str, u32)>; DICTS],
    unknown: Vec<(usize, Target, String)>,
}

impl<'a> Coder<'a> {
    fn code(&mut self, k: usize, s: &'a str, target: Target) -> u32 {
        if let Some((l, c)) = self.last[k] {
            if l == s {
                return c;
            }
        }
        match self.dicts.all[k].get(s) {
            Some(c) => {
                self.last[k] = Some((s, c));
                c
            }
            None => {
                self.unknown.push((k, target, s.to_string()));
                UNKNOWN
            }
        }
    }
}

/// A code not known yet (replaced by [`Coded::enter`]).
const UNKNOWN: u32 = u32::MAX;

impl Coded {
    /// Codes `touchpoints` (their message-id hashes in `hashes`) against `dicts`, which only
    /// reads them.
    pub(crate) fn code<'a>(
        dicts: &'a Dicts,
        touchpoints: &'a [Touchpoint],
        hashes: Vec<u64>,
    ) -> Coded {
        let n = touchpoints.len();
        let pairs: usize = touchpoints.iter().map(|t| t.props.len()).sum();
        // plain vectors while filling (a lazy column checks its state on every push); rows
        // wait in memory until their flush, so the properties get the room they need, not the
        // slack of growing
        let (mut did, mut ts, mut event, mut channel, mut touchpoint) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut kind, mut group, mut revenue, mut received_at, mut prop_end) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut prop_key, mut prop_val) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
        let mut links = Vec::new();
        let mut coder = Coder {
            dicts,
            last: [None; DICTS],
            unknown: Vec::new(),
        };
        let mut code = |k, s, target| coder.code(k, s, target);
        for (row, t) in touchpoints.iter().enumerate() {
            let at = Target::Column(row as u32);
            did.push(code(DICT_IDS, t.distinct_id(), at));
            for (a, b) in t.identity_links() {
                let i = links.len() as u32;
                links.push([
                    code(DICT_IDS, a, Target::Link(i, 0)),
                    code(DICT_IDS, b, Target::Link(i, 1)),
                ]);
            }
            ts.push(t.timestamp_ms);
            event.push(code(DICT_EVENTS, &t.event, at));
            channel.push(code(DICT_CHANNELS, &t.channel, at));
            touchpoint.push(code(DICT_TOUCHPOINTS, &t.touchpoint, at));
            kind.push(t.kind.code());
            group.push(
                t.group_id
                    .as_deref()
                    .map_or(NO_GROUP, |g| code(DICT_GROUPS, g, at)),
            );
            revenue.push(t.revenue.unwrap_or(f64::NAN));
            received_at.push(t.received_at_ms);
            for (k, v) in &t.props {
                let pair = Target::Column(prop_key.len() as u32);
                prop_key.push(code(DICT_PROP_KEYS, k, pair));
                prop_val.push(code(DICT_PROP_VALUES, v, pair));
            }
            prop_end.push(prop_key.len() as u32);
        }
        let mut cols = Columns::with_capacity(0);
        cols.did = did;
        cols.ts = ts;
        cols.event = event.into();
        cols.channel = channel.into();
        cols.touchpoint = touchpoint.into();
        cols.kind = kind.into();
        cols.group = group.into();
        cols.revenue = revenue.into();
        cols.msg_hash = hashes.into();
        cols.received_at = received_at.into();
        cols.prop_end = prop_end.into();
        cols.prop_key = prop_key.into();
        cols.prop_val = prop_val.into();
        Coded {
            cols,
            links,
            unknown: coder.unknown,
        }
    }

    /// Enters the strings the dictionaries did not hold when the rows were coded, in order:
    /// the rows' columns, and the pairs of distinct-id codes their links name.
    pub(crate) fn enter(self, dicts: &mut Dicts) -> (Columns, Vec<(u32, u32)>) {
        let Coded {
            mut cols,
            mut links,
            unknown,
        } = self;
        for (k, target, s) in unknown {
            let c = dicts.all[k].intern(&s);
            match target {
                Target::Link(i, side) => links[i as usize][side] = c,
                Target::Column(i) => {
                    let i = i as usize;
                    match k {
                        DICT_IDS => cols.did[i] = c,
                        DICT_EVENTS => cols.event[i] = c,
                        DICT_CHANNELS => cols.channel[i] = c,
                        DICT_TOUCHPOINTS => cols.touchpoint[i] = c,
                        DICT_GROUPS => cols.group[i] = c,
                        DICT_PROP_KEYS => cols.prop_key[i] = c,
                        DICT_PROP_VALUES => cols.prop_val[i] = c,
                        _ => unreachable!("dictionary {k} codes no column"),
                    }
                }
            }
        }
        (cols, links.into_iter().map(|[a, b]| (a, b)).collect())
    }
}
