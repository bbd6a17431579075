//! Items in audiences: what item-aware rules (`owns …`, `wishlist has …`) and a campaign's
//! `[items]` read of the source, and the item of a campaign's list each user most likely wants.
//!
//! Pure: the catalogue, the purchases and the wishlist come in as frames (those of the contract,
//! `sql/queries/`), and values come out per user, in the order of the users given. A user's
//! values read only the catalogue and the user's own rows (their purchases as buyer or gift
//! recipient, their wishlist), which every shard holds whole for its users: a shard gets the
//! values the whole source gives them.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;

use crate::rules::{item_catalog, list_column, Catalog, ItemCondition, ItemPredicate, Relation};
use crate::{Result, SegmentError};

/// The column of a campaign's candidate frame that holds, per user, the item of the campaign's
/// list to put in front of them (null when they own every one).
pub const WANTED_ITEM_COLUMN: &str = "wanted_item";

/// The most items an `[items] ids` list may hold.
pub const MAX_ITEMS: usize = 10_000;

/// The items a campaign is about (`[items]`), as validated.
#[derive(Debug, Clone, PartialEq)]
pub enum CampaignItems {
    /// These items, the most wanted first.
    Ids(Vec<i64>),
    /// The catalogue's items that meet a condition, by ascending id.
    Where(ItemCondition),
}

/// The catalogue as item conditions read it: one row per item, with the item catalogue's
/// columns ([`item_catalog`]), text as codes of the catalogue's own values.
#[derive(Debug)]
pub struct Catalogue {
    frame: DataFrame,
    catalog: Catalog,
    run_day: i64,
    /// Item id → its row.
    row: HashMap<i64, usize>,
    ids: Vec<i64>,
    game: Vec<Option<i64>>,
    category: Vec<Option<u32>>,
}

impl Catalogue {
    /// The catalogue of `items` (the contract's `items` table) for a run on day `run_day`.
    pub fn new(items: &DataFrame, run_day: i64) -> Result<Catalogue> {
        let ints = |name: &str| -> Result<Vec<Option<i64>>> {
            Ok(items
                .column(name)?
                .cast(&DataType::Int64)?
                .i64()?
                .iter()
                .collect())
        };
        // Text values as indexes into the sorted distinct values: the codes rules compile to.
        let text = |name: &str| -> Result<(Vec<Option<u32>>, Vec<String>)> {
            let values: Vec<Option<String>> = items
                .column(name)?
                .cast(&DataType::String)?
                .str()?
                .iter()
                .map(|v| v.map(str::to_string))
                .collect();
            let mut levels: Vec<String> = values.iter().flatten().cloned().collect();
            levels.sort();
            levels.dedup();
            let codes = values
                .iter()
                .map(|v| {
                    v.as_ref()
                        .and_then(|v| levels.binary_search(v).ok())
                        .map(|p| p as u32)
                })
                .collect();
            Ok((codes, levels))
        };
        let ids: Vec<i64> = ints("item_id")?
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| SegmentError::Items("a row has a NULL item_id".into()))?;
        let game = ints("game_id")?;
        let (category, category_levels) = text("category")?;
        let (kind, kind_levels) = text("kind")?;
        let code = |c: &[Option<u32>]| -> Vec<Option<f64>> {
            c.iter().map(|v| v.map(f64::from)).collect()
        };
        let seconds_per_day = 86_400;
        let frame = DataFrame::new(
            ids.len(),
            vec![
                Column::new("item".into(), &ids),
                Column::new("game_id".into(), &game),
                Column::new("publisher_id".into(), ints("publisher_id")?),
                Column::new("category".into(), code(&category)),
                Column::new("kind".into(), code(&kind)),
                Column::new(
                    "list_price".into(),
                    ints("list_price_cents")?
                        .iter()
                        .map(|c| c.map(|c| c as f64 / 100.0))
                        .collect::<Vec<_>>(),
                ),
                Column::new(
                    "days_since_release".into(),
                    ints("released_at")?
                        .iter()
                        .map(|t| t.map(|t| (run_day - t.div_euclid(seconds_per_day)) as f64))
                        .collect::<Vec<_>>(),
                ),
            ],
        )?;
        Ok(Catalogue {
            row: ids.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
            frame,
            catalog: item_catalog(category_levels, kind_levels),
            run_day,
            ids,
            game,
            category,
        })
    }

    /// The ids of the catalogue's items that meet `condition`, ascending; `lists` are the
    /// named item lists it may test (`item in deal_items`).
    pub fn matching(
        &self,
        condition: &ItemCondition,
        lists: &[(&str, &[i64])],
    ) -> Result<Vec<i64>> {
        let mut frame = self.frame.clone();
        for (name, ids) in lists {
            let members: HashSet<i64> = ids.iter().copied().collect();
            let flags: Vec<f64> = self
                .ids
                .iter()
                .map(|id| f64::from(u8::from(members.contains(id))))
                .collect();
            frame.with_column(Column::new(list_column(name).into(), flags))?;
        }
        // `with_column` broadcasts a condition without names (`true`) to every item.
        let mask = frame
            .lazy()
            .with_column(
                condition
                    .to_expr(&self.catalog, self.run_day)
                    .fill_null(lit(false))
                    .alias("meets"),
            )
            .select([col("meets")])
            .collect()?;
        let meets = mask.column("meets")?.bool()?;
        let mut out: Vec<i64> = self
            .ids
            .iter()
            .zip(meets.iter())
            .filter(|(_, m)| m.unwrap_or(false))
            .map(|(&id, _)| id)
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The ids of `items` not in the catalogue, in the order given.
    pub fn unknown(&self, items: &[i64]) -> Vec<i64> {
        items
            .iter()
            .filter(|id| !self.row.contains_key(id))
            .copied()
            .collect()
    }

    /// A campaign's items: the listed ids in their order, or the catalogue's items that meet
    /// the condition. An id the catalogue lacks, or a condition no item meets, is an error.
    pub fn resolve(&self, campaign: &str, items: &CampaignItems) -> Result<Vec<i64>> {
        match items {
            CampaignItems::Ids(ids) => {
                let unknown = self.unknown(ids);
                if unknown.is_empty() {
                    Ok(ids.clone())
                } else {
                    Err(SegmentError::Selection {
                        campaign: campaign.to_string(),
                        why: format!(
                            "[items] ids has {} not in the source's items",
                            list_of(&unknown)
                        ),
                    })
                }
            }
            CampaignItems::Where(condition) => {
                let ids = self.matching(condition, &[])?;
                if ids.is_empty() {
                    return Err(SegmentError::Selection {
                        campaign: campaign.to_string(),
                        why: format!(
                            "[items] where {:?} matches no item of the source's catalogue",
                            condition.text
                        ),
                    });
                }
                Ok(ids)
            }
        }
    }
}

