//! The 11-stage seed lifecycle over Leyline stages, guard gates G0-G5 and timed embargo/reset.
//!
//! (Being written: see the issue for this crate.)
