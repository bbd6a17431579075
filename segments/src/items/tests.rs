use polars::prelude::*;

use super::*;
use crate::rules::{check, check_items, parse, Field, FieldKind};

/// Run date 2026-11-20 (day 20,412); its cutoff, in seconds.
const RUN_DAY: i64 = 20_412;
const CUTOFF: i64 = RUN_DAY * 86_400;

/// Six items: two of game 100 (a base game and its expansion), two RPGs of game 200 and 300,
/// a shooter, and a 1p item released after the others.
fn items() -> DataFrame {
    df! {
        "item_id" => [1i64, 2, 3, 4, 5, 6],
        "title" => ["base", "expansion", "rpg a", "rpg b", "shooter", "new"],
        "kind" => ["3p", "3p", "3p", "3p", "3p", "1p"],
        "publisher_id" => [7i64, 7, 8, 9, 9, 1],
        "game_id" => [100i64, 100, 200, 300, 400, 500],
        "category" => [Some("action"), Some("action"), Some("rpg"), Some("rpg"), Some("shooter"), None],
        "list_price_cents" => [5999i64, 1999, 3999, 2999, 5999, 999],
        "released_at" => [0i64, 0, 0, 0, 0, CUTOFF - 3 * 86_400],
    }
    .unwrap()
}

/// User 10 owns the base game (1) and bought RPG 3 as a gift for user 12; user 11 owns the
/// shooter and wishlisted the expansion (2) and RPG 4; user 12 wishlisted RPG 4 after the
/// cutoff; user 13 owns nothing.
fn holdings() -> Holdings {
    let purchases = df! {
        "order_id" => [1i64, 2, 3, 4],
        "user_id" => [10i64, 10, 11, 13],
        "item_id" => [1i64, 3, 5, 4],
        "purchased_at" => [CUTOFF - 100, CUTOFF - 50, CUTOFF - 10, CUTOFF + 10],
        "list_price_cents" => [5999i64, 3999, 5999, 2999],
        "paid_cents" => [5999i64, 3999, 5999, 2999],
        "is_gift" => [0i64, 1, 0, 0],
        "recipient_user_id" => [None, Some(12i64), None, None],
    }
    .unwrap();
    let wishlist = df! {
        "user_id" => [11i64, 11, 12],
        "item_id" => [2i64, 4, 4],
        "added_at" => [CUTOFF - 5, CUTOFF - 5, CUTOFF + 5],
    }
    .unwrap();
    Holdings::new(&purchases, &wishlist, CUTOFF).unwrap()
}

const USERS: [i64; 4] = [10, 11, 12, 13];

/// The users (of [`USERS`]) a rule's item predicate holds for, with `deal` as `deal_items`.
fn holders(rule: &str, deal: &[i64]) -> Vec<i64> {
    let catalog = Catalog {
        lists: vec![crate::rules::DEAL_ITEMS.into()],
        ..Catalog::default()
    };
    let checked = check(rule, &catalog).unwrap_or_else(|e| panic!("{e}"));
    let predicates = checked.item_predicates();
    assert_eq!(predicates.len(), 1, "{rule}");
    let catalogue = Catalogue::new(&items(), RUN_DAY).unwrap();
    let values = predicate_values(
        &predicates[0],
        &USERS,
        &holdings(),
        &catalogue,
        &[(crate::rules::DEAL_ITEMS, deal)],
    )
    .unwrap();
    USERS
        .iter()
        .zip(values)
        .filter(|(_, v)| *v == 1.0)
        .map(|(u, _)| *u)
        .collect()
}

