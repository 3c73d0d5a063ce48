//! Checks of a service's OpenAPI document: the checked-in copy is the generated one, and
//! every route the service's router registers is in it.
//!
//! The routes are read from the router's source (`.route("/path", get(..).put(..))`
//! calls), so a route added without its annotation fails the test rather than going
//! undocumented. The operational routes come from the platform's own router source.
//! The contract's endpoint index (`docs/api.md`) is read too, so the prose contract and
//! the generated document cannot drift apart.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// The platform's router: `/healthz`, `/readyz` and `/metrics` on every service.
pub const OPERATIONS_ROUTER: &str = include_str!("../../../waiting-room/platform/src/http.rs");

/// (method, path), e.g. `("GET", "/v1/events")`.
pub type Route = (String, String);

/// Fails unless the file at `checked_in` holds `generated`; says how to regenerate it.
pub fn assert_checked_in(generated: &Value, checked_in: &Path, regenerate: &str) {
    let text = std::fs::read_to_string(checked_in).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; write it with `{regenerate}`",
            checked_in.display()
        )
    });
    let stored: Value = serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; regenerate it with `{regenerate}`",
            checked_in.display()
        )
    });
    assert!(
        stored == *generated,
        "{} differs from the document the code generates: regenerate it with `{regenerate}`",
        checked_in.display()
    );
}

/// The operations of an OpenAPI document.
pub fn operations(document: &Value) -> BTreeSet<Route> {
    document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .filter(|(method, _)| METHODS.contains(&method.as_str()))
                .map(move |(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

/// The routes registered by `.route(..)` calls in `source`, under `prefix` (a router
/// nested at `/admin` has the prefix `/admin`; its `/` is `/admin`).
pub fn routes(prefix: &str, source: &str) -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(") {
        let arguments = &rest[start + ".route(".len()..];
        let arguments = &arguments[..closing_paren(arguments)];
        let path = arguments
            .split('"')
            .nth(1)
            .expect("a route's path is its first string literal");
        let path = match (prefix, path) {
            ("", path) => path.to_owned(),
            (prefix, "/") => prefix.to_owned(),
            (prefix, path) => format!("{prefix}{path}"),
        };
        let methods: Vec<&str> = METHODS
            .into_iter()
            .filter(|method| calls(arguments, method))
            .collect();
        assert!(
            !methods.is_empty(),
            "no method in the route {path}: {arguments}"
        );
        for method in methods {
            routes.insert((method.to_uppercase(), path.clone()));
        }
        rest = &rest[start + 1..];
    }
    routes
}

/// The operations `docs/api.md`'s endpoint index lists for `service`: rows whose service
/// column names it (or says `all three`), every backticked method by every backticked
/// path.
pub fn contract_index(api_md: &str, service: &str) -> BTreeSet<Route> {
    let index = api_md
        .split("## Endpoint index")
        .nth(1)
        .expect("docs/api.md has an endpoint index")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let mut listed = BTreeSet::new();
    for row in index.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (methods, paths, services) = (cells[1], cells[2], cells[3]);
        let ours =
            services == "all three" || services.split(',').any(|named| named.trim() == service);
        if !ours {
            continue;
        }
        for method in backticked(methods) {
            for path in backticked(paths) {
                listed.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    listed
}

/// The `backticked` parts of a table cell.
fn backticked(cell: &str) -> impl Iterator<Item = &str> {
    cell.split('`').skip(1).step_by(2)
}

/// Where the parenthesis closing the text's first open one is.
fn closing_paren(text: &str) -> usize {
    let mut depth = 1;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' if depth == 1 => return index,
            ')' => depth -= 1,
            _ => {}
        }
    }
    panic!("unbalanced parentheses in a route: {text}")
}

/// Whether `text` calls a function named `name` (`get(..)`, `.put(..)`,
/// `platform::openapi::get(..)`), not merely names one (`reports::get`, `get_event`).
fn calls(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(index, _)| {
        let before = text[..index].chars().next_back();
        let after = text[index + name.len()..].chars().next();
        after == Some('(') && !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_methods_and_nesting() {
        let source = r#"Router::new()
            .route("/", get(console::page))
            .route(
                "/events/{event_id}/report",
                get(reports::get).post(reports::recompute),
            )
            .route("/doc", platform::openapi::get(&document(1)))"#;
        let found: Vec<Route> = routes("/admin", source).into_iter().collect();
        let expected = [
            ("GET", "/admin"),
            ("GET", "/admin/doc"),
            ("GET", "/admin/events/{event_id}/report"),
            ("POST", "/admin/events/{event_id}/report"),
        ]
        .map(|(method, path)| (method.to_owned(), path.to_owned()));
        assert_eq!(found, expected);
    }

    #[test]
    fn reads_the_contracts_endpoint_index_by_service() {
        let api_md = "# API\n\n## Endpoint index\n\n| method | path | service | auth |\n\
            | --- | --- | --- | --- |\n\
            | `POST`, `GET` | `/a` (SSE) | one | none |\n\
            | `GET` | `/b`, `/c` (pages) | two | none |\n\
            | `GET` | `/healthz` | all three | none |\n\
            | `GET` | `/openapi.json` | one, two | none |\n\n## Next\n| `GET` | `/x` | one | |\n";
        let one: Vec<Route> = contract_index(api_md, "one").into_iter().collect();
        let expected = [
            ("GET", "/a"),
            ("GET", "/healthz"),
            ("GET", "/openapi.json"),
            ("POST", "/a"),
        ]
        .map(|(method, path)| (method.to_owned(), path.to_owned()));
        assert_eq!(one, expected);
        assert_eq!(contract_index(api_md, "two").len(), 4);
    }

    #[test]
    fn the_platform_serves_three_operational_routes() {
        let paths: BTreeSet<String> = routes("", OPERATIONS_ROUTER)
            .into_iter()
            .map(|(_, path)| path)
            .collect();
        assert_eq!(
            paths,
            BTreeSet::from(["/healthz", "/metrics", "/readyz"].map(String::from))
        );
    }
}
