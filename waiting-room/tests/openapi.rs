//! The OpenAPI document: the checked-in copy is current, and it lists every route.

use std::path::Path;

use testkit::openapi::{assert_checked_in, operations, routes, OPERATIONS_ROUTER};

fn document() -> serde_json::Value {
    serde_json::to_value(waiting_room::openapi::document()).expect("the document is JSON")
}

#[test]
fn the_checked_in_document_is_current() {
    assert_checked_in(
        &document(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/waiting-room.json"),
        "cargo run -q -p waiting-room -- openapi > docs/openapi/waiting-room.json",
    );
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let mut registered = routes("", include_str!("../src/lib.rs"));
    registered.extend(routes("/admin", include_str!("../src/admin/mod.rs")));
    registered.extend(routes("", OPERATIONS_ROUTER));
    assert_eq!(operations(&document()), registered);
}
