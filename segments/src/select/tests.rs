//! Selection's tests: the always-on filters, each kind's ranking, caps, budgets, holdouts and
//! arbitration, on generated users.

use super::*;
use crate::campaign::parse;
use crate::rules::{Field, FieldKind};
use crate::testgen::Gen;

fn frame() -> DataFrame {
    df! {
        "user_id" => [1i64, 2, 3, 4, 5, 6],
        "uplift" => [0.05, 0.20, -0.01, 0.10, 0.30, 0.15],
        "p_control" => [0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        "discount_uplift" => [0.40, 0.25, 0.02, 0.2, 0.3, 0.5],
        "discount_sensitivity" => [0.2, 0.3, 0.1, 0.2, 0.2, 0.9],
        "marketing_opt_in" => [1i64, 1, 1, 1, 0, 1],
        "suppressed" => [0i64, 0, 0, 1, 0, 0],
        "orders_total" => [0.0, 3.0, 0.0, 0.0, 0.0, 5.0],
        "discount_share_orders_365d" => [None, Some(0.1), None, None, None, Some(0.9)],
        "affinity" => [0.0, 2.0, 1.0, 3.0, 3.0, 1.0],
    }
    .unwrap()
}

fn catalog() -> Catalog {
    let field = |name: &str, kind| Field {
        name: name.into(),
        kind,
        column: name.into(),
        description: String::new(),
    };
    Catalog {
        fields: vec![
            field("orders_total", FieldKind::Number),
            field("uplift", FieldKind::Number),
        ],
        lists: Vec::new(),
    }
}

fn campaign_with(id: &str, kind: &str, priority: i32, extra: &str) -> Campaign {
    let text = format!(
        "format_version = 1\nid = \"{id}\"\nkind = \"{kind}\"\npriority = {priority}\n\
         holdout = 0.0\nmax_audience = 10\n{extra}"
    );
    parse("c.toml", &text, &catalog()).unwrap()
}

fn campaign(kind: &str, extra: &str) -> Campaign {
    campaign_with("c", kind, 0, extra)
}

fn ids(a: &Audience) -> Vec<i64> {
    a.members.iter().map(|m| m.user_id).collect()
}

const RUN_DAY: i64 = 20_000;

fn ctx(limits: Limits) -> SelectionContext {
    SelectionContext {
        global_control_share: 0.0,
        global_control_salt: String::new(),
        catalog: catalog(),
        run_day: RUN_DAY,
        limits,
    }
}

fn no_control() -> SelectionContext {
    ctx(Limits::default())
}

// Users 4 (suppressed) and 5 (no consent) are never selected, whatever the kind.
#[test]
fn weekly_deal_ranks_by_expected_profit_and_drops_deal_hunters() {
    // 20% off at a 30% margin: value = discount_uplift × 0.1 − 0.1 × 0.2, so user 1:
    // 0.02, user 2: 0.005, user 3: −0.018 (out); user 6 is a deal hunter (share 0.9).
    let c = campaign("weekly_deal", "[offer]\ndiscount_pct = 20\n");
    let a = select(&c, &frame(), &no_control()).unwrap();
    assert_eq!(ids(&a), vec![1, 2]);
    assert!((a.members[0].expected_value - 0.02).abs() < 1e-12);
    // Expected discount given: (0.1 + 0.4) × 0.2 + (0.1 + 0.25) × 0.2 list prices.
    assert!((a.expected_discount_cost() - 0.17).abs() < 1e-12);
    assert_eq!(a.eligible(), 2);
}

#[test]
fn weekly_deal_budget_is_never_exceeded() {
    // Costs at an average price of 30: user 1 3.00, user 2 2.10.
    let deal = |budget: f64| {
        campaign(
            "weekly_deal",
            &format!("[offer]\ndiscount_pct = 20\nbudget = {budget}\n"),
        )
    };
    assert_eq!(
        ids(&select(&deal(4.0), &frame(), &no_control()).unwrap()),
        vec![1]
    );
    assert_eq!(
        ids(&select(&deal(2.5), &frame(), &no_control()).unwrap()),
        vec![2]
    );
    assert_eq!(
        ids(&select(&deal(5.2), &frame(), &no_control()).unwrap()),
        vec![1, 2]
    );
    assert!(ids(&select(&deal(1.0), &frame(), &no_control()).unwrap()).is_empty());
}

/// Three users for an offer with levels at a 50% margin: user 1 is won by 10% as much as by
/// 30%, user 2 only by 30%, user 3 would buy anyway and no level pays for them.
fn levels_frame() -> DataFrame {
    df! {
        "user_id" => [1i64, 2, 3],
        "uplift" => [0.05, 0.05, 0.05],
        "p_control" => [0.0, 0.0, 0.5],
        "discount_uplift" => [0.12, 0.25, 0.03],
        "discount_uplift_10" => [0.10, 0.00, 0.01],
        "discount_uplift_20" => [0.11, 0.10, 0.02],
        "discount_uplift_30" => [0.12, 0.25, 0.03],
        "discount_sensitivity" => [0.1, 0.1, 0.1],
        "marketing_opt_in" => [1i64, 1, 1],
        "suppressed" => [0i64, 0, 0],
        "orders_total" => [1.0, 1.0, 1.0],
        "discount_share_orders_365d" => [0.0, 0.0, 0.0],
    }
    .unwrap()
}

#[test]
fn discount_levels_give_each_user_the_level_with_the_most_profit() {
    let c = campaign(
        "weekly_deal",
        "[offer]\ndiscount_levels = [10, 20, 30]\nmargin = 0.5\n",
    );
    let a = select(&c, &levels_frame(), &no_control()).unwrap();
    // User 1: 10% is worth 0.10 × 0.4 = 0.04 (30%: 0.024); user 2: 30% is worth 0.25 × 0.2 =
    // 0.05 (20%: 0.03); user 3 costs more than any level earns (10%: 0.004 − 0.05).
    let got: Vec<(i64, f64)> = a
        .members
        .iter()
        .map(|m| (m.user_id, m.discount_pct))
        .collect();
    assert_eq!(got, vec![(2, 30.0), (1, 10.0)]);
    assert!((a.members[0].expected_value - 0.05).abs() < 1e-12);
    assert_eq!(a.discount_mix(), vec![(10.0, 1), (30.0, 1)]);
}

#[test]
fn under_a_budget_discount_levels_are_priced_until_they_fit() {
    // Costs at an average price of 100: user 1 at 10% is 1.0, user 2 at 30% is 7.5, at 20%
    // 2.0; the unpriced choice (10% and 30%) costs 8.5.
    let deal = |budget: f64| {
        campaign(
            "weekly_deal",
            &format!(
                "[offer]\ndiscount_levels = [10, 20, 30]\nmargin = 0.5\naverage_price = 100\n\
                 budget = {budget}\n"
            ),
        )
    };
    let levels = |budget: f64| -> Vec<(i64, f64)> {
        let a = select(&deal(budget), &levels_frame(), &no_control()).unwrap();
        let spent: f64 = a.members.iter().map(|m| m.discount_cost * 100.0).sum();
        assert!(spent <= budget + 1e-9, "budget {budget}, spent {spent}");
        let mut got: Vec<(i64, f64)> = a
            .members
            .iter()
            .map(|m| (m.user_id, m.discount_pct))
            .collect();
        got.sort_by_key(|g| g.0);
        got
    };
    assert_eq!(levels(100.0), vec![(1, 10.0), (2, 30.0)]);
    // 20% for user 2 frees 5.5 for 0.02 of profit: the budget's price moves it down first.
    assert_eq!(levels(5.0), vec![(1, 10.0), (2, 20.0)]);
    // Then user 2 (0.03 of profit for 0.02 of discount at 20%) drops out before user 1 (0.04
    // for 0.01 at 10%).
    assert_eq!(levels(1.5), vec![(1, 10.0)]);
    assert!(levels(0.5).is_empty());
}

#[test]
fn under_priority_levels_are_priced_on_the_users_the_campaigns_before_left() {
    // At a budget of 8, user 1 at 10% (1.0) and user 2 at 30% (7.5) do not fit: alone, the
    // deal moves user 2 to 20%. When a campaign that picks first takes user 1, user 2's 30%
    // fits the budget, and the deal spends it.
    let deal = campaign_with(
        "deal",
        "weekly_deal",
        0,
        "[offer]\ndiscount_levels = [10, 20, 30]\nmargin = 0.5\naverage_price = 100\nbudget = 8\n",
    );
    let sale = campaign_with("sale", "seasonal", 30, "[seasonal]\nmin_uplift = 0.03\n");
    let mut f = levels_frame();
    f.with_column(Column::new("uplift".into(), [0.05, 0.01, 0.01]))
        .unwrap();
    let priority = ctx(Limits {
        arbitration: Arbitration::Priority,
        ..Limits::default()
    });
    let levels = |a: &Audience| -> Vec<(i64, f64)> {
        a.members
            .iter()
            .map(|m| (m.user_id, m.discount_pct))
            .collect()
    };
    let alone = select(&deal, &f, &priority).unwrap();
    assert_eq!(levels(&alone), vec![(1, 10.0), (2, 20.0)]);
    let night = select_night(&[(&sale, &f), (&deal, &f)], &priority, &History::default()).unwrap();
    assert_eq!(ids(&night[0]), vec![1]);
    assert_eq!(levels(&night[1]), vec![(2, 30.0)]);
    assert!((night[1].expected_discount_cost() * 100.0 - 7.5).abs() < 1e-9);
}

#[test]
fn new_buyer_keeps_users_without_orders() {
    let a = select(&campaign("new_buyer", ""), &frame(), &no_control()).unwrap();
    assert_eq!(ids(&a), vec![1, 3]);
}

#[test]
fn drop_ranks_by_affinity_then_uplift() {
    let a = select(
        &campaign("drop", "[drop]\nitem_id = 7\n"),
        &frame(),
        &no_control(),
    )
    .unwrap();
    assert_eq!(ids(&a), vec![2, 6, 3]);
    assert_eq!(a.members[0].rank, 1);
}

#[test]
fn gift_ranks_by_uplift_the_users_with_a_friend_to_suggest() {
    // Users 1, 2 and 6 have a friend who may receive a gift; 3 has none; 4 and 5 may not be
    // messaged themselves.
    let recipients = [Some(11i64), Some(12), None, Some(14), Some(15), Some(16)];
    let mut frame = frame();
    frame
        .with_column(Column::new(RECIPIENT_COLUMN.into(), recipients))
        .unwrap();
    let a = select(&campaign("gift", ""), &frame, &no_control()).unwrap();
    assert_eq!(ids(&a), vec![2, 6, 1]);
    let suggested: Vec<Option<i64>> = a.members.iter().map(|m| m.recipient_user_id).collect();
    assert_eq!(suggested, vec![Some(12), Some(16), Some(11)]);
    assert_eq!(
        a.funnel.last().map(|s| s.step.as_str()),
        Some(ARBITRATION_STEP)
    );
    assert!(a
        .funnel
        .iter()
        .any(|s| s.step == "has a friend who may receive a gift" && s.users == 3));
    // Without the column, a gift campaign cannot be ranked, and says why.
    let e = select(&campaign("gift", ""), &self::frame(), &no_control()).unwrap_err();
    assert!(
        e.to_string()
            .contains("the friend each user would send a gift to"),
        "{e}"
    );
}

#[test]
fn seasonal_applies_the_floor_and_the_cap() {
    let mut c = campaign("seasonal", "[seasonal]\nmin_uplift = 0.0\n");
    c.max_audience = 2;
    let a = select(&c, &frame(), &no_control()).unwrap();
    assert_eq!(ids(&a), vec![2, 6]);
    assert_eq!(
        a.funnel.iter().map(|s| s.users).collect::<Vec<_>>(),
        vec![6, 5, 4, 4, 3, 3]
    );
    assert_eq!(a.eligible(), 3);
}

#[test]
fn eligibility_rules_are_funnel_steps() {
    let c = campaign(
        "seasonal",
        "eligibility = [\"orders_total >= 1\", \"uplift < 0.2 or orders_total > 4\"]\n",
    );
    let a = select(&c, &frame(), &no_control()).unwrap();
    // Consented, unsuppressed users 1, 2, 3, 6; with an order: 2, 6; then 2 (uplift
    // 0.20) fails "uplift < 0.2" and has 3 orders, 6 has 5 orders.
    assert_eq!(ids(&a), vec![6]);
    let steps: Vec<(&str, usize)> = a
        .funnel
        .iter()
        .map(|s| (s.step.as_str(), s.users))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("users", 6),
            ("consented", 5),
            ("not suppressed", 4),
            ("outside global control", 4),
            ("orders_total >= 1", 2),
            ("uplift < 0.2 or orders_total > 4", 1),
            ("uplift above floor", 1),
            ("not taken by another campaign tonight", 1),
        ]
    );
}

