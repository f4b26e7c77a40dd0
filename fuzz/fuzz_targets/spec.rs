//! The spec loader and validator on arbitrary input: never a panic, and a spec it accepts has
//! exactly one main and unique names.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = sitecar_config::load_str(text, &sitecar_config::LoadOptions::default()) {
        assert_eq!(spec.containers.iter().filter(|c| c.is_main).count(), 1, "one main");
        let mut names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), spec.containers.len(), "unique names");
        // The exports of an accepted spec never panic either.
        let _ = sitecar_config::export::azure_cli(&spec);
        let _ = sitecar_config::export::kubernetes(&spec);
    }
});
