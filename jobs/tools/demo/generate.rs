//! The synthetic demo source: every table of the data contract, deterministic for a seed, with
//! past randomized campaigns whose outcomes follow a known *heterogeneous* treatment effect.
//!
//! Each user has hidden traits (activity, buying rate, deal hunting, wishlist habit) that drive
//! both their observable history and their true response to a message:
//! - engaged users and wishlisters respond to messages;
//! - deal hunters buy a lot at a discount but gain little from being targeted;
//! - heavy buyers are "sure things" who respond *negatively* (messages annoy them);
//! - users who never bought respond a little to a nudge.
//!
//! A deal's pull is its discount: each user buys once the discount passes their own reservation
//! level ([`DoseResponse`]) — a small one for wishlisters (they already want an item) and deal
//! hunters, a large one for users who often buy at a discount; heavy buyers hardly respond.
//! The deal's message itself adds only a share of a newsletter's effect. The past deals offered
//! 10, 20 or 30 % at random, so the models can learn each level's effect.
//!
//! A gift goes to one of the sender's friends at the time ([`Gifting`]): most often a friend made
//! when the sender's account was new, one they gifted before, or a new friend; how active the
//! friend is does not matter. The pairwise recipient model is measured against these gifts.
//!
//! The true individual effects go to `demo_truth`, which the pipeline never reads; the demo's
//! report uses it to put the model's Qini next to the oracle's.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use models::DAY;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, Normal, Poisson};
use tracing::info;

use crate::state::db::{Db, Value};

/// Users generated and inserted per batch: bounds memory at any size.
const CHUNK_USERS: usize = 20_000;
/// Games in the catalogue; each has five items.
const GAMES: i64 = 12;
const ITEMS_PER_GAME: i64 = 5;
/// The item released on the run date, which the example drop campaign promotes.
pub const DROP_ITEM_ID: i64 = 100;
/// Game of the dropped item.
const DROP_GAME: i64 = 3;
/// How far back purchase history goes.
const HISTORY_DAYS: i64 = 730;
/// How far back engagement rows go (the earliest exposure plus the longest window).
const ENGAGEMENT_DAYS: i64 = 605;
/// Attribution window of the past campaigns' outcomes.
pub const OUTCOME_DAYS: i64 = 7;

/// Past randomized campaigns: id, days before the anchor, the discount levels offered (none: a
/// message alone). A campaign every few weeks, as a marketing team runs them: the history uplift
/// models learn from. A deal drew each exposed user's level at random, and recorded it in both
/// arms (a control row carries the level its user would have been offered).
const PAST_CAMPAIGNS: &[(&str, i64, &[f64])] = &[
    ("winter-newsletter", 240, &[]),
    ("spring-newsletter", 200, &[]),
    ("spring-deal", 165, &DEAL_LEVELS),
    ("summer-newsletter", 130, &[]),
    ("summer-drop", 95, &[]),
    ("autumn-newsletter", 60, &[]),
    ("autumn-deal", 30, &DEAL_LEVELS),
];
/// The discount levels of the past deals, in percent.
const DEAL_LEVELS: [f64; 3] = [10.0, 20.0, 30.0];
/// Share of eligible users each past campaign exposed (half treatment, half control).
const EXPOSED_SHARE: f64 = 0.35;

const COUNTRIES: &[(&str, f64)] = &[
    ("US", 0.40),
    ("GB", 0.12),
    ("DE", 0.12),
    ("FR", 0.10),
    ("BR", 0.10),
    ("JP", 0.08),
    ("CA", 0.08),
];
const PLATFORMS: &[(&str, f64)] = &[("pc", 0.5), ("console", 0.3), ("mobile", 0.2)];
const SUPPRESSION_REASONS: &[&str] = &["unsubscribed", "legal_hold", "fraud", "staff", "deleted"];

/// What the demo data is generated from. The same spec gives the same data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSpec {
    pub users: usize,
    pub seed: u64,
    /// The run date's midnight (UTC Unix seconds): every event happens before it.
    pub anchor: i64,
}