#[test]
fn arbitration_by_priority_or_by_expected_value() {
    let welcome = campaign_with("welcome", "new_buyer", 25, "");
    let sale = campaign_with("sale", "seasonal", 10, "[offer]\nmargin = 0.5\n");
    let f = frame();
    let night = |arbitration| {
        let limits = Limits {
            arbitration,
            ..Limits::default()
        };
        let a = select_night(
            &[(&sale, &f), (&welcome, &f)],
            &ctx(limits),
            &History::default(),
        )
        .unwrap();
        (ids(&a[0]), ids(&a[1]), a[0].funnel.last().unwrap().users)
    };
    // The welcome campaign picks first and takes user 1 from the sale.
    assert_eq!(night(Arbitration::Priority), (vec![2, 6], vec![1, 3], 2));
    let limits = Limits::default();
    let a = select_night(
        &[(&sale, &f), (&welcome, &f)],
        &ctx(limits),
        &History::default(),
    )
    .unwrap();
    // Both wanted user 1.
    assert_eq!(a[0].overlap, vec![("welcome".to_string(), 1)]);
    assert_eq!(a[1].overlap, vec![("sale".to_string(), 1)]);
    // User 1 is worth 0.05 × 0.5 = 0.025 to the sale and 0.05 × 0.3 = 0.015 to the
    // welcome campaign: the sale gets them.
    assert_eq!(
        night(Arbitration::ExpectedValue),
        (vec![2, 6, 1], vec![3], 3)
    );
}

