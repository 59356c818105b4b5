//! Scheduled jobs, the part that is plain computation: when a schedule fires (`cron.rs`) and what a fire
//! time does (`policy.rs`). The daemon keeps the timers, the runs and their history.

pub mod cron;
pub mod policy;

pub use cron::{Fire, Schedule, ScheduleError, Shift};
