//! String dictionaries: every distinct id, event name, channel and touchpoint gets a dense code,
//! so that columns hold small integers and the journey engine compares integers, not strings.

use rustc_hash::FxHashMap as HashMap;

/// An append-only string ↔ code map. Codes are assigned in insertion order.
///
/// The string → code side is built on first use: a process that only reads (a query, an
/// export) looks up a few names in the small dictionaries and none in the ids, whose map of
/// every distinct id was a tenth of a cold query on 10M events.
#[derive(Debug, Default, Clone)]
pub struct Dict {
    codes: std::sync::OnceLock<HashMap<String, u32>>,
    strings: Vec<String>,
}

impl Dict {
    fn codes(&self) -> &HashMap<String, u32> {
        self.codes.get_or_init(|| {
            let mut m = HashMap::default();
            m.reserve(self.strings.len());
            for (c, s) in self.strings.iter().enumerate() {
                if !s.is_empty() {
                    m.insert(s.clone(), c as u32);
                }
            }
            m
        })
    }

    fn codes_mut(&mut self) -> &mut HashMap<String, u32> {
        self.codes();
        self.codes.get_mut().expect("built above")
    }

    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(c) = self.codes().get(s) {
            return *c;
        }
        let c = self.strings.len() as u32;
        self.strings.push(s.to_string());
        self.codes_mut().insert(s.to_string(), c);
        c
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.codes().get(s).copied()
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

    /// Heap bytes held, estimated: the strings, and the map from strings to codes when built
    /// (its keys are copies of the strings, its slots hold a string and a code).
    pub fn heap_bytes(&self) -> usize {
        let text: usize = self.strings.iter().map(String::capacity).sum();
        let list = self.strings.capacity() * std::mem::size_of::<String>() + text;
        let map = self.codes.get().map_or(0, |m| {
            m.capacity() * (std::mem::size_of::<(String, u32)>() + 1) + text
        });
        list + map
    }

    pub fn strings_from(&self, start: usize) -> &[String] {
        &self.strings[start.min(self.strings.len())..]
    }

    /// Replaces a string by the empty tombstone (right to erasure); its code stays reserved.
    pub fn erase(&mut self, code: u32) {
        if let Some(s) = self.strings.get_mut(code as usize) {
            if let Some(m) = self.codes.get_mut() {
                m.remove(s.as_str());
            }
            s.clear();
        }
    }

    /// Appends strings read back from disk, keeping their codes.
    pub fn extend_loaded(&mut self, strings: impl IntoIterator<Item = String>) {
        for s in strings {
            let c = self.strings.len() as u32;
            if !s.is_empty() {
                if let Some(m) = self.codes.get_mut() {
                    m.insert(s.clone(), c);
                }
            }
            self.strings.push(s);
        }
    }
}