#[test]
fn frequency_cap_and_discount_cooldown_read_the_history() {
    let mut history = History::default();
    let past = |days_ago: i64, discounted: bool| PastMessage {
        day: RUN_DAY - days_ago,
        discounted,
    };
    history.by_user.insert(2, vec![past(3, false)]);
    history.by_user.insert(6, vec![past(7, false)]);
    history.by_user.insert(1, vec![past(10, true)]);
    let capped = ctx(Limits {
        max_messages: 1,
        cap_days: 7,
        discount_cooldown_days: 14,
        arbitration: Arbitration::Priority,
    });
    // User 2 had a message 3 days ago; user 6's was 7 days ago, outside the window.
    let sale = campaign("seasonal", "");
    let a = &select_night(&[(&sale, &frame())], &capped, &history).unwrap()[0];
    assert_eq!(ids(a), vec![6, 1]);
    // User 1 had a discount 10 days ago: no discount for 14 days.
    let deal = campaign("weekly_deal", "[offer]\ndiscount_pct = 20\n");
    let a = &select_night(&[(&deal, &frame())], &capped, &history).unwrap()[0];
    assert!(ids(a).is_empty(), "{:?}", ids(a));
    assert!(a
        .funnel
        .iter()
        .any(|s| s.step == "outside discount cooldown"));
    // A message without a discount ignores the cooldown.
    let welcome = campaign("new_buyer", "");
    let a = &select_night(&[(&welcome, &frame())], &capped, &history).unwrap()[0];
    assert_eq!(ids(a), vec![1, 3]);
}

