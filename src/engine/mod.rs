//! The scan engine: the probe sequence, pacing, reply bookkeeping, and the
//! threads that drive a transport.

pub mod banners;
pub mod connect;
pub mod pacing;
pub mod plan;
pub mod rate;
pub mod run;
pub mod state;
pub mod time;
pub mod window;
