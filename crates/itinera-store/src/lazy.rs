//! A column that may be decoded on first use.
//!
//! A segment's columns are checked (checksums) when it is opened, but only decoded when a scan
//! first reads them: a funnel reads persons, times and events, so a cold query no longer pays
//! for decoding (and holding) message hashes, receive times, properties and the rest.

use parking_lot::Mutex;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

/// How to decode a column: called once to keep the values, and by [`Col::peek`] for a copy not
/// kept.
pub type Decoder<T> = Box<dyn Fn() -> Vec<T> + Send>;

/// A column: either its values, or a decoder that gives them on first access. Reads and writes
/// go through `Deref`/`DerefMut` to the `Vec`, so code reads it as one.
pub struct Col<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    values: OnceLock<Vec<T>>,
    decoder: Mutex<Option<Decoder<T>>>,
    /// Bytes the decoder holds until it runs (a compressed block read at open).
    held: usize,
}

impl<T> Col<T> {
    /// A column decoded by `decoder` when it is first read.
    pub fn lazy(decoder: impl Fn() -> Vec<T> + Send + 'static) -> Col<T> {
        Self::lazy_holding(0, decoder)
    }

    /// [`Col::lazy`] whose decoder holds `held` bytes until it runs (for memory figures).
    pub fn lazy_holding(held: usize, decoder: impl Fn() -> Vec<T> + Send + 'static) -> Col<T> {
        Col {
            inner: Arc::new(Inner {
                values: OnceLock::new(),
                decoder: Mutex::new(Some(Box::new(decoder))),
                held,
            }),
        }
    }

    /// The values without keeping them: borrowed once decoded, else decoded into a copy that
    /// is dropped with the result. For a pass that reads a column once (a compaction reading
    /// its inputs), so that the column does not stay in memory beside what the pass builds.
    pub fn peek(&self) -> std::borrow::Cow<'_, [T]>
    where
        T: Clone,
    {
        if let Some(v) = self.inner.values.get() {
            return std::borrow::Cow::Borrowed(v);
        }
        let decoder = self.inner.decoder.lock();
        match decoder.as_ref() {
            Some(decode) => std::borrow::Cow::Owned(decode()),
            // decoded by another reader meanwhile
            None => {
                drop(decoder);
                std::borrow::Cow::Borrowed(self.values())
            }
        }
    }

    /// Heap bytes: the values' buffer once decoded, before that what the decoder holds.
    pub fn heap_bytes(&self) -> usize {
        match self.inner.values.get() {
            Some(v) => v.capacity() * std::mem::size_of::<T>(),
            None => self.inner.held,
        }
    }

    /// Whether the values are in memory (for stats and tests).
    pub fn is_decoded(&self) -> bool {
        self.inner.values.get().is_some()
    }

    fn values(&self) -> &Vec<T> {
        self.inner.values.get_or_init(|| {
            let decoder = self
                .inner
                .decoder
                .lock()
                .take()
                .expect("a column without values has a decoder");
            decoder()
        })
    }
}

impl<T> From<Vec<T>> for Col<T> {
    fn from(v: Vec<T>) -> Self {
        Col {
            inner: Arc::new(Inner {
                values: OnceLock::from(v),
                decoder: Mutex::new(None),
                held: 0,
            }),
        }
    }
}

impl<T> Default for Col<T> {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl<T: Clone> Clone for Col<T> {
    /// A decoded column is copied; an undecoded one is shared, and decoded once for both.
    fn clone(&self) -> Self {
        match self.inner.values.get() {
            Some(v) => v.clone().into(),
            None => Col {
                inner: self.inner.clone(),
            },
        }
    }
}

impl<T> Deref for Col<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        self.values()
    }
}

impl<T: Clone> DerefMut for Col<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        if Arc::get_mut(&mut self.inner).is_none() {
            // shared with a clone made before decoding: write to a copy of our own
            *self = self.values().clone().into();
        }
        let inner = Arc::get_mut(&mut self.inner).expect("not shared");
        if inner.values.get().is_none() {
            let decoder = inner.decoder.get_mut().take().expect("a decoder");
            let _ = inner.values.set(decoder());
        }
        inner.values.get_mut().expect("decoded")
    }
}

impl<T: PartialEq> PartialEq for Col<T> {
    fn eq(&self, other: &Self) -> bool {
        self.values() == other.values()
    }
}

impl<'a, T> IntoIterator for &'a Col<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.values().iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for Col<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.values.get() {
            Some(v) => v.fmt(f),
            None => f.write_str("<not decoded yet>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn decoded_once_on_first_read_even_when_cloned_before() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let col = Col::lazy(move || {
            c.fetch_add(1, Ordering::SeqCst);
            vec![1u32, 2, 3]
        });
        let copy = col.clone();
        assert!(!col.is_decoded());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "nothing decoded before a read"
        );
        assert_eq!(copy[1], 2);
        assert!(col.is_decoded(), "the clone shares the decoded values");
        assert_eq!(col[2], 3);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "decoded once");
        // writing to one of two sharing a column leaves the other as it was
        let mut col = col;
        col.push(4);
        assert_eq!(*col, vec![1, 2, 3, 4]);
        assert_eq!(*copy, vec![1, 2, 3]);
    }

    #[test]
    fn a_peek_decodes_a_copy_and_keeps_nothing() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let col = Col::lazy(move || {
            c.fetch_add(1, Ordering::SeqCst);
            vec![7u32, 8]
        });
        assert_eq!(&*col.peek(), &[7, 8]);
        assert_eq!(&*col.peek(), &[7, 8]);
        assert!(!col.is_decoded(), "a peek keeps nothing");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(col[1], 8);
        assert!(
            matches!(col.peek(), std::borrow::Cow::Borrowed(_)),
            "decoded: borrowed"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
