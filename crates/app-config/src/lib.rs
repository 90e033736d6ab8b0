//! Layered configuration for the binaries: built-in defaults, then a TOML file, then
//! `FODI__SECTION__KEY` environment variables (`FODI__DATABASE__URL` sets `database.url`).
//!
//! A list setting (`auth.api_tokens`) is an array in the file and a comma-separated string in
//! the environment (`FODI__AUTH__API_TOKENS=one,two`): fields declare it with
//! `#[serde(deserialize_with = "app_config::list")]`.
//!
//! Architecture invariant: only binaries depend on this crate. Library crates never read
//! configuration or the environment; binaries load it here and pass typed structs down.

pub mod tls;

pub use tls::{TlsError, TlsFiles};

use std::fmt;
use std::path::Path;

use config::{Config, Environment, File};
use serde::Deserializer;
use serde::de::{DeserializeOwned, SeqAccess, Visitor};

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
                // Values stay strings: typed fields parse them as they deserialize, and a list
                // (or a token made of digits) keeps exactly the text that was set.
                .try_parsing(false),
        )
        .build()?
        .try_deserialize()
}

/// A list of strings from an array (the file), or from one string of comma-separated items
/// (an environment variable: the environment has no arrays), so no item can contain a comma.
/// Items are trimmed and empty ones dropped: an empty variable gives an empty list. A lone
/// number or boolean in the file is one item.
pub fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_any(ListVisitor)
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an array of strings or a comma-separated string")
    }

    fn visit_str<E: serde::de::Error>(self, items: &str) -> Result<Self::Value, E> {
        Ok(items
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn visit_i64<E: serde::de::Error>(self, item: i64) -> Result<Self::Value, E> {
        Ok(vec![item.to_string()])
    }

    fn visit_u64<E: serde::de::Error>(self, item: u64) -> Result<Self::Value, E> {
        Ok(vec![item.to_string()])
    }

    fn visit_f64<E: serde::de::Error>(self, item: f64) -> Result<Self::Value, E> {
        Ok(vec![item.to_string()])
    }

    fn visit_bool<E: serde::de::Error>(self, item: bool) -> Result<Self::Value, E> {
        Ok(vec![item.to_string()])
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::with_capacity(items.size_hint().unwrap_or(0));
        while let Some(item) = items.next_element::<String>()? {
            list.push(item);
        }
        Ok(list)
    }
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
        auth: Auth,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Auth {
        #[serde(deserialize_with = "list")]
        tokens: Vec<String>,
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

    #[test]
    fn a_list_is_an_array_in_the_file_and_comma_separated_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fodi.toml");
        std::fs::write(
            &file,
            "[auth]\ntokens = [\"from-file-1\", \"from-file-2\"]\n",
        )
        .unwrap();
        let tokens = |pairs: &[(&str, &str)]| {
            load_with_environment::<Settings>(Some(&file), environment(pairs))
                .unwrap()
                .auth
                .tokens
        };

        assert_eq!(tokens(&[]), ["from-file-1", "from-file-2"]);
        assert_eq!(
            tokens(&[("FODI__AUTH__TOKENS", "first-token, second-token,")]),
            ["first-token", "second-token"]
        );
        assert_eq!(tokens(&[("FODI__AUTH__TOKENS", "only-one")]), ["only-one"]);
        // Digits, a sign and leading zeros are kept as set, whatever their length.
        for token in ["12345678901234567890123", "+0012345678901234567", "TRUE"] {
            assert_eq!(tokens(&[("FODI__AUTH__TOKENS", token)]), [token]);
        }
        assert!(tokens(&[("FODI__AUTH__TOKENS", "")]).is_empty());
    }
}