#[test]
fn global_control_users_are_never_selected() {
    let ctx = SelectionContext {
        global_control_share: 1.0,
        global_control_salt: "g".into(),
        ..no_control()
    };
    let a = select(&campaign("new_buyer", ""), &frame(), &ctx).unwrap();
    assert!(a.members.is_empty());
}

fn random_frame(g: &mut Gen, n: usize) -> DataFrame {
    let mut col =
        |f: &mut dyn FnMut(&mut Gen) -> f64| -> Vec<f64> { (0..n).map(|_| f(g)).collect() };
    let uplift = col(&mut |g| g.unit() * 0.3 - 0.1);
    let p_control = col(&mut |g| g.unit() * 0.3);
    let du = col(&mut |g| g.unit() * 0.4 - 0.1);
    let sens = col(&mut |g| g.unit());
    let opt_in = col(&mut |g| f64::from(u8::from(g.unit() < 0.85)));
    let suppressed = col(&mut |g| f64::from(u8::from(g.unit() < 0.1)));
    let orders = col(&mut |g| g.below(4) as f64);
    let share: Vec<Option<f64>> = orders
        .iter()
        .map(|&o| (o > 0.0).then(|| (o * 0.37) % 1.0))
        .collect();
    let affinity = col(&mut |g| g.below(3) as f64);
    // Each discount level's effect: the one offer's, plus a random rise per level.
    let mut level =
        |base: &[f64]| -> Vec<f64> { base.iter().map(|b| b + g.unit() * 0.1).collect() };
    let (d10, d20, d30) = {
        let d10 = level(&du);
        let d20 = level(&d10);
        let d30 = level(&d20);
        (d10, d20, d30)
    };
    df! {
        "user_id" => (1..=n as i64).collect::<Vec<_>>(),
        "uplift" => uplift,
        "p_control" => p_control,
        "discount_uplift" => du,
        "discount_uplift_10" => d10,
        "discount_uplift_20" => d20,
        "discount_uplift_30" => d30,
        "discount_sensitivity" => sens,
        "marketing_opt_in" => opt_in,
        "suppressed" => suppressed,
        "orders_total" => orders,
        "discount_share_orders_365d" => share,
        "affinity" => affinity,
    }
    .unwrap()
}

