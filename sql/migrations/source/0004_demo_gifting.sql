-- The demo's gifts follow a truth (who a sender gifts: close friends, friends made early,
-- friends gifted before, new friends; see `Gifting` in jobs/tools/demo/generate.rs), against
-- which the gift recipient model is measured. Demo data generated before it sent gifts to a
-- friend drawn at random: forgetting what it was generated with regenerates it.
DELETE FROM demo_meta;
