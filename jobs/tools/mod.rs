//! Commands beside the nightly job: the synthetic demo ([`demo`]) and the offline evaluation of
//! the uplift learners on any CSV ([`evaluate`]).

pub mod demo;
pub mod evaluate;
