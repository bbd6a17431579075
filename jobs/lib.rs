//! The `targeting` binary's library: the only code in the project that does I/O. The CLI,
//! settings, telemetry, the pipeline stages (extract, featurize, score, select, publish,
//! record), the run ledger and the export sinks live here; the decisions are the `models` and
//! `segments` crates'.

// The S3 SDK's futures nest deeply inside the command's async block.
#![recursion_limit = "256"]

pub mod campaigns;
pub mod cli;
pub mod daemon;
pub mod db;
pub mod demo;
pub mod evaluate;
pub mod extract;
pub mod ledger;
pub mod lock;
pub mod metrics;
pub mod model_store;
pub mod pipeline;
pub mod publish;
pub mod report;
pub mod settings;
pub mod store;
pub mod telemetry;
