//! The authenticated command envelope: HMAC-SHA256 signatures, nonce ledger, freshness, key rotation.
//!
//! (Being written: see the issue for this crate.)
