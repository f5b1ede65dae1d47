//! Prost messages as scripts and people see them: JSON values with stable
//! keys, and table rows. One file per message family.

pub mod attempts;
pub mod claim;
pub mod cluster;
pub mod limit;
pub mod schedule;
pub mod top;
pub mod work_event;
pub mod work_item;
pub mod work_stats;
pub mod workflow_steps;