/// `1, 2, 3` or `1, 2, 3 and 7 more`.
pub fn list_of(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(5).map(i64::to_string).collect();
    match ids.len() {
        n if n > 5 => format!("{} and {} more", shown.join(", "), n - 5),
        _ => shown.join(", "),
    }
}

/// The items each of a set of users holds, before the run date: owned (bought for themselves,
/// or received as a gift) and wishlisted. Pairs sorted by user, 16 bytes each.
#[derive(Debug)]
pub struct Holdings {
    owned: Vec<(i64, i64)>,
    wished: Vec<(i64, i64)>,
}

impl Holdings {
    /// The holdings in `purchases` and `wishlist` (the contract's tables) of events before
    /// `cutoff` (UTC Unix seconds). A gift belongs to its recipient, not to its buyer.
    pub fn new(purchases: &DataFrame, wishlist: &DataFrame, cutoff: i64) -> Result<Holdings> {
        let ints = |f: &DataFrame, name: &str| -> Result<Vec<Option<i64>>> {
            Ok(f.column(name)?
                .cast(&DataType::Int64)?
                .i64()?
                .iter()
                .collect())
        };
        let (buyer, item, at, gift, recipient) = (
            ints(purchases, "user_id")?,
            ints(purchases, "item_id")?,
            ints(purchases, "purchased_at")?,
            ints(purchases, "is_gift")?,
            ints(purchases, "recipient_user_id")?,
        );
        let mut owned: Vec<(i64, i64)> = (0..buyer.len())
            .filter(|&i| at[i].is_some_and(|t| t < cutoff))
            .filter_map(|i| {
                let owner = if gift[i] == Some(1) {
                    recipient[i]
                } else {
                    buyer[i]
                };
                Some((owner?, item[i]?))
            })
            .collect();
        let (user, item, at) = (
            ints(wishlist, "user_id")?,
            ints(wishlist, "item_id")?,
            ints(wishlist, "added_at")?,
        );
        let mut wished: Vec<(i64, i64)> = (0..user.len())
            .filter(|&i| at[i].is_some_and(|t| t < cutoff))
            .filter_map(|i| Some((user[i]?, item[i]?)))
            .collect();
        for pairs in [&mut owned, &mut wished] {
            pairs.sort_unstable();
            pairs.dedup();
        }
        Ok(Holdings { owned, wished })
    }

