//! sitecar-control: the supervisor that runs the main container and its sidecars.
//!
//! # Layout
//! - [`state`]: the pure core, events in and actions out (start order, backoff, liveness, stop order).
pub mod state;
