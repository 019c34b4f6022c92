//! Splitting a measurement's hot batches by UTC day without a value per row.
//!
//! Hot rows arrive nearly in time order, so a batch is a few runs of rows of
//! one day: [`split_by_day`] walks the time column once comparing each value
//! with the current day's bounds, and cuts zero-copy slices at the
//! boundaries. Only a batch that turns out to be scattered (more runs than
//! one per [`SCATTERED_RUN_ROWS`] rows) is regrouped with a filter per day.

use std::collections::BTreeMap;

use arrow_array::types::TimestampNanosecondType;
use arrow_array::{Array, BooleanArray, RecordBatch};

use crate::{Error, Result};

pub const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// Below this many rows per run on average, a batch is regrouped by filter.
pub const SCATTERED_RUN_ROWS: usize = 64;

/// Days since 1970-01-01 (UTC) of a nanosecond timestamp.
pub fn day_of(ns: i64) -> i64 {
    ns.div_euclid(NANOS_PER_DAY)
}

/// (year, month, day) of a day number (days since 1970-01-01).
pub fn civil(day: i64) -> (i64, u32, u32) {
    use chrono::Datelike;
    // 719,163 days from 0001-01-01 (chrono's day 1) to 1970-01-01. Any day of an
    // i64 nanosecond timestamp (±292 years) is well inside chrono's range.
    let date = i32::try_from(day + 719_163)
        .ok()
        .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
        .expect("the day of an i64 nanosecond timestamp is a valid date");
    (i64::from(date.year()), date.month(), date.day())
}

/// The hive partition directory DuckLake uses for `year(time), month(time), day(time)`.
pub fn partition_dir(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("year={y}/month={m}/day={d}")
}

/// Runs of one day in `times`: (day, start, len).
fn runs(times: &[i64]) -> Vec<(i64, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < times.len() {
        let day = day_of(times[i]);
        let lo = day * NANOS_PER_DAY;
        let hi = lo.saturating_add(NANOS_PER_DAY);
        let mut j = i + 1;
        while j < times.len() && times[j] >= lo && times[j] < hi {
            j += 1;
        }
        out.push((day, i, j - i));
        i = j;
    }
    out
}

/// Splits `batches` (column `time_col` is the nanosecond time, never NULL)
/// into slices per day, in batch order within each day.
pub fn split_by_day(batches: &[RecordBatch], time_col: usize) -> Result<BTreeMap<i64, Vec<RecordBatch>>> {
    let mut out: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        if b.num_rows() == 0 {
            continue;
        }
        let times = b
            .column(time_col)
            .as_any()
            .downcast_ref::<arrow_array::PrimitiveArray<TimestampNanosecondType>>()
            .ok_or_else(|| Error::Invalid("the time column is not TIMESTAMP_NS".into()))?;
        let values = times.values();
        let r = runs(values);
        if r.len() == 1 {
            out.entry(r[0].0).or_default().push(b.clone());
        } else if r.len() * SCATTERED_RUN_ROWS <= b.num_rows() {
            for (day, start, len) in r {
                out.entry(day).or_default().push(b.slice(start, len));
            }
        } else {
            let mut days: Vec<i64> = r.iter().map(|x| x.0).collect();
            days.sort_unstable();
            days.dedup();
            for day in days {
                let keep: BooleanArray = values.iter().map(|t| Some(day_of(*t) == day)).collect();
                out.entry(day).or_default().push(arrow::compute::filter_record_batch(b, &keep)?);
            }
        }
        debug_assert!(times.null_count() == 0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arrow_array::{Int64Array, TimestampNanosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn batch(times: Vec<i64>) -> RecordBatch {
        let n = times.len() as i64;
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
                Field::new("v", DataType::Int64, true),
            ])),
            vec![Arc::new(TimestampNanosecondArray::from(times)), Arc::new(Int64Array::from((0..n).collect::<Vec<_>>()))],
        )
        .unwrap()
    }

    fn rows(m: &BTreeMap<i64, Vec<RecordBatch>>, day: i64) -> Vec<i64> {
        m[&day].iter().flat_map(|b| b.column(1).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()).collect()
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_724), (2024, 1, 2));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(partition_dir(19_724), "year=2024/month=1/day=2");
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(NANOS_PER_DAY), 1);
    }

    #[test]
    fn ordered_rows_split_at_day_boundaries_and_scattered_rows_by_filter() {
        let d = NANOS_PER_DAY;
        // Ordered across a midnight: two slices.
        let mut t: Vec<i64> = (0..200).map(|i| d - 100 + i).collect();
        let m = split_by_day(&[batch(t.clone())], 0).unwrap();
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(rows(&m, 0), (0..100).collect::<Vec<_>>());
        assert_eq!(rows(&m, 1), (100..200).collect::<Vec<_>>());
        // Alternating days every row: regrouped, order kept within a day.
        t = (0..200).map(|i| if i % 2 == 0 { 5 } else { 3 * d + 5 }).collect();
        let m = split_by_day(&[batch(t)], 0).unwrap();
        assert_eq!(rows(&m, 0), (0..200).step_by(2).collect::<Vec<_>>());
        assert_eq!(rows(&m, 3), (1..200).step_by(2).collect::<Vec<_>>());
        // Negative times (before 1970) and empty batches.
        let m = split_by_day(&[batch(vec![-1, -2, 0]), batch(vec![])], 0).unwrap();
        assert_eq!(rows(&m, -1), vec![0, 1]);
        assert_eq!(rows(&m, 0), vec![2]);
    }
}
