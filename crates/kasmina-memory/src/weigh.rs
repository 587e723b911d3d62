//! How cached values are weighed.

use std::sync::Arc;

/// The size in bytes a cached value accounts for against a cache's byte bound.
///
/// Implement it for the runtime's kernel and blueprint types (a tensor weighs `elem_count * dtype.size_in_bytes()`),
/// or build a cache with an explicit weigher closure ([`TtlCache::with_weigher`](crate::TtlCache::with_weigher)).
/// The weight must not change while the value is cached.
pub trait Weigh {
    /// The value's weight in bytes.
    fn weigh_bytes(&self) -> u64;
}

impl<T> Weigh for [T] {
    fn weigh_bytes(&self) -> u64 {
        std::mem::size_of_val(self) as u64
    }
}

impl<T> Weigh for Vec<T> {
    fn weigh_bytes(&self) -> u64 {
        self.as_slice().weigh_bytes()
    }
}

impl Weigh for str {
    fn weigh_bytes(&self) -> u64 {
        self.len() as u64
    }
}

impl Weigh for String {
    fn weigh_bytes(&self) -> u64 {
        self.len() as u64
    }
}

impl<T: Weigh + ?Sized> Weigh for Arc<T> {
    fn weigh_bytes(&self) -> u64 {
        (**self).weigh_bytes()
    }
}

impl<T: Weigh + ?Sized> Weigh for Box<T> {
    fn weigh_bytes(&self) -> u64 {
        (**self).weigh_bytes()
    }
}

impl<T: Weigh + ?Sized> Weigh for &T {
    fn weigh_bytes(&self) -> u64 {
        (**self).weigh_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes_are_counted() {
        assert_eq!(vec![0f32; 10].weigh_bytes(), 40);
        assert_eq!(Arc::<[f64]>::from(vec![0.0; 3]).weigh_bytes(), 24);
        assert_eq!(String::from("abcd").weigh_bytes(), 4);
        assert_eq!(Box::new(vec![0u16; 5]).weigh_bytes(), 10);
    }
}
