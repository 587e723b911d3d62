//! Integration tests of the Leyline contract: vectors from Esper's Python peer, round trips.
#![allow(clippy::unwrap_used)]

mod roundtrip;
mod vectors;
