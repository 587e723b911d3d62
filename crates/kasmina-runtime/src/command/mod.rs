//! Commands: an `AdaptationCommand` is parsed once, at the edge, into a typed [`Request`]
//! ([`parse`]), then applied at a safe point ([`apply`]) and answered with a receipt that tells
//! the truth (decisions D14).

mod apply;
mod parse;