const INSERT_USERS: &str = include_str!("../../../sql/statements/insert_users.sql");
const INSERT_SUPPRESSIONS: &str = include_str!("../../../sql/statements/insert_suppressions.sql");
const INSERT_ITEMS: &str = include_str!("../../../sql/statements/insert_items.sql");
const INSERT_PURCHASES: &str = include_str!("../../../sql/statements/insert_purchases.sql");
const INSERT_ENGAGEMENT: &str = include_str!("../../../sql/statements/insert_engagement_daily.sql");
const INSERT_WISHLIST: &str = include_str!("../../../sql/statements/insert_wishlist.sql");
const INSERT_FRIENDSHIPS: &str = include_str!("../../../sql/statements/insert_friendships.sql");
const INSERT_EXPOSURES: &str =
    include_str!("../../../sql/statements/insert_campaign_exposures.sql");
const INSERT_TRUTH: &str = include_str!("../../../sql/statements/insert_demo_truth.sql");
const INSERT_META: &str = include_str!("../../../sql/statements/insert_demo_meta.sql");
const SELECT_META: &str = include_str!("../../../sql/statements/demo_meta.sql");
const RESET: &str = include_str!("../../../sql/statements/demo_reset.sql");

/// Makes sure `db` holds the demo data of `spec`: reuses it when it is already there (so a
/// re-run for the same date sees the same data), else (re)generates it. Returns whether it
/// generated.
pub async fn ensure(db: &Db, spec: DemoSpec) -> Result<bool> {
    db.migrate_source().await?;
    let existing: Option<(i64, i64, i64)> = sqlx::query_as(SELECT_META)
        .fetch_optional(&db.pool)
        .await
        .context("cannot read demo_meta")?;
    if existing == Some((spec.seed as i64, spec.users as i64, spec.anchor)) {
        info!(
            users = spec.users,
            seed = spec.seed,
            "demo data already present"
        );
        return Ok(false);
    }
    sqlx::raw_sql(RESET)
        .execute(&db.pool)
        .await
        .context("cannot clear the demo tables")?;
    info!(users = spec.users, seed = spec.seed, "generating demo data");
    generate(db, spec).await?;
    db.insert(
        INSERT_META,
        &[vec![
            Value::Int(spec.seed as i64),
            Value::Int(spec.users as i64),
            Value::Int(spec.anchor),
        ]],
    )
    .await?;
    Ok(true)
}

/// Rows of every table for one batch of users.
#[derive(Default)]
struct Rows {
    users: Vec<Vec<Value>>,
    suppressions: Vec<Vec<Value>>,
    purchases: Vec<Vec<Value>>,
    engagement: Vec<Vec<Value>>,
    wishlist: Vec<Vec<Value>>,
    friendships: Vec<Vec<Value>>,
    exposures: Vec<Vec<Value>>,
    truth: Vec<Vec<Value>>,
}

impl Rows {
    async fn flush(&mut self, db: &Db) -> Result<()> {
        for (sql, rows) in [
            (INSERT_USERS, &mut self.users),
            (INSERT_SUPPRESSIONS, &mut self.suppressions),
            (INSERT_PURCHASES, &mut self.purchases),
            (INSERT_ENGAGEMENT, &mut self.engagement),
            (INSERT_WISHLIST, &mut self.wishlist),
            (INSERT_FRIENDSHIPS, &mut self.friendships),
            (INSERT_EXPOSURES, &mut self.exposures),
            (INSERT_TRUTH, &mut self.truth),
        ] {
            db.insert(sql, rows).await?;
            rows.clear();
        }
        Ok(())
    }
}

/// An item of the demo catalogue.
struct Item {
    id: i64,
    game: i64,
    price: i64,
}

fn catalogue(anchor: i64, rng: &mut ChaCha8Rng) -> (Vec<Item>, Vec<Vec<Value>>) {
    const KINDS: &[(&str, &str, i64)] = &[
        ("game", "", 5999),
        ("dlc", ": Expansion", 1999),
        ("cosmetic", ": Skin Pack", 499),
        ("season_pass", ": Season Pass", 2999),
        ("soundtrack", ": Soundtrack", 999),
    ];
    const TITLES: &[&str] = &[
        "Ironvale",
        "Skyreach",
        "Starfall Chronicles",
        "Deep Harbor",
        "Neon Drift",
        "Emberfall",
        "Quiet Orbit",
        "Rune Tactics",
        "Pixel Kart",
        "Frostbound",
        "Dune Riders",
        "Mythwright",
    ];
    let mut items = Vec::new();
    let mut rows = Vec::new();
    for game in 1..=GAMES {
        let publisher = (game - 1) % 5 + 1;
        for (j, (category, suffix, price)) in KINDS.iter().enumerate().take(ITEMS_PER_GAME as usize)
        {
            let id = (game - 1) * ITEMS_PER_GAME + j as i64 + 1;
            let released = anchor - rng.random_range(HISTORY_DAYS..1500) * DAY;
            items.push(Item {
                id,
                game,
                price: *price,
            });
            rows.push(item_row(
                id,
                &format!("{}{suffix}", TITLES[game as usize - 1]),
                publisher,
                game,
                category,
                *price,
                released,
            ));
        }
    }
    rows.push(item_row(
        DROP_ITEM_ID,
        "Starfall Chronicles: Nightfall",
        (DROP_GAME - 1) % 5 + 1,
        DROP_GAME,
        "dlc",
        2499,
        anchor,
    ));
    (items, rows)
}

