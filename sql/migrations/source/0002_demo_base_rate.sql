-- Each demo user's true purchase rate without any campaign (orders per day), so that the demo
-- can draw what happens after its night from the truth (`targeting demo --outcome-days`).
ALTER TABLE demo_truth ADD COLUMN true_base_rate DOUBLE PRECISION NOT NULL DEFAULT 0;
