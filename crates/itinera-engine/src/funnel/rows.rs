use super::*;
use crate::journey::Journey;
use crate::selector::Matcher;

/// One touchpoint as the kernels see it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub ts: i64,
    /// Steps matched (bits 0..n) and exclusions (bits n..).
    pub mask: u64,
    /// Breakdown code, or `u32::MAX`.
    pub tag: u32,
}

/// Touchpoints as a kernel reads them: the prepared entries of an account, or a person's
/// journey matched on the fly (no copy: the hot path).
pub trait Rows {
    fn row_count(&self) -> usize;
    fn ts(&self, i: usize) -> i64;
    fn mask(&self, i: usize) -> u64;
    fn tag(&self, i: usize) -> u32;
}

impl Rows for [Entry] {
    #[inline(always)]
    fn row_count(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn ts(&self, i: usize) -> i64 {
        self[i].ts
    }
    #[inline(always)]
    fn mask(&self, i: usize) -> u64 {
        self[i].mask
    }
    #[inline(always)]
    fn tag(&self, i: usize) -> u32 {
        self[i].tag
    }
}

/// A journey seen through a compiled matcher.
pub struct MatchedJourney<'a, 'j> {
    pub journey: &'a Journey<'j>,
    pub matcher: &'a Matcher,
    pub breakdown: Option<TagSource>,
}

impl Rows for MatchedJourney<'_, '_> {
    #[inline(always)]
    fn row_count(&self) -> usize {
        self.journey.len()
    }
    #[inline(always)]
    fn ts(&self, i: usize) -> i64 {
        self.journey.ts[i]
    }
    #[inline(always)]
    fn mask(&self, i: usize) -> u64 {
        self.matcher.row_mask(self.journey, i)
    }
    #[inline(always)]
    fn tag(&self, i: usize) -> u32 {
        tag_of(self.journey, i, self.breakdown)
    }
}

#[inline(always)]
pub(super) fn tag_of(j: &Journey<'_>, i: usize, field: Option<TagSource>) -> u32 {
    match field {
        None => u32::MAX,
        Some(TagSource::Channel) => j.channel[i],
        Some(TagSource::Touchpoint) => j.touchpoint[i],
        Some(TagSource::Event) => j.event[i],
        Some(TagSource::Property(k)) => k.and_then(|k| j.props.get(i, k)).unwrap_or(u32::MAX),
    }
}

/// A journey whose rows are matched by an event-code table (funnels over event names only).
/// Rows `lo..hi` of `journey` (a batch's shared columns) are one person's.
pub(super) struct EventMasks<'a, 'j> {
    pub(super) journey: &'a Journey<'j>,
    pub(super) lo: usize,
    pub(super) hi: usize,
    pub(super) masks: &'a [u64],
    pub(super) breakdown: Option<TagSource>,
}

impl Rows for EventMasks<'_, '_> {
    #[inline(always)]
    fn row_count(&self) -> usize {
        self.hi - self.lo
    }
    #[inline(always)]
    fn ts(&self, i: usize) -> i64 {
        self.journey.ts[self.lo + i]
    }
    #[inline(always)]
    fn mask(&self, i: usize) -> u64 {
        self.masks
            .get(self.journey.event[self.lo + i] as usize)
            .copied()
            .unwrap_or(0)
    }
    #[inline(always)]
    fn tag(&self, i: usize) -> u32 {
        tag_of(self.journey, self.lo + i, self.breakdown)
    }
}
