//! The `targeting` binary's library: the only code in the project that does I/O. The decisions
//! are the `models` and `segments` crates'; this crate reads, runs the stages and writes.
//!
//! Its folders follow the pipeline and its adapters, and each imports only those below it:
//!
//! | module | what it holds | imports |
//! |---|---|---|
//! | [`cli`] | the command line, its printouts and logging setup | everything below |
//! | [`daemon`], [`tools`] | the scheduler daemon; the demo and `evaluate` | `report` and below |
//! | [`report`] | did it work: lift per campaign-day with intervals, against the forecast | `pipeline` and below |
//! | [`pipeline`] | the nightly run: extract → score → select → publish → record | `training` and below |
//! | [`training`] | training the models and the model store | `config` and below |
//! | [`config`] | settings and campaign files, validated | `state`, `store` |
//! | [`state`] | the state and source databases: connections, ledger, locks | `redact` |
//! | [`store`] | the object store: local folders and S3, with retries | nothing |

// The S3 SDK's futures nest deeply inside the command's async block.
#![recursion_limit = "256"]

// Only the command line is for the binary; everything else is this crate's own.
pub mod cli;
mod config;
mod daemon;
mod pipeline;
mod redact;
mod report;
mod state;
mod store;
mod tools;
mod training;
