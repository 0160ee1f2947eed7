//! String dictionaries: every distinct id, event name, channel and touchpoint gets a dense code,
//! so that columns hold small integers and the journey engine compares integers, not strings.

use hashbrown::HashTable;
use std::hash::BuildHasher;

/// An append-only string ↔ code map. Codes are assigned in insertion order.
///
/// The string → code side is built on first use: a process that only reads (a query, an
/// export) looks up a few names in the small dictionaries and none in the ids, whose map of
/// every distinct id was a tenth of a cold query on 10M events. It holds codes only, found by
/// their strings' hashes: a map keyed by copies of the strings held every distinct id twice,
/// the largest dictionary of a server taking anonymous visitors.
#[derive(Debug, Default, Clone)]
pub struct Dict {
    codes: std::sync::OnceLock<HashTable<u32>>,
    strings: Vec<String>,
}

fn hash(s: &str) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(s)
}

/// Enters `code` (of `strings[code]`, not yet in the table) into `table`.
fn enter(table: &mut HashTable<u32>, strings: &[String], code: u32) {
    table.insert_unique(hash(&strings[code as usize]), code, |&c| {
        hash(&strings[c as usize])
    });
}

impl Dict {
    fn codes(&self) -> &HashTable<u32> {
        self.codes.get_or_init(|| {
            let mut table = HashTable::with_capacity(self.strings.len());
            for (c, s) in self.strings.iter().enumerate() {
                if !s.is_empty() {
                    enter(&mut table, &self.strings, c as u32);
                }
            }
            table
        })
    }

    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(c) = self.get(s) {
            return c;
        }
        let c = self.strings.len() as u32;
        self.strings.push(s.to_string());
        let table = self.codes.get_mut().expect("built by the lookup above");
        enter(table, &self.strings, c);
        c
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.codes()
            .find(hash(s), |&c| self.strings[c as usize] == s)
            .copied()
    }

    pub fn name(&self, code: u32) -> &str {
        self.strings
            .get(code as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Heap bytes held, estimated: the strings, and the table of codes when built.
    pub fn heap_bytes(&self) -> usize {
        let text: usize = self.strings.iter().map(String::capacity).sum();
        let list = self.strings.capacity() * std::mem::size_of::<String>() + text;
        let map = self
            .codes
            .get()
            .map_or(0, |t| t.capacity() * (std::mem::size_of::<u32>() + 1));
        list + map
    }

    pub fn strings_from(&self, start: usize) -> &[String] {
        &self.strings[start.min(self.strings.len())..]
    }

    /// Replaces a string by the empty tombstone (right to erasure); its code stays reserved.
    pub fn erase(&mut self, code: u32) {
        if let Some(s) = self.strings.get(code as usize) {
            if let Some(table) = self.codes.get_mut() {
                if let Ok(entry) = table.find_entry(hash(s), |&c| c == code) {
                    entry.remove();
                }
            }
            // freed, not cleared: the erased text does not stay in the buffer
            self.strings[code as usize] = String::new();
        }
    }

    /// Appends strings read back from disk, keeping their codes.
    pub fn extend_loaded(&mut self, strings: impl IntoIterator<Item = String>) {
        for s in strings {
            let c = self.strings.len() as u32;
            let empty = s.is_empty();
            self.strings.push(s);
            if let (false, Some(table)) = (empty, self.codes.get_mut()) {
                enter(table, &self.strings, c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_found_by_their_strings_through_interning_loading_and_erasure() {
        let mut d = Dict::default();
        let (a, b) = (d.intern("a"), d.intern("b"));
        assert_eq!((a, b, d.intern("a")), (0, 1, 0));
        d.extend_loaded(["c".to_string(), String::new(), "d".to_string()]);
        assert_eq!(
            (d.get("c"), d.get("d"), d.get("")),
            (Some(2), Some(4), None)
        );
        d.erase(b);
        assert_eq!((d.get("b"), d.name(b)), (None, ""));
        assert_eq!(
            d.intern("b"),
            5,
            "an erased string interned again gets a new code"
        );
        // the table built on first use from loaded strings finds the same codes
        let mut loaded = Dict::default();
        loaded.extend_loaded(d.strings_from(0).to_vec());
        for (code, s) in d.strings_from(0).iter().enumerate() {
            let want = (!s.is_empty()).then_some(code as u32);
            assert_eq!(loaded.get(s), want, "{s:?}");
        }
        for n in 0..10_000 {
            assert_eq!(loaded.intern(&format!("id-{n}")), 6 + n);
        }
        assert_eq!(loaded.get("id-9999"), Some(10_005));
    }
}
