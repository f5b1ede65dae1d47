//! Prost messages as scripts and people see them: JSON values with stable
//! keys, and table rows. One file per message family.

pub mod cluster;
pub mod work_item;
