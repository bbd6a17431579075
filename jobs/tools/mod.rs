//! Commands beside the nightly job: the synthetic demo ([`demo`]), the offline evaluation of
//! the uplift learners on any CSV ([`evaluate`]), and the scorers' benchmark ([`bench_score`]).

pub mod bench_score;
pub mod demo;
pub mod evaluate;