fn random_campaigns(g: &mut Gen) -> Vec<Campaign> {
    let kinds = [
        ("drop", "[drop]\nitem_id = 1\n"),
        ("weekly_deal", "[offer]\ndiscount_pct = 25\n"),
        ("new_buyer", "[offer]\ndiscount_pct = 10\n"),
        ("seasonal", "[seasonal]\nmin_uplift = -0.05\n"),
        (
            "weekly_deal",
            "[offer]\ndiscount_levels = [10, 20, 30]\nmargin = 0.5\n",
        ),
    ];
    (0..1 + g.below(4))
        .map(|k| {
            let (kind, extra) = kinds[g.below(kinds.len() as u64) as usize];
            let mut extra = extra.to_string();
            // The offer table comes last in `extra`: a budget joins it.
            if extra.contains("discount_") && g.below(2) == 0 {
                extra.push_str(&format!("budget = {}\n", g.below(30)));
            }
            let mut c = campaign_with(&format!("c{k}"), kind, g.below(3) as i32, &extra);
            c.holdout = [0.0, 0.1, 0.5][g.below(3) as usize];
            c.max_audience = 1 + g.below(60) as usize;
            c.explore = [0.0, 0.2][g.below(2) as usize];
            c
        })
        .collect()
}

#[test]
fn always_on_rules_caps_cooldowns_and_budgets_hold_over_30_nights() {
    let mut g = Gen(0x2545_F491_4F6C_DD1D);
    for trial in 0..25 {
        let n = 150;
        let limits = Limits {
            max_messages: 1 + g.below(3) as usize,
            cap_days: 3 + g.below(6) as i64,
            discount_cooldown_days: g.below(10) as i64,
            arbitration: if g.below(2) == 0 {
                Arbitration::Priority
            } else {
                Arbitration::ExpectedValue
            },
        };
        let campaigns = random_campaigns(&mut g);
        let mut history = History::default();
        // Every message sent, by user: (night, discounted).
        let mut sent: HashMap<i64, Vec<(i64, bool)>> = HashMap::new();
        for night in 0..30 {
            let f = random_frame(&mut g, n);
            let c = SelectionContext {
                run_day: RUN_DAY + night,
                global_control_share: 0.05,
                global_control_salt: "g".into(),
                ..ctx(limits)
            };
            let pairs: Vec<(&Campaign, &DataFrame)> = campaigns.iter().map(|c| (c, &f)).collect();
            let audiences = select_night(&pairs, &c, &history).unwrap();
            let opt_in = floats(&f, "marketing_opt_in").unwrap();
            let suppressed = floats(&f, "suppressed").unwrap();
            let mut tonight = HashSet::new();
            for (camp, a) in campaigns.iter().zip(&audiences) {
                let chosen = a.members.iter().filter(|m| !m.explore).count();
                assert!(chosen <= camp.max_audience);
                for m in &a.members {
                    let i = (m.user_id - 1) as usize;
                    assert_eq!(opt_in[i], 1.0, "trial {trial}: consent");
                    assert_eq!(suppressed[i], 0.0, "trial {trial}: suppression");
                    assert!(!c.in_global_control(m.user_id), "global control");
                    assert!(tonight.insert(m.user_id), "one campaign a night");
                    // The arm is the campaign's hash (the exploration's own for an explored
                    // user), so a holdout user is never treated.
                    let expected = if m.explore {
                        camp.explore_arm(m.user_id)
                    } else {
                        arm(&camp.salt, camp.holdout, m.user_id)
                    };
                    assert_eq!(m.arm, expected);
                    let discounted = camp.offer.discount_pct > 0.0;
                    // Both arms go to the history, as the ledger records them.
                    history
                        .by_user
                        .entry(m.user_id)
                        .or_default()
                        .push(PastMessage {
                            day: RUN_DAY + night,
                            discounted,
                        });
                    if m.arm == Arm::Treatment {
                        sent.entry(m.user_id).or_default().push((night, discounted));
                    }
                }
                if let Some(budget) = camp.offer.budget {
                    let spent = a.expected_discount_cost() * camp.offer.average_price;
                    assert!(spent <= budget + 1e-9, "budget {budget} spent {spent}");
                }
            }
        }
        for (user, msgs) in &sent {
            for &(night, discounted) in msgs {
                // Messages in the cap window ending at this one, this one included.
                let in_window = msgs
                    .iter()
                    .filter(|(d, _)| *d <= night && *d > night - limits.cap_days)
                    .count();
                assert!(
                    in_window <= limits.max_messages,
                    "trial {trial}: user {user} got {in_window} messages in {} days",
                    limits.cap_days
                );
                if discounted && limits.discount_cooldown_days > 0 {
                    let earlier = msgs.iter().any(|&(d, disc)| {
                        disc && d < night && d > night - limits.discount_cooldown_days
                    });
                    assert!(!earlier, "trial {trial}: user {user} discount in cooldown");
                }
            }
        }
    }
}

