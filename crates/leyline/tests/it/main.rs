//! Integration tests of the Leyline contract: vectors from Esper's Python peer, round trips.
#![allow(clippy::unwrap_used)]

mod peer_order;
mod roundtrip;
mod vectors;
