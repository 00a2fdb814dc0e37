//! Remembering what happened (issue #19, under way): the sans-IO motion
//! detector (`motion.rs`). The recorder policy, the fMP4 writer, the disk
//! shell and the wiring into capture and the page are still to come.

pub mod motion;
