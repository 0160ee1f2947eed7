//! A journey source held in memory: for tests, golden cases and small imports. Rows are given
//! with names; codes are assigned here as a store would.

use crate::journey::{
    Field, Journey, JourneyBatch, JourneySource, PieceBatch, ScanOptions, Vocabulary, NO_ACCOUNT,
};
use rustc_hash::FxHashMap;

/// One touchpoint given by name.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub person: String,
    pub ts: i64,
    pub event: String,
    pub channel: String,
    pub touchpoint: String,
    /// Segment message type code (0 = track).
    pub kind: u8,
    pub account: Option<String>,
    pub revenue: Option<f64>,
    /// Typed properties, as (`properties.NAME` | `traits.NAME`, value).
    pub props: Vec<(String, String)>,
}

impl Row {
    pub fn new(person: &str, ts: i64, event: &str) -> Row {
        Row {
            person: person.into(),
            ts,
            event: event.into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Default)]
struct Names {
    names: Vec<String>,
    codes: FxHashMap<String, u32>,
}

impl Names {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(c) = self.codes.get(s) {
            return *c;
        }
        let c = self.names.len() as u32;
        self.names.push(s.to_string());
        self.codes.insert(s.to_string(), c);
        c
    }
}

/// Persons' journeys in memory, sorted by person then time (ties in the order given).
#[derive(Debug, Default)]
pub struct MemorySource {
    names: [Names; 7],
    cols: crate::journey::JourneyRows,
    /// `(person code, start, end)` ranges of `cols`.
    persons: Vec<(u32, usize, usize)>,
    /// Hand persons to [`JourneySource::scan_pieces`] in pieces of about this many rows (as a
    /// store being written to does), so that tests exercise the kernels' piece paths.
    piece_rows: Option<usize>,
}

fn slot(f: Field) -> usize {
    match f {
        Field::Event => 0,
        Field::Channel => 1,
        Field::Touchpoint => 2,
        Field::Account => 3,
        Field::DistinctId => 4,
        Field::PropKey => 5,
        Field::PropValue => 6,
    }
}

impl MemorySource {
    /// This source handing persons to [`JourneySource::scan_pieces`] in pieces of about `rows`
    /// rows each (cut only where the time moves on, as a store cuts them).
    pub fn in_pieces(mut self, rows: usize) -> MemorySource {
        self.piece_rows = Some(rows.max(1));
        self
    }

    pub fn new(rows: &[Row]) -> MemorySource {
        let mut m = MemorySource::default();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut person_codes = Vec::with_capacity(rows.len());
        for r in rows {
            person_codes.push(m.names[4].intern(&r.person));
        }
        order.sort_by_key(|&i| (person_codes[i], rows[i].ts));
        for &i in &order {
            let r = &rows[i];
            let c = &mut m.cols;
            c.did.push(person_codes[i]);
            c.ts.push(r.ts);
            c.event.push(m.names[0].intern(&r.event));
            c.channel.push(m.names[1].intern(&r.channel));
            c.touchpoint.push(m.names[2].intern(&r.touchpoint));
            c.kind.push(r.kind);
            c.group.push(
                r.account
                    .as_deref()
                    .map(|a| m.names[3].intern(a))
                    .unwrap_or(NO_ACCOUNT),
            );
            c.revenue.push(r.revenue.unwrap_or(f64::NAN));
            for (k, v) in &r.props {
                c.prop_key.push(m.names[5].intern(k));
                c.prop_val.push(m.names[6].intern(v));
            }
            c.prop_end.push(c.prop_key.len() as u32);
        }
        let mut start = 0;
        for i in 1..=m.cols.did.len() {
            if i == m.cols.did.len() || m.cols.did[i] != m.cols.did[start] {
                m.persons.push((m.cols.did[start], start, i));
                start = i;
            }
        }
        m
    }

    fn journey(&self, p: usize, opts: &ScanOptions) -> Option<Journey<'_>> {
        let (person, s, e) = self.persons[p];
        let mut j = self
            .columns()
            .slice(s, e)
            .within(opts.from_ms, opts.to_ms)?;
        j.person = person;
        Some(j)
    }

    /// All rows, persons one after the other.
    fn columns(&self) -> Journey<'_> {
        self.cols.journey(0)
    }
}

impl Vocabulary for MemorySource {
    fn names(&self, field: Field) -> &[String] {
        &self.names[slot(field)].names
    }

    fn code(&self, field: Field, name: &str) -> Option<u32> {
        self.names[slot(field)].codes.get(name).copied()
    }
}

impl JourneySource for MemorySource {
    fn scan<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &Journey<'_>) + Sync,
    ) -> Vec<A> {
        let mut acc = init();
        for p in 0..self.persons.len() {
            if let Some(j) = self.journey(p, opts) {
                f(&mut acc, &j);
            }
        }
        vec![acc]
    }

    /// Every person in one batch, so that tests exercise the kernels' batch paths.
    fn scan_batches<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
    ) -> Vec<A> {
        let (mut persons, mut ranges) = (Vec::new(), Vec::new());
        for &(person, s, e) in &self.persons {
            let ts = &self.cols.ts[s..e];
            let r = crate::journey::rows_within(ts, opts.from_ms, opts.to_ms);
            if !r.is_empty() {
                persons.push(person);
                ranges.push(((s + r.start) as u32, (s + r.end) as u32));
            }
        }
        let mut acc = init();
        f(
            &mut acc,
            &JourneyBatch {
                rows: self.columns(),
                persons: &persons,
                ranges: &ranges,
                distinct_times: crate::journey::distinct_times(&self.cols.ts),
            },
        );
        vec![acc]
    }

    fn scan_pieces<A: Send>(
        &self,
        opts: &ScanOptions,
        init: impl Fn() -> A + Sync,
        f: impl Fn(&mut A, &JourneyBatch<'_>) + Sync,
        g: impl Fn(&mut A, &PieceBatch<'_>) + Sync,
    ) -> Vec<A> {
        let Some(every) = self.piece_rows else {
            return self.scan_batches(opts, init, f);
        };
        let (mut persons, mut spans, mut pieces) = (Vec::new(), Vec::new(), Vec::new());
        for &(person, s, e) in &self.persons {
            let ts = &self.cols.ts[s..e];
            let r = crate::journey::rows_within(ts, opts.from_ms, opts.to_ms);
            let (mut lo, hi) = (s + r.start, s + r.end);
            if lo == hi {
                continue;
            }
            let from = pieces.len() as u32;
            while lo < hi {
                let mut end = (lo + every).min(hi);
                while end < hi && self.cols.ts[end] == self.cols.ts[end - 1] {
                    end += 1;
                }
                pieces.push((0, lo as u32, end as u32));
                lo = end;
            }
            persons.push(person);
            spans.push((from, pieces.len() as u32));
        }
        let mut acc = init();
        g(
            &mut acc,
            &PieceBatch {
                chunks: &[self.columns()],
                persons: &persons,
                spans: &spans,
                pieces: &pieces,
                distinct: &[crate::journey::distinct_times(&self.cols.ts)],
            },
        );
        vec![acc]
    }

    fn with_vocabulary<R>(&self, f: impl FnOnce(&dyn Vocabulary) -> R) -> R {
        f(self)
    }
}