#[test]
fn item_rules_read_what_each_user_owns_and_wishlisted_before_the_run_date() {
    assert_eq!(holders("owns game_id == 100", &[]), vec![10]);
    // A gift belongs to its recipient, not its buyer; user 13's order is after the cutoff.
    assert_eq!(holders(r#"owns category == "rpg""#, &[]), vec![12]);
    assert_eq!(holders("owns item in deal_items", &[3, 5]), vec![11, 12]);
    assert_eq!(holders("owns item not in deal_items", &[3, 5]), vec![10]);
    assert_eq!(holders("wishlist has item in deal_items", &[4]), vec![11]);
    assert_eq!(
        holders("wishlist has item in deal_items", &[6]),
        Vec::<i64>::new()
    );
    assert_eq!(
        holders(r#"owns (kind == "3p" and list_price >= 50)"#, &[]),
        vec![10, 11]
    );
    assert_eq!(holders("wishlist has list_price < 25", &[]), vec![11]);
    assert_eq!(
        holders("owns release_date >= run_date - 7d", &[]),
        Vec::<i64>::new()
    );
}

#[test]
fn a_rule_with_items_compiles_over_the_users_frame_and_its_item_columns() {
    let rule = "orders_total >= 1 and not owns game_id == 400";
    let catalog = Catalog {
        fields: vec![Field {
            name: "orders_total".into(),
            kind: FieldKind::Number,
            column: "orders_total".into(),
            description: String::new(),
        }],
        lists: Vec::new(),
    };
    let checked = check(rule, &catalog).unwrap();
    let catalogue = Catalogue::new(&items(), RUN_DAY).unwrap();
    let mut frame = df! {
        "user_id" => USERS,
        "orders_total" => [2.0, 1.0, 0.0, 1.0],
    }
    .unwrap();
    for p in checked.item_predicates() {
        let values = predicate_values(&p, &USERS, &holdings(), &catalogue, &[]).unwrap();
        frame
            .with_column(Column::new(p.column.into(), values))
            .unwrap();
    }
    let chosen = frame
        .lazy()
        .filter(checked.to_expr(&catalog, RUN_DAY))
        .collect()
        .unwrap();
    // User 11 owns the shooter (game 400); user 12 has no orders of their own.
    let ids: Vec<i64> = chosen
        .column("user_id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(ids, vec![10, 13]);
}

#[test]
fn where_conditions_select_from_the_catalogue_and_ids_are_checked() {
    let catalogue = Catalogue::new(&items(), RUN_DAY).unwrap();
    let of = |text: &str| {
        catalogue
            .matching(&check_items(text).unwrap(), &[])
            .unwrap()
    };
    assert_eq!(of(r#"category == "rpg""#), vec![3, 4]);
    assert_eq!(of(r#"kind == "1p" or publisher_id == 7"#), vec![1, 2, 6]);
    assert_eq!(of("release_date > run_date - 7d"), vec![6]);
    assert_eq!(of("true"), vec![1, 2, 3, 4, 5, 6]);
    // A category the catalogue does not have matches nothing; a missing one, no comparison.
    assert_eq!(of(r#"category == "racing""#), Vec::<i64>::new());
    assert_eq!(of("category is null"), vec![6]);
    assert_eq!(
        catalogue
            .resolve("deal", &CampaignItems::Ids(vec![4, 3]))
            .unwrap(),
        vec![4, 3]
    );
    let e = catalogue
        .resolve("deal", &CampaignItems::Ids(vec![4, 99, 98]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "campaign deal: [items] ids has 99, 98 not in the source's items"
    );
}

#[test]
fn each_user_is_shown_the_item_they_most_likely_want_and_never_one_they_own() {
    let catalogue = Catalogue::new(&items(), RUN_DAY).unwrap();
    let h = holdings();
    let wanted = |list: &[i64]| wanted(&USERS, list, &h, &catalogue);
    // 10 owns the base game: its expansion before the list's first; 11 wishlisted 4 (and 2,
    // but 2 comes later in the list); 12 received an RPG: the other RPG; 13 the list's first.
    assert_eq!(
        wanted(&[5, 4, 2, 6]),
        vec![Some(2), Some(4), Some(4), Some(5)]
    );
    // Ties go to the list's order: 11 wishlisted 2 and 4, of no game or category 11 owns.
    assert_eq!(wanted(&[2, 4]), vec![Some(2), Some(2), Some(4), Some(2)]);
    // Nobody is shown what they own; a user who owns every listed item gets none.
    assert_eq!(wanted(&[1]), vec![None, Some(1), Some(1), Some(1)]);
    assert_eq!(wanted(&[3, 1]), vec![Some(3), Some(3), Some(1), Some(3)]);
}

#[test]
fn item_rules_are_checked_against_the_item_catalogue() {
    let err = |rule: &str, lists: &[&str]| {
        let catalog = Catalog {
            lists: lists.iter().map(|l| l.to_string()).collect(),
            ..Catalog::default()
        };
        check(rule, &catalog).unwrap_err().message
    };
    assert_eq!(
        err(r#"owns categroy == "rpg""#, &[]),
        "unknown name of an item \"categroy\", did you mean \"category\"?"
    );
    assert_eq!(
        err("wishlist has item in deal_items", &[]),
        "unknown list \"deal_items\": give the campaign an [items] table"
    );
    assert_eq!(
        err("owns item in deal_itmes", &["deal_items"]),
        "unknown list \"deal_itmes\", did you mean \"deal_items\"?"
    );
    assert_eq!(
        err("owns game_id in deal_items", &["deal_items"]),
        "a list of items holds item ids: write `item in deal_items`"
    );
    assert!(err("item in deal_items", &["deal_items"]).contains("inside an item condition"));
    assert!(err("owns (owns item == 1)", &[]).contains("cannot hold another"));
    assert_eq!(
        err(r#"owns list_price == "cheap""#, &[]),
        "cannot compare a number with text"
    );
    assert!(parse("wishlist has").is_err());
    assert!(check_items("item in deal_items").is_err());
    // `wishlist` alone is still a name, as any other.
    assert_eq!(err("wishlist > 3", &[]), "unknown name \"wishlist\"");
}