fn item_row(
    id: i64,
    title: &str,
    publisher: i64,
    game: i64,
    category: &str,
    price: i64,
    released: i64,
) -> Vec<Value> {
    vec![
        Value::Int(id),
        Value::Text(title.to_string()),
        Value::Text(if publisher == 1 { "1p" } else { "3p" }.into()),
        Value::Int(publisher),
        Value::Int(game),
        Value::Text(category.into()),
        Value::Int(price),
        Value::Int(released),
    ]
}

fn pick<'a>(rng: &mut ChaCha8Rng, weighted: &[(&'a str, f64)]) -> &'a str {
    let mut u: f64 = rng.random();
    for (v, w) in weighted {
        if u < *w {
            return v;
        }
        u -= w;
    }
    weighted[weighted.len() - 1].0
}

fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    Poisson::new(mean).map_or(0, |p| p.sample(rng) as u64)
}

/// A user's hidden traits and their true responses.
struct Traits {
    activity: f64,
    /// Orders per day without any campaign.
    rate: f64,
    /// Probability that an order is discounted: the true discount sensitivity.
    sensitivity: f64,
    wishlist: u64,
    favourite_game: i64,
    /// True effect of a message on the 7-day purchase probability.
    uplift: f64,
    /// What a discount adds to it.
    discount: DoseResponse,
}

/// Draws a user's traits from `rng`, and their response to a discount from `dose_rng` (a stream
/// of its own, so that it leaves every other table of a seed as it was before it existed).
fn traits(rng: &mut ChaCha8Rng, dose_rng: &mut ChaCha8Rng, platform: &str) -> Traits {
    let activity = Normal::new(0.0, 0.8).map_or(1.0, |n: Normal<f64>| n.sample(rng).exp());
    let buyer = rng.random_bool(0.78);
    let deal_hunter = rng.random_bool(0.22);
    let noise = Normal::new(0.0, 0.5).map_or(1.0, |n: Normal<f64>| n.sample(rng).exp());
    let mut rate = if buyer {
        0.0035 * activity.powf(0.7) * noise
    } else {
        0.0
    };
    let sensitivity = if deal_hunter {
        rate *= 1.6;
        rng.random_range(0.65..0.95)
    } else {
        rng.random_range(0.02..0.30)
    };
    let wishlist = poisson(rng, 1.2 * activity).min(8);
    let heavy = rate > 0.009;
    let uplift = 0.02 + 0.07 * activity / (1.0 + activity) + if wishlist > 0 { 0.05 } else { 0.0 }
        - if deal_hunter { 0.06 } else { 0.0 }
        - if heavy { 0.09 } else { 0.0 }
        + if platform == "mobile" { 0.02 } else { 0.0 }
        + if buyer { 0.0 } else { 0.03 };
    // Who a discount moves, and how large a one it takes: wishlisters (who already want an
    // item) and deal hunters are won by a small one; users who often buy at a discount are
    // there for the price and need a large one; heavy buyers buy regardless.
    let threshold: f64 = if wishlist > 0 || deal_hunter {
        5.0
    } else if sensitivity > PRICE_DRIVEN {
        25.0
    } else {
        15.0
    };
    let cap: f64 = if heavy { 0.01 } else { 0.15 };
    let cap = cap * Normal::new(0.0, 0.25).map_or(1.0, |n: Normal<f64>| n.sample(dose_rng).exp());
    let threshold =
        threshold + Normal::new(0.0, 2.0).map_or(0.0, |n: Normal<f64>| n.sample(dose_rng));
    Traits {
        activity,
        rate,
        sensitivity,
        wishlist,
        favourite_game: rng.random_range(1..=GAMES),
        uplift: uplift.clamp(-0.08, 0.25),
        discount: DoseResponse { cap, threshold },
    }
}

