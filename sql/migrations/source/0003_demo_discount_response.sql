-- Each demo user's true response to a discount: up to true_discount_cap more purchase
-- probability, most of it once the discount passes true_discount_threshold percent (see
-- `DoseResponse` in jobs/tools/demo/generate.rs), so that per-user discount levels can be
-- judged against the truth. Demo data generated before it had one effect for every discount:
-- forgetting what it was generated with regenerates it.
ALTER TABLE demo_truth ADD COLUMN true_discount_cap DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE demo_truth ADD COLUMN true_discount_threshold DOUBLE PRECISION NOT NULL DEFAULT 0;
DELETE FROM demo_meta;