/// Rows of `frame` split into `parts` parts at random (some may be empty).
fn split(g: &mut Gen, frame: &DataFrame, parts: u64) -> Vec<DataFrame> {
    let part: Vec<u64> = (0..frame.height()).map(|_| g.below(parts)).collect();
    (0..parts)
        .map(|k| {
            let mask: BooleanChunked = part.iter().map(|&p| p == k).collect();
            frame.filter(&mask).unwrap()
        })
        .collect()
}

#[test]
fn rankings_of_parts_cut_and_merged_give_the_night_of_all_users() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    // Eligible users of every campaign, and the candidates the cuts kept of them.
    let (mut eligible, mut kept) = (0, 0);
    for trial in 0..60 {
        let f = random_frame(&mut g, 120);
        let mut campaigns = random_campaigns(&mut g);
        for camp in &mut campaigns {
            camp.max_audience = 1 + g.below(12) as usize;
        }
        // A rule, and a rule without names, which is one value for every user of a part.
        campaigns[0].eligibility = parse(
            "r.toml",
            "format_version = 1\nid = \"r\"\nkind = \"seasonal\"\nholdout = 0.0\n\
             max_audience = 1\neligibility = [\"orders_total < 3\", \"true\"]\n",
            &catalog(),
        )
        .unwrap()
        .eligibility;
        let c = SelectionContext {
            global_control_share: 0.1,
            global_control_salt: "g".into(),
            ..ctx(Limits {
                arbitration: if trial % 2 == 0 {
                    Arbitration::Priority
                } else {
                    Arbitration::ExpectedValue
                },
                ..Limits::default()
            })
        };
        let pairs: Vec<(&Campaign, &DataFrame)> = campaigns.iter().map(|c| (c, &f)).collect();
        let whole = select_night(&pairs, &c, &History::default()).unwrap();

        let k = 1 + g.below(5);
        let parts = split(&mut g, &f, k);
        // Each part cut, and the merge cut again, as a sharded night does.
        let reach = Reach::of(&campaigns, c.limits.arbitration);
        // Each part: every campaign ranked, the explorations reserved, then each cut.
        let mut by_part: Vec<Vec<Ranking>> = parts
            .iter()
            .map(|p| {
                let mut ranked: Vec<Ranking> = campaigns
                    .iter()
                    .map(|camp| rank(camp, p, &c, &History::default()).unwrap())
                    .collect();
                reserve_exploration(ranked.iter_mut());
                for (r, camp) in ranked.iter_mut().zip(&campaigns) {
                    r.cut(camp, &reach);
                }
                ranked
            })
            .collect();
        let merged: Vec<(&Campaign, Ranking)> = campaigns
            .iter()
            .enumerate()
            .map(|(k, camp)| {
                let ranked = by_part
                    .iter_mut()
                    .map(|part| std::mem::replace(&mut part[k], Ranking::merge(vec![]).unwrap()))
                    .collect();
                let mut r = Ranking::merge(ranked).unwrap();
                r.cut(camp, &reach);
                assert!(r.candidates.len() <= r.eligible.len());
                eligible += r.eligible.len();
                kept += r.candidates.len();
                (camp, r)
            })
            .collect();
        let night = arbitrate(merged, &c);
        assert_eq!(night.len(), whole.len());
        for (a, b) in night.iter().zip(&whole) {
            assert_eq!(
                a.funnel, b.funnel,
                "trial {trial}: funnel of {}",
                a.campaign_id
            );
            assert_eq!(a.members, b.members, "trial {trial}: members");
            assert_eq!(a.overlap, b.overlap, "trial {trial}: overlap");
        }
    }
    // The cuts must bite for the comparison to test them: small maximum audiences leave most
    // eligible users out of reach.
    assert!(kept * 3 < eligible * 2, "kept {kept} of {eligible}");
}

