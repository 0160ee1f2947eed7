//! String dictionaries: every distinct id, event name, channel and touchpoint gets a dense code,
//! so that columns hold small integers and the journey engine compares integers, not strings.

use rustc_hash::FxHashMap as HashMap;

/// An append-only string ↔ code map. Codes are assigned in insertion order.
#[derive(Debug, Default, Clone)]
pub struct Dict {
    codes: HashMap<String, u32>,
    strings: Vec<String>,
}

impl Dict {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(c) = self.codes.get(s) {
            return *c;
        }
        let c = self.strings.len() as u32;
        self.strings.push(s.to_string());
        self.codes.insert(s.to_string(), c);
        c
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.codes.get(s).copied()
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

    pub fn strings_from(&self, start: usize) -> &[String] {
        &self.strings[start.min(self.strings.len())..]
    }

    /// Replaces a string by the empty tombstone (right to erasure); its code stays reserved.
    pub fn erase(&mut self, code: u32) {
        if let Some(s) = self.strings.get_mut(code as usize) {
            self.codes.remove(s.as_str());
            s.clear();
        }
    }

    /// Appends strings read back from disk, keeping their codes.
    pub fn extend_loaded(&mut self, strings: impl IntoIterator<Item = String>) {
        for s in strings {
            let c = self.strings.len() as u32;
            if !s.is_empty() {
                self.codes.insert(s.clone(), c);
            }
            self.strings.push(s);
        }
    }
}
