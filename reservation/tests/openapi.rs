//! The OpenAPI document: the checked-in copy is current, it lists every route, and the
//! contract's endpoint index (docs/api.md) lists the same operations.

use std::path::Path;

use testkit::openapi::{assert_checked_in, contract_index, operations, routes, OPERATIONS_ROUTER};

fn document() -> serde_json::Value {
    serde_json::to_value(reservation::openapi::document()).expect("the document is JSON")
}

#[test]
fn the_checked_in_document_is_current() {
    assert_checked_in(
        &document(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/reservation.json"),
        "cargo run -q -p reservation -- openapi > docs/openapi/reservation.json",
    );
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let mut registered = routes("", include_str!("../src/lib.rs"));
    registered.extend(routes("", OPERATIONS_ROUTER));
    assert_eq!(operations(&document()), registered);
}

#[test]
fn the_contract_lists_the_same_operations() {
    let api_md = include_str!("../../docs/api.md");
    assert_eq!(
        contract_index(api_md, "reservation"),
        operations(&document()),
        "docs/api.md's endpoint index and the OpenAPI document disagree"
    );
}
