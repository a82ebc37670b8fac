//! The provider catalog: the built-in provider files plus the user's (`connections.providers_dir`),
//! whose files add providers or replace built-in ones with the same id.

use std::collections::BTreeMap;
use std::path::Path;

use switchboard_core::providers::{ProviderSpec, builtin};

/// Providers by id.
pub type Catalog = BTreeMap<String, ProviderSpec>;

/// The built-in catalog with the files of `dir` (every `*.toml`) laid over it. A file that does
/// not parse, or two files declaring one id, is an error naming the file.
pub fn load(dir: Option<&Path>) -> Result<Catalog, String> {
    let mut catalog = builtin().map_err(|e| e.to_string())?;
    let Some(dir) = dir else {
        return Ok(catalog);
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "connections.providers_dir `{}` cannot be read: {e}",
            dir.display()
        )
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("provider file `{name}` cannot be read: {e}"))?;
        let spec = ProviderSpec::from_toml(&name, &text).map_err(|e| e.to_string())?;
        if let Some(other) = seen.insert(spec.id.clone(), name.clone()) {
            return Err(format!(
                "provider `{}` is defined by both `{other}` and `{name}`",
                spec.id
            ));
        }
        catalog.insert(spec.id.clone(), spec);
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_files_add_and_replace_providers() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("github.toml"),
            "id = \"github\"\nname = \"GitHub Enterprise\"\nbase_url = \"https://ghe.example/api/v3\"\nauth_modes = [\"bearer\"]\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("acme.toml"),
            "id = \"acme\"\nname = \"Acme\"\nbase_url = \"http://127.0.0.1:9/{tenant}\"\nauth_modes = [\"api_key\"]\n[api_key]\nheader = \"x-api-key\"\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let catalog = load(Some(dir.path())).expect("load");
        assert_eq!(catalog["github"].name, "GitHub Enterprise");
        assert_eq!(catalog["acme"].base_url, "http://127.0.0.1:9/{tenant}");
        assert!(catalog.contains_key("stripe"), "built-ins stay");

        std::fs::write(dir.path().join("broken.toml"), "id = 1").expect("write");
        let error = load(Some(dir.path())).expect_err("broken file");
        assert!(error.contains("broken.toml"), "{error}");
        let error = load(Some(&dir.path().join("missing"))).expect_err("missing dir");
        assert!(error.contains("providers_dir"), "{error}");
    }
}
