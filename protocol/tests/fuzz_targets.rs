//! Every request API has a cargo-fuzz target in `protocol/fuzz`, so a new API cannot
//! ship without one. The fuzz crate is its own nightly workspace, so this reads its files.

use std::path::Path;

use strata_protocol::ApiKey;

/// `CreateTopics` -> `create_topics`.
fn snake_case(name: &str) -> String {
    let mut snake = String::new();
    for (index, letter) in name.char_indices() {
        if letter.is_ascii_uppercase() && index > 0 {
            snake.push('_');
        }
        snake.push(letter.to_ascii_lowercase());
    }
    snake
}

#[test]
fn every_request_api_has_a_fuzz_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for api in ApiKey::ALL {
        let target = format!("request_{}", snake_case(api.name()));
        let bin = format!("name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\"");
        assert!(
            manifest.contains(&bin),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        let path = fuzz.join("fuzz_targets").join(format!("{target}.rs"));
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let call = format!(
            "strata_protocol_fuzz::request(ApiKey::{}, body)",
            api.name()
        );
        assert!(
            source.contains(&call),
            "{target}.rs does not fuzz {}",
            api.name()
        );
    }
}
