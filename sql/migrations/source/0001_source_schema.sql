-- The demo and test source schema: the canonical tables of the data contract (DESIGN.md), plus
-- demo_truth and demo_meta, which only the demo generator writes and the pipeline never reads.
-- Times are UTC Unix seconds; engagement_daily.day is the Unix second of the day's midnight.
CREATE TABLE users (
    user_id BIGINT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    country TEXT NOT NULL,
    platform TEXT NOT NULL,
    email TEXT,
    marketing_opt_in BOOLEAN NOT NULL
);

CREATE TABLE suppressions (
    user_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE items (
    item_id BIGINT PRIMARY KEY,
    title TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('1p', '3p')),
    publisher_id BIGINT NOT NULL,
    game_id BIGINT NOT NULL,
    category TEXT NOT NULL,
    list_price_cents BIGINT NOT NULL,
    released_at BIGINT NOT NULL
);

CREATE TABLE purchases (
    order_id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    item_id BIGINT NOT NULL,
    purchased_at BIGINT NOT NULL,
    list_price_cents BIGINT NOT NULL,
    paid_cents BIGINT NOT NULL,
    is_gift BOOLEAN NOT NULL,
    recipient_user_id BIGINT
);

CREATE TABLE engagement_daily (
    user_id BIGINT NOT NULL,
    day BIGINT NOT NULL,
    sessions BIGINT NOT NULL,
    shop_views BIGINT NOT NULL,
    wishlist_adds BIGINT NOT NULL,
    cart_adds BIGINT NOT NULL
);

CREATE TABLE wishlist (
    user_id BIGINT NOT NULL,
    item_id BIGINT NOT NULL,
    added_at BIGINT NOT NULL
);

CREATE TABLE friendships (
    user_id BIGINT NOT NULL,
    friend_id BIGINT NOT NULL,
    since BIGINT NOT NULL
);

CREATE TABLE campaign_exposures (
    campaign_id TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    assigned_at BIGINT NOT NULL,
    arm TEXT NOT NULL CHECK (arm IN ('treatment', 'control')),
    discount_pct DOUBLE PRECISION NOT NULL
);

CREATE TABLE demo_truth (
    user_id BIGINT PRIMARY KEY,
    true_uplift DOUBLE PRECISION NOT NULL,
    true_discount_sensitivity DOUBLE PRECISION NOT NULL
);

-- What the demo data was generated with, so that a re-run reuses it instead of regenerating.
CREATE TABLE demo_meta (
    seed BIGINT NOT NULL,
    users BIGINT NOT NULL,
    anchor BIGINT NOT NULL
);