    /// The items `user` holds by `relation`, ascending.
    fn of(&self, user: i64, relation: Relation) -> impl Iterator<Item = i64> + '_ {
        let pairs = match relation {
            Relation::Owns => &self.owned,
            Relation::Wishlist => &self.wished,
        };
        let start = pairs.partition_point(|&(u, _)| u < user);
        pairs[start..]
            .iter()
            .take_while(move |&&(u, _)| u == user)
            .map(|&(_, item)| item)
    }
}

/// The column of an item predicate for `users`: 1 when the user holds, by the predicate's
/// relation, an item that meets its condition, else 0. `lists` are the named item lists.
pub fn predicate_values(
    predicate: &ItemPredicate,
    users: &[i64],
    holdings: &Holdings,
    catalogue: &Catalogue,
    lists: &[(&str, &[i64])],
) -> Result<Vec<f64>> {
    let meets: HashSet<i64> = catalogue
        .matching(&predicate.condition, lists)?
        .into_iter()
        .collect();
    Ok(users
        .iter()
        .map(|&u| {
            let holds = holdings
                .of(u, predicate.relation)
                .any(|item| meets.contains(&item));
            f64::from(u8::from(holds))
        })
        .collect())
}

/// For each of `users`, the item of `items` (a campaign's list, the most wanted first) to put
/// in front of them, never one they own: one on their wishlist; else one of a game they own
/// (an expansion, an edition); else one of the category they bought most (then the next);
/// else the list's first. Ties go to the list's order. `None` when they own every item.
pub fn wanted(
    users: &[i64],
    items: &[i64],
    holdings: &Holdings,
    catalogue: &Catalogue,
) -> Vec<Option<i64>> {
    // Per listed item: its position, game and category.
    let position: HashMap<i64, usize> = items
        .iter()
        .enumerate()
        .rev()
        .map(|(p, &id)| (id, p))
        .collect();
    let about = |id: i64| catalogue.row.get(&id).copied();
    let game_of = |id: i64| about(id).and_then(|r| catalogue.game[r]);
    let category_of = |id: i64| about(id).and_then(|r| catalogue.category[r]);
    let mut by_game: HashMap<i64, Vec<usize>> = HashMap::new();
    let mut by_category: HashMap<u32, Vec<usize>> = HashMap::new();
    for (p, &id) in items.iter().enumerate() {
        if let Some(g) = game_of(id) {
            by_game.entry(g).or_default().push(p);
        }
        if let Some(c) = category_of(id) {
            by_category.entry(c).or_default().push(p);
        }
    }
    // One user after another, in buffers kept between users: this runs for every user of a
    // shard, and each user holds a handful of items.
    let (mut owned, mut games, mut bought) = (Vec::new(), Vec::new(), Vec::new());
    let mut categories: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(users.len());
    for &u in users {
        // Ascending: the holdings are sorted by (user, item).
        owned.clear();
        owned.extend(holdings.of(u, Relation::Owns));
        games.clear();
        games.extend(owned.iter().filter_map(|&i| game_of(i)));
        games.sort_unstable();
        games.dedup();
        // (category, items bought in it), the most bought first.
        categories.clear();
        categories.extend(owned.iter().filter_map(|&i| category_of(i)));
        categories.sort_unstable();
        bought.clear();
        for &c in &categories {
            match bought.last_mut() {
                Some((last, n)) if *last == c => *n += 1,
                _ => bought.push((c, 1usize)),
            }
        }
        bought.sort_unstable_by_key(|&(c, n)| (std::cmp::Reverse(n), c));
        let free = |p: &usize| owned.binary_search(&items[*p]).is_err();
        let affinity = |p: usize| {
            let id = items[p];
            (
                game_of(id).is_some_and(|g| games.binary_search(&g).is_ok()),
                category_of(id).map_or(0, |c| {
                    bought.iter().find(|(b, _)| *b == c).map_or(0, |(_, n)| *n)
                }),
                std::cmp::Reverse(p),
            )
        };
        let wished = holdings
            .of(u, Relation::Wishlist)
            .filter_map(|i| position.get(&i).copied())
            .filter(free)
            .max_by_key(|&p| affinity(p));
        let of_owned_game = || {
            games
                .iter()
                .filter_map(|g| by_game.get(g))
                .flatten()
                .copied()
                .filter(free)
                .max_by_key(|&p| affinity(p))
        };
        let of_category = || {
            bought
                .iter()
                .filter_map(|(c, _)| by_category.get(c))
                .find_map(|ps| ps.iter().copied().find(free))
        };
        let first = || (0..items.len()).find(free);
        out.push(
            wished
                .or_else(of_owned_game)
                .or_else(of_category)
                .or_else(first)
                .map(|p| items[p]),
        );
    }
    out
}

#[cfg(test)]
mod tests;