/// How a user's purchase probability responds to a discount: up to `cap` more, most of it
/// once the discount passes the user's reservation level `threshold` (percent) — a logistic
/// step of [`DOSE_WIDTH`] points, shifted to add nothing at no discount. A discount below the
/// threshold does little; one far above it does no more than one just above.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoseResponse {
    pub cap: f64,
    pub threshold: f64,
}

/// The share of discounted orders above which a user who is no deal hunter needs a large
/// discount: about half of them.
const PRICE_DRIVEN: f64 = 0.16;

/// How sharp a reservation level is, in discount points.
const DOSE_WIDTH: f64 = 3.0;

/// What the message of a deal adds, as a share of a newsletter's effect: the offer is what
/// the user reads.
const DEAL_MESSAGE_SHARE: f64 = 0.3;

impl DoseResponse {
    /// What a discount of `pct` percent adds to the purchase probability.
    pub fn effect(&self, pct: f64) -> f64 {
        let step = |d: f64| 1.0 / (1.0 + (-(d - self.threshold) / DOSE_WIDTH).exp());
        self.cap * (step(pct.max(0.0)) - step(0.0))
    }
}

/// A user's true response, as `demo_truth` keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Response {
    /// Orders per day without any campaign.
    pub rate: f64,
    /// The effect of a message on the purchase probability in the attribution window.
    pub uplift: f64,
    /// What a discount adds to it.
    pub discount: DoseResponse,
}

impl Response {
    /// The probability of buying within the attribution window: without a message (`None`), or
    /// after one offering `Some(discount_pct)` (a newsletter at 0, else a deal).
    pub fn window_probability(&self, message: Option<f64>) -> f64 {
        let baseline = 1.0 - (-(OUTCOME_DAYS as f64) * self.rate).exp();
        let effect = match message {
            None => 0.0,
            Some(d) if d > 0.0 => DEAL_MESSAGE_SHARE * self.uplift + self.discount.effect(d),
            Some(_) => self.uplift,
        };
        (baseline + effect).clamp(0.0, 1.0)
    }
}

/// What an order of an item at `price` cents paid: a discount of 20, 30 or 50 % when it was
/// discounted.
pub fn paid_cents(price: i64, discounted: bool, rng: &mut ChaCha8Rng) -> i64 {
    if discounted {
        let cut = [0.2, 0.3, 0.5][rng.random_range(0..3)];
        (price as f64 * (1.0 - cut)).round() as i64
    } else {
        price
    }
}

/// Who receives a sender's gifts: each friend is weighed by a hidden closeness of the two — the
/// same from either side, so that gifts go back and forth between close friends — tripled for a
/// friend made in the first 90 days of the sender's account, times one plus twice the gifts the
/// sender already sent them, and half again for a friendship under 90 days old. Drawn on a
/// stream of its own, so that the other tables of a seed stay as they were.
struct Gifting {
    /// (friend, since, closeness, gifts sent so far).
    friends: Vec<(i64, i64, f64, u32)>,
}

impl Gifting {
    /// A sender's friends (both those the sender added and those who added them) and their
    /// closeness, for a sender `user` whose account was created at `created`.
    fn new(user: i64, friends: Vec<(i64, i64)>, created: i64, seed: u64) -> Gifting {
        let friends = friends
            .into_iter()
            .map(|(friend, since)| {
                let early = if since - created < 90 * DAY { 3.0 } else { 1.0 };
                (friend, since, early * closeness(user, friend, seed), 0)
            })
            .collect();
        Gifting { friends }
    }

    /// The recipient of a gift sent at `at`, among the friends the sender had then (`None`
    /// without any).
    fn recipient(&mut self, at: i64, rng: &mut ChaCha8Rng) -> Option<i64> {
        let weight = |&(_, since, closeness, sent): &(i64, i64, f64, u32)| {
            let new = if at - since < 90 * DAY { 1.5 } else { 1.0 };
            closeness * (1.0 + 2.0 * f64::from(sent)) * new
        };
        let total: f64 = self.friends.iter().filter(|f| f.1 < at).map(weight).sum();
        if total <= 0.0 {
            return None;
        }
        let mut left = rng.random_range(0.0..total);
        let last = self.friends.iter().rposition(|f| f.1 < at)?;
        let mut chosen = last;
        for (i, f) in self.friends.iter().enumerate().filter(|(_, f)| f.1 < at) {
            left -= weight(f);
            if left < 0.0 {
                chosen = i;
                break;
            }
        }
        self.friends[chosen].3 += 1;
        Some(self.friends[chosen].0)
    }
}

