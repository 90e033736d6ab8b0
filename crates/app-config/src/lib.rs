//! Layered configuration for the binaries: built-in defaults, then a TOML file, then
//! `FODI__SECTION__KEY` environment variables (`FODI__DATABASE__URL` sets `database.url`).
//!
//! Architecture invariant: only binaries depend on this crate. Library crates never read
//! configuration or the environment; binaries load it here and pass typed structs down.

use std::path::Path;

use config::{Config, Environment, File};
use serde::de::DeserializeOwned;

pub use config::ConfigError;

/// Name of the configuration file read from the working directory when none is given.
pub const DEFAULT_FILE: &str = "fodi.toml";

/// Loads `T` from its `Default` (through `#[serde(default)]`), then `file`, then the
/// environment. `file` must exist when given; without it, `./fodi.toml` is read if present.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_with_environment(file, Environment::with_prefix("FODI"))
}

fn load_with_environment<T: DeserializeOwned>(
    file: Option<&Path>,
    environment: Environment,
) -> Result<T, ConfigError> {
    let file_source = match file {
        Some(path) => File::from(path).required(true),
        None => File::from(Path::new(DEFAULT_FILE)).required(false),
    };
    Config::builder()
        .add_source(file_source)
        .add_source(
            environment
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?
        .try_deserialize()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Settings {
        server: Server,
    }

    #[derive(Debug, Deserialize)]
    #[serde(default)]
    struct Server {
        host: String,
        port: u16,
    }

    impl Default for Server {
        fn default() -> Self {
            Self {
                host: "127.0.0.1".into(),
                port: 8080,
            }
        }
    }

    fn environment(pairs: &[(&str, &str)]) -> Environment {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Environment::with_prefix("FODI").source(Some(map))
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fodi.toml");
        std::fs::write(&file, "[server]\nhost = \"0.0.0.0\"\nport = 9000\n").unwrap();

        let from_file: Settings = load_with_environment(Some(&file), environment(&[])).unwrap();
        assert_eq!(
            (from_file.server.host.as_str(), from_file.server.port),
            ("0.0.0.0", 9000)
        );

        let overridden: Settings =
            load_with_environment(Some(&file), environment(&[("FODI__SERVER__PORT", "9100")]))
                .unwrap();
        assert_eq!(
            (overridden.server.host.as_str(), overridden.server.port),
            ("0.0.0.0", 9100)
        );
    }

    #[test]
    fn defaults_apply_without_a_file() {
        // The tests run in the crate's folder, which has no fodi.toml.
        let settings: Settings = load_with_environment(None, environment(&[])).unwrap();
        assert_eq!(
            (settings.server.host.as_str(), settings.server.port),
            ("127.0.0.1", 8080)
        );
    }

    #[test]
    fn an_explicit_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.toml");
        let error =
            load_with_environment::<Settings>(Some(&missing), environment(&[])).unwrap_err();
        assert!(error.to_string().contains("absent.toml"), "{error}");
    }
}
