//! Seat identity, defined once: an event's seat layout (`rows` × `seats_per_row`) names
//! its seats `A-1`, `A-2`, … with rows lettered A…Z, then AA, AB, … (spreadsheet
//! columns). The admin API creates the seats from the layout; the reservation service
//! holds and sells them.

use serde::{Deserialize, Serialize};

/// Most rows a layout may have (A … ZZ).
pub const MAX_ROWS: u32 = 702;
/// Most seats in one row.
pub const MAX_SEATS_PER_ROW: u32 = 1_000;
/// Longest seat id a request may name (the longest real one is `ZZ-1000`).
pub const MAX_SEAT_ID_LEN: usize = 16;

/// Where a seat stands (the `seats.state` column).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SeatState {
    Available,
    Held,
    Sold,
}

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
        assert_eq!(row_label(MAX_ROWS - 1), "ZZ");
    }

    #[test]
    fn the_longest_real_seat_id_fits_the_limit() {
        let longest = format!("{}-{MAX_SEATS_PER_ROW}", row_label(MAX_ROWS - 1));
        assert_eq!(longest, "ZZ-1000");
        assert!(longest.len() <= MAX_SEAT_ID_LEN);
    }
}
