//! Identity stitching as a union-find over dense id numbers.
//!
//! Each distinct id string (a `userId` or an `anonymousId`) gets a dense number in the store. A
//! message that carries both ids, an `identify`, or an `alias` links two numbers; linked numbers are
//! one person, transitively. The root of a set is always its smallest number, so the canonical
//! person of a set does not depend on the order in which links arrived.

/// Union-find over dense ids; `root(x)` is the smallest id linked to `x`.
#[derive(Debug, Clone, Default)]
pub struct IdentityGraph {
    parent: Vec<u32>,
}

impl IdentityGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.parent.capacity() * std::mem::size_of::<u32>()
    }

    /// Makes room for ids below `n`; new ids start alone.
    pub fn grow(&mut self, n: u32) {
        let len = self.parent.len() as u32;
        if n > len {
            self.parent.extend(len..n);
        }
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The canonical (smallest) id of `x`'s person.
    pub fn root(&self, mut x: u32) -> u32 {
        if x as usize >= self.parent.len() {
            return x;
        }
        while self.parent[x as usize] != x {
            x = self.parent[x as usize];
        }
        x
    }

    fn root_compress(&mut self, x: u32) -> u32 {
        let r = self.root(x);
        let mut y = x;
        while self.parent[y as usize] != r {
            let next = self.parent[y as usize];
            self.parent[y as usize] = r;
            y = next;
        }
        r
    }

    /// Links two ids; returns true when they were two persons before.
    pub fn link(&mut self, a: u32, b: u32) -> bool {
        self.grow(a.max(b) + 1);
        let (ra, rb) = (self.root_compress(a), self.root_compress(b));
        if ra == rb {
            return false;
        }
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi as usize] = lo;
        true
    }

    /// A flat table `id → root`, for scans that map many rows.
    pub fn roots(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.parent.len()];
        for i in 0..self.parent.len() {
            // parents are always smaller than children, so roots of parents are already known
            let p = self.parent[i];
            out[i] = if p as usize == i { p } else { out[p as usize] };
        }
        out
    }

    /// The links that rebuild this graph: (id, parent) for every id that is not a root.
    pub fn edges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.parent
            .iter()
            .enumerate()
            .filter(|(i, p)| *i as u32 != **p)
            .map(|(i, p)| (i as u32, *p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn transitive() {
        let mut g = IdentityGraph::new();
        g.grow(5);
        assert!(g.link(3, 4));
        assert!(g.link(4, 1));
        assert!(!g.link(1, 3));
        assert_eq!(g.root(3), 1);
        assert_eq!(g.root(0), 0);
        assert_eq!(g.roots(), vec![0, 1, 2, 1, 1]);
    }

    proptest! {
        #[test]
        fn root_is_min_of_component_whatever_the_order(links in proptest::collection::vec((0u32..30, 0u32..30), 0..60)) {
            let mut g = IdentityGraph::new();
            g.grow(30);
            for (a, b) in &links { g.link(*a, *b); }
            // reference: naive component minimum by repeated relaxation
            let mut comp: Vec<u32> = (0..30).collect();
            loop {
                let mut changed = false;
                for (a, b) in &links {
                    let m = comp[*a as usize].min(comp[*b as usize]);
                    for x in [*a, *b] { if comp[x as usize] != m { comp[x as usize] = m; changed = true; } }
                }
                if !changed { break; }
            }
            let roots = g.roots();
            for i in 0..30u32 {
                prop_assert_eq!(g.root(i), comp[i as usize]);
                prop_assert_eq!(roots[i as usize], comp[i as usize]);
            }
        }
    }
}
