//! End-to-end tests: the real `targeting` binary against SQLite, a real PostgreSQL and a real
//! S3-compatible server (both started by `scripts/test.sh`), one module per area. They are one
//! test binary so that the dependency stack is linked once.

mod common;

mod bad_input;
mod demo;
mod evaluate;
mod exactly_once;
mod faults;
mod publish_s3;
mod registry;
mod scheduler;
mod scorer;
mod shards;
mod validate;
