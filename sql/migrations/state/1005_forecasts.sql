-- What a run expected of each campaign when it chose the audience, so that `targeting report` can
-- put the forecast beside the outcome. Dry runs record theirs too, marked `dry_run`. The offer's
-- margin and price are kept as they were that night: campaign files change afterwards.
CREATE TABLE targeting_forecasts (
    run_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    run_date TEXT NOT NULL,
    dry_run BOOLEAN NOT NULL,
    recorded_at BIGINT NOT NULL,
    -- JSON: [{"step": …, "users": …}, …], the selection funnel as the preview showed it.
    funnel TEXT NOT NULL,
    eligible BIGINT NOT NULL,
    audience_size BIGINT NOT NULL,
    holdout_size BIGINT NOT NULL,
    -- Expected incremental purchases of the treatment arm (the sum of its users' uplift).
    expected_conversions DOUBLE PRECISION NOT NULL,
    -- Expected discount given to the treatment arm, in currency units.
    expected_discount_cost DOUBLE PRECISION NOT NULL,
    discount_pct DOUBLE PRECISION NOT NULL,
    margin DOUBLE PRECISION NOT NULL,
    average_price DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, campaign_id)
);
