//! The databases: connections to the source and state databases ([`db`]), the run ledger and
//! assignment history ([`ledger`]), the locks that keep a campaign's run for a date in one
//! process ([`lock`]), and claiming a campaign-day with both ([`claim`]). Every statement's
//! text lives under `sql/`.

pub mod claim;
pub mod db;
pub mod frames;
pub mod ledger;
pub mod lock;