#[test]
fn exploration_messages_a_random_share_of_the_eligible_users_before_the_model_chooses() {
    let mut g = Gen(0x51_7CC1_B727_220A);
    let f = random_frame(&mut g, 20_000);
    let mut c = campaign("seasonal", "[seasonal]\nmin_uplift = 0.0\n");
    c.max_audience = 2_000;
    c.holdout = 0.2;
    c.explore = 0.1;
    let mut other = campaign_with("o", "new_buyer", 5, "");
    other.max_audience = 500;
    other.explore = 0.2;
    let night = select_night(
        &[(&c, &f), (&other, &f)],
        &no_control(),
        &History::default(),
    )
    .unwrap();
    let a = &night[0];
    let r = rank(&c, &f, &no_control(), &History::default()).unwrap();
    let salt = c.explore_salt();
    let chosen: HashSet<i64> = a
        .members
        .iter()
        .filter(|m| !m.explore)
        .map(|m| m.user_id)
        .collect();
    assert_eq!(chosen.len(), 2_000);
    let other_salt = other.explore_salt();
    let explored_elsewhere: HashSet<i64> = night[1]
        .members
        .iter()
        .filter(|m| m.explore)
        .map(|m| m.user_id)
        .collect();
    let explored: Vec<&Member> = a.members.iter().filter(|m| m.explore).collect();
    // The sample is drawn before any model chooses: every eligible user of the sample, but
    // those the other campaign (which picks first) explores; none of them is the model's.
    let sample: Vec<i64> = r
        .eligible
        .iter()
        .copied()
        .filter(|u| c.explores(&salt, *u) && !explored_elsewhere.contains(u))
        .collect();
    let mut got: Vec<i64> = explored.iter().map(|m| m.user_id).collect();
    got.sort_unstable();
    assert_eq!(got, sample);
    assert!(got.iter().all(|u| !chosen.contains(u)));
    assert!(explored_elsewhere
        .iter()
        .all(|&u| other.explores(&other_salt, u)));
    // About a tenth of the campaign's eligible users.
    let share = explored.len() as f64 / r.eligible.len() as f64;
    assert!(
        (0.07..0.13).contains(&share),
        "{share} of {}",
        r.eligible.len()
    );
    // Their own holdout, at the campaign's share, independent of the sample.
    let held = explored.iter().filter(|m| m.arm == Arm::Holdout).count() as f64;
    let held_share = held / explored.len() as f64;
    assert!((0.1..0.3).contains(&held_share), "{held_share}");
    for m in &explored {
        assert_eq!(m.arm, c.explore_arm(m.user_id));
    }
    // The forecast is the model's choice alone.
    let model_uplift: f64 = a
        .members
        .iter()
        .filter(|m| !m.explore && m.arm == Arm::Treatment)
        .map(|m| m.uplift)
        .sum();
    assert!((a.expected_conversions() - model_uplift).abs() < 1e-9);
    assert_eq!(
        a.explored(Arm::Treatment) + a.explored(Arm::Holdout),
        explored.len()
    );
}

#[test]
fn rankings_with_different_steps_do_not_merge() {
    let deal = campaign("weekly_deal", "[offer]\ndiscount_pct = 25\n");
    let seasonal = campaign("seasonal", "[seasonal]\nmin_uplift = 0.0\n");
    let a = rank(&deal, &frame(), &no_control(), &History::default()).unwrap();
    let b = rank(&seasonal, &frame(), &no_control(), &History::default()).unwrap();
    let e = Ranking::merge(vec![a, b]).unwrap_err().to_string();
    assert!(
        e.starts_with("cannot merge rankings: funnels differ"),
        "{e}"
    );
}
