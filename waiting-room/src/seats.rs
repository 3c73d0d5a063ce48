//! Seat identity, defined once: an event's seat layout (`rows` × `seats_per_row`) names
//! its seats `A-1`, `A-2`, … with rows lettered A…Z, then AA, AB, … (spreadsheet
//! columns). The admin API creates the seats from the layout; the reservation service
//! holds and sells them.

use sqlx::{Postgres, Transaction};

use crate::catalog::SeatLayout;
use crate::error::ApiError;

/// The letters of the row at `index` (0 → A, 25 → Z, 26 → AA, 701 → ZZ).
pub fn row_label(index: u32) -> String {
    let mut label = Vec::new();
    let mut rest = index + 1;
    while rest > 0 {
        let digit = (rest - 1) % 26;
        label.push(b'A' + digit as u8);
        rest = (rest - 1) / 26;
    }
    label.reverse();
    String::from_utf8(label).expect("ASCII letters")
}

pub fn seat_id(row_index: u32, seat_number: u32) -> String {
    format!("{}-{seat_number}", row_label(row_index))
}

/// Replaces an event's seats with `layout`'s, in the caller's transaction. Refused
/// (409) while any seat is held or sold: a fan's hold must never point at a seat that
/// no longer exists.
pub async fn replace_layout(
    transaction: &mut Transaction<'_, Postgres>,
    event_id: &str,
    layout: SeatLayout,
) -> Result<(), ApiError> {
    let (in_use,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM seats WHERE event_id = $1 AND state <> 'available'")
            .bind(event_id)
            .fetch_one(&mut **transaction)
            .await
            .map_err(ApiError::internal)?;
    if in_use > 0 {
        return Err(ApiError::Conflict(format!(
            "the seat layout cannot change: {in_use} seats are held or sold"
        )));
    }
    sqlx::query("DELETE FROM seats WHERE event_id = $1")
        .bind(event_id)
        .execute(&mut **transaction)
        .await
        .map_err(ApiError::internal)?;
    let rows: Vec<i32> = (0..layout.rows).map(|row| row as i32).collect();
    sqlx::query(
        "INSERT INTO seats (event_id, seat_id, row_index, seat_number)
         SELECT $1, labels.label || '-' || number, labels.row_index, number
         FROM unnest($2::int[], $3::text[]) AS labels (row_index, label)
         CROSS JOIN generate_series(1, $4) AS number",
    )
    .bind(event_id)
    .bind(&rows)
    .bind(
        rows.iter()
            .map(|row| row_label(*row as u32))
            .collect::<Vec<_>>(),
    )
    .bind(layout.seats_per_row as i32)
    .execute(&mut **transaction)
    .await
    .map_err(ApiError::internal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_lettered_like_spreadsheet_columns() {
        assert_eq!(row_label(0), "A");
        assert_eq!(row_label(25), "Z");
        assert_eq!(row_label(26), "AA");
        assert_eq!(row_label(27), "AB");
        assert_eq!(row_label(51), "AZ");
        assert_eq!(row_label(52), "BA");
        assert_eq!(row_label(701), "ZZ");
    }

    #[test]
    fn seats_are_numbered_from_one_within_their_row() {
        assert_eq!(seat_id(0, 1), "A-1");
        assert_eq!(seat_id(27, 12), "AB-12");
    }
}