/// The hidden closeness of two users, the same whichever is first: log-normal, drawn from a
/// stream seeded by the pair.
fn closeness(a: i64, b: i64, seed: u64) -> f64 {
    let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
    let pair = seed ^ lo.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hi.rotate_left(32);
    let mut rng = ChaCha8Rng::seed_from_u64(pair);
    Normal::<f64>::new(0.0, 1.0).map_or(1.0, |n| n.sample(&mut rng).exp())
}

/// An order before it gets its id.
struct Order {
    at: i64,
    item: usize,
    discounted: bool,
}

async fn generate(db: &Db, spec: DemoSpec) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut dose_rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x646f_7365);
    let mut gift_rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x6769_6674);
    // Friendships a user added towards a user generated later, who gifts them too.
    let mut added_by: std::collections::HashMap<i64, Vec<(i64, i64)>> =
        std::collections::HashMap::new();
    let a = spec.anchor;
    let (items, item_rows) = catalogue(a, &mut rng);
    db.insert(INSERT_ITEMS, &item_rows).await?;
    let by_game =
        |g: i64| -> Vec<usize> { (0..items.len()).filter(|&i| items[i].game == g).collect() };

    let bar = ProgressBar::new(spec.users as u64).with_style(
        ProgressStyle::with_template("generating demo users {bar:30} {pos}/{len} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Rows::default();
    let mut order_id = 0i64;
    let n = spec.users as i64;
    for user in 1..=n {
        let created = if rng.random_bool(0.12) {
            a - rng.random_range(DAY..60 * DAY)
        } else {
            a - rng.random_range(60 * DAY..1500 * DAY)
        };
        let country = pick(&mut rng, COUNTRIES);
        let platform = pick(&mut rng, PLATFORMS);
        let email = rng
            .random_bool(0.92)
            .then(|| format!("user{user}@example.com"));
        rows.users.push(vec![
            Value::Int(user),
            Value::Int(created),
            Value::Text(country.into()),
            Value::Text(platform.into()),
            Value::OptText(email),
            Value::Bool(rng.random_bool(0.85)),
        ]);
        if rng.random_bool(0.03) {
            let reason = SUPPRESSION_REASONS[rng.random_range(0..SUPPRESSION_REASONS.len())];
            rows.suppressions.push(vec![
                Value::Int(user),
                Value::Text(reason.into()),
                Value::Int(rng.random_range(created..a)),
            ]);
        }
        let t = traits(&mut rng, &mut dose_rng, platform);
        rows.truth.push(vec![
            Value::Int(user),
            Value::Float(t.uplift),
            Value::Float(t.sensitivity),
            Value::Float(t.rate),
            Value::Float(t.discount.cap),
            Value::Float(t.discount.threshold),
        ]);
        let response = Response {
            rate: t.rate,
            uplift: t.uplift,
            discount: t.discount,
        };
        let favourites = by_game(t.favourite_game);

        // Friends: both directions of each friendship.
        let mut friends = Vec::new();
        let mut gift_friends = added_by.remove(&user).unwrap_or_default();
        for _ in 0..poisson(&mut rng, 1.5) {
            let friend = rng.random_range(1..=n);
            if friend == user {
                continue;
            }
            let since = rng.random_range(created..a);
            friends.push(friend);
            gift_friends.push((friend, since));
            if friend > user {
                added_by.entry(friend).or_default().push((user, since));
            }
            rows.friendships.push(vec![
                Value::Int(user),
                Value::Int(friend),
                Value::Int(since),
            ]);
            rows.friendships.push(vec![
                Value::Int(friend),
                Value::Int(user),
                Value::Int(since),
            ]);
        }

        // Wishlist: mostly the favourite game, added in the first month of the account.
        for _ in 0..t.wishlist {
            let item = if rng.random_bool(0.7) {
                favourites[rng.random_range(0..favourites.len())]
            } else {
                rng.random_range(0..items.len())
            };
            let added = created + rng.random_range(0..(30 * DAY).min(a - created).max(1));
            rows.wishlist.push(vec![
                Value::Int(user),
                Value::Int(items[item].id),
                Value::Int(added),
            ]);
        }

        // Engagement: active days drawn from the last ENGAGEMENT_DAYS days of the account.
        let first_day = ((created / DAY) + 1).max(a / DAY - ENGAGEMENT_DAYS);
        let span = (a / DAY - first_day).max(0) as u64;
        if span > 0 {
            let p = (0.02 * t.activity).min(0.6);
            let active = Binomial::new(span, p).map_or(0, |b| b.sample(&mut rng));
            let mut days: Vec<usize> = sample(&mut rng, span as usize, active as usize).into_vec();
            days.sort_unstable();
            for d in days {
                rows.engagement.push(vec![
                    Value::Int(user),
                    Value::Int((first_day + d as i64) * DAY),
                    Value::Int(1 + poisson(&mut rng, t.activity) as i64),
                    Value::Int(poisson(&mut rng, 1.5 * t.activity) as i64),
                    Value::Int(i64::from(rng.random_bool(0.05))),
                    Value::Int(poisson(&mut rng, 0.3 * t.activity) as i64),
                ]);
            }
        }

        // Background orders: a Poisson process over the history window.
        let start = created.max(a - HISTORY_DAYS * DAY);
        let mut orders: Vec<Order> =
            (0..poisson(&mut rng, t.rate * (a - start) as f64 / DAY as f64))
                .map(|_| Order {
                    at: rng.random_range(start..a),
                    item: if rng.random_bool(0.6) {
                        favourites[rng.random_range(0..favourites.len())]
                    } else {
                        rng.random_range(0..items.len())
                    },
                    discounted: rng.random_bool(t.sensitivity),
                })
                .collect();

        // Past randomized campaigns: the outcome in the window after an exposure follows the
        // user's baseline plus, when treated, the true effect.
        for (campaign, days_before, levels) in PAST_CAMPAIGNS {
            let start = a - days_before * DAY;
            if created >= start || !rng.random_bool(EXPOSED_SHARE) {
                continue;
            }
            let at = start + rng.random_range(0..6 * 3600);
            let treated = rng.random_bool(0.5);
            let discount = if levels.is_empty() {
                0.0
            } else {
                levels[dose_rng.random_range(0..levels.len())]
            };
            let p = response.window_probability(treated.then_some(discount));
            let end = at + OUTCOME_DAYS * DAY;
            orders.retain(|o| o.at < at || o.at >= end);
            if rng.random_bool(p) {
                orders.push(Order {
                    at: rng.random_range(at..end.min(a)),
                    item: favourites[rng.random_range(0..favourites.len())],
                    discounted: (treated && discount > 0.0) || rng.random_bool(t.sensitivity),
                });
            }
            rows.exposures.push(vec![
                Value::Text((*campaign).into()),
                Value::Int(user),
                Value::Int(at),
                Value::Text(if treated { "treatment" } else { "control" }.into()),
                Value::Float(discount),
            ]);
        }
        orders.sort_by_key(|o| o.at);
        let mut gifting = Gifting::new(user, gift_friends, created, spec.seed);
        for o in orders {
            order_id += 1;
            let item = &items[o.item];
            let paid = paid_cents(item.price, o.discounted, &mut rng);
            let gift = !friends.is_empty() && rng.random_bool(0.05);
            // The uniform draw of earlier versions stays, so that the rest of the stream (and
            // every other table of a seed) is as it was; the truth chooses the recipient.
            let recipient = if gift {
                let _ = rng.random_range(0..friends.len());
                gifting.recipient(o.at, &mut gift_rng)
            } else {
                None
            };
            rows.purchases.push(vec![
                Value::Int(order_id),
                Value::Int(user),
                Value::Int(item.id),
                Value::Int(o.at),
                Value::Int(item.price),
                Value::Int(paid),
                Value::Bool(recipient.is_some()),
                Value::OptInt(recipient),
            ]);
        }

        if (user as usize).is_multiple_of(CHUNK_USERS) || user == n {
            rows.flush(db).await?;
            bar.set_position(user as u64);
        }
    }
    bar.finish_and_clear();
    Ok(())
}
