//! TTL- and byte-bounded caches, epoch-driven GC and teacher memory budgeting for Kasmina.
//!
//! (Being written: see the issue for this crate.)
