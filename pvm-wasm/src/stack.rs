//! A frame's operand stack: cells that are always initialised, and a depth.
//!
//! ```text
//!   cells: [ v0 v1 v2 | stale stale stale ]    len = capacity
//!                     ^ depth
//! ```
//!
//! The dispatch loop borrows `cells` as a plain slice and keeps the depth in
//! a local ([`Stack::parts`]), so a push is a compare and a store. A `Vec`
//! would keep its length and capacity in memory, behind the frame: inside
//! the Wasm component Cranelift reloads them through two pointers on every
//! push and pop, which was most of the gap between the component and the
//! native build. Cells above the depth hold stale values that nothing reads
//! (the collector's roots are [`Stack::as_slice`]).

use std::ops::{Index, IndexMut};

/// An operand stack (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Stack<T> {
    cells: Vec<T>,
    depth: usize,
}

impl<T: Copy + Default> Stack<T> {
    /// An empty stack with `capacity` cells ready.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            cells: vec![T::default(); capacity],
            depth: 0,
        }
    }

    /// Values on the stack.
    #[inline]
    pub fn len(&self) -> usize {
        self.depth
    }

    /// True when nothing is on the stack.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.depth == 0
    }

    /// The values, bottom first.
    #[inline]
    pub fn as_slice(&self) -> &[T] {
        &self.cells[..self.depth]
    }

    /// The top value.
    #[inline]
    pub fn last(&self) -> Option<&T> {
        self.as_slice().last()
    }

    /// The top value, mutably.
    #[inline]
    pub fn last_mut(&mut self) -> Option<&mut T> {
        self.cells[..self.depth].last_mut()
    }

    /// Pushes `v`, growing the cells when full.
    #[inline]
    pub fn push(&mut self, v: T) {
        if self.depth == self.cells.len() {
            self.grow(1);
        }
        self.cells[self.depth] = v;
        self.depth += 1;
    }

    /// Pops the top value.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let d = self.depth.checked_sub(1)?;
        self.depth = d;
        Some(self.cells[d])
    }

    /// Drops everything above `depth`.
    #[inline]
    pub fn truncate(&mut self, depth: usize) {
        self.depth = self.depth.min(depth);
    }

    /// Empties the stack (the cells stay allocated).
    #[inline]
    pub fn clear(&mut self) {
        self.depth = 0;
    }

    /// Pushes every value of `values`, in order.
    pub fn extend_from_slice(&mut self, values: &[T]) {
        let end = self.depth + values.len();
        if end > self.cells.len() {
            self.grow(values.len());
        }
        self.cells[self.depth..end].copy_from_slice(values);
        self.depth = end;
    }

    /// Pushes `n` copies of `v`.
    pub fn push_n(&mut self, v: T, n: usize) {
        let end = self.depth + n;
        if end > self.cells.len() {
            self.grow(n);
        }
        self.cells[self.depth..end].fill(v);
        self.depth = end;
    }

    /// Makes room for at least `extra` more values (at least doubling).
    #[cold]
    #[inline(never)]
    pub fn grow(&mut self, extra: usize) {
        let want = (self.depth + extra).max(self.cells.len() * 2).max(8);
        self.cells.resize(want, T::default());
    }

    /// Every cell and the depth, for a loop that keeps the depth in a local
    /// and hands it back with [`Stack::set_len`].
    #[inline(always)]
    pub fn parts(&mut self) -> (&mut [T], usize) {
        (&mut self.cells, self.depth)
    }

    /// Sets the depth after [`Stack::parts`]; it is clamped to the cells.
    #[inline(always)]
    pub fn set_len(&mut self, depth: usize) {
        self.depth = depth.min(self.cells.len());
    }
}

impl<T> Index<usize> for Stack<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.cells[..self.depth][i]
    }
}

impl<T> IndexMut<usize> for Stack<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.cells[..self.depth][i]
    }
}

#[cfg(test)]
mod tests {
    use super::Stack;

    #[test]
    fn behaves_like_a_vec() {
        let mut s = Stack::with_capacity(2);
        let mut v = Vec::new();
        for i in 0..100 {
            s.push(i);
            v.push(i);
            if i % 3 == 0 {
                assert_eq!(s.pop(), v.pop());
            }
            if i % 17 == 0 {
                s.extend_from_slice(&[7, 8, 9]);
                v.extend_from_slice(&[7, 8, 9]);
            }
            assert_eq!(s.as_slice(), &v[..]);
            assert_eq!(s.last(), v.last());
        }
        s.truncate(10);
        v.truncate(10);
        assert_eq!(s.as_slice(), &v[..]);
        s.push_n(4, 40);
        v.extend(std::iter::repeat_n(4, 40));
        assert_eq!(s.as_slice(), &v[..]);
        s[3] = -1;
        v[3] = -1;
        assert_eq!(s.as_slice(), &v[..]);
        while let Some(x) = v.pop() {
            assert_eq!(s.pop(), Some(x));
        }
        assert_eq!(s.pop(), None);
        assert!(s.is_empty());
    }

    #[test]
    fn parts_round_trip() {
        let mut s = Stack::with_capacity(4);
        s.push(1);
        let (cells, depth) = s.parts();
        assert_eq!((cells.len(), depth), (4, 1));
        cells[1] = 5;
        s.set_len(2);
        assert_eq!(s.as_slice(), &[1, 5]);
        s.set_len(99);
        assert_eq!(s.len(), 4);
    }
}
