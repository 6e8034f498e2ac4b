//! What every long-running geodns process (`serve`, `beacon`, `presenter`, `announce`) shares,
//! so an operator meets one behaviour in all of them:
//!
//! - [`config_file`]: a TOML config read and parsed once, every error naming the file, and the
//!   key or the line at fault ([`ConfigError`]);
//! - [`prometheus`]: the Prometheus text exposition ([`prometheus::Text`]), written one way,
//!   and the minimal HTTP endpoint that serves it.

pub mod config_file;
pub mod prometheus;

pub use config_file::ConfigError;
