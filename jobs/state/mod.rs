//! The databases: connections to the source and state databases ([`db`]), the run ledger and
//! assignment history ([`ledger`]), and the locks that keep a campaign's run for a date in one
//! process ([`lock`]). Every statement's text lives under `sql/`.

pub mod db;
pub mod ledger;
pub mod lock;
