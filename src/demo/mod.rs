//! `voltage-gateway demo`: a private redis-server, the Function library, a simulated site
//! writing through `comsrv_write_data`, and the gateway — one command, nothing to set up.

pub mod influx_process;
pub mod redis_process;
pub mod simulator;

pub use influx_process::InfluxProcess;
pub use redis_process::RedisProcess;
pub use simulator::Simulator;
