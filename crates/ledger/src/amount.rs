//! Money: integer counts of an asset's smallest unit, never floats.
//!
//! Every asset has [`DECIMALS`] decimals: 1 FODI is 1_000_000_000 units. Amounts and balances
//! are `i64` units in Rust and `bigint` in PostgreSQL; decimal strings ("0.5") exist only at the
//! edges, through [`parse_units`] and [`format_units`], which never round.
//!
//! In JSON, units travel as strings of digits (`"1500000000"`): a JavaScript client reads every
//! number as a double, which rounds integers above 2^53 (about 9 million FODI in units).
//! [`Amount`] and the balances of [`crate::Wallet`] and [`crate::Statement`] serialise that way
//! ([`units_text`]); they deserialise from such a string or from a JSON integer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::LedgerError;

/// Decimal places of every asset: amounts are counts of 10^-9 of a token.
pub const DECIMALS: u32 = 9;

/// Units in one whole token (10^9).
pub const UNITS_PER_TOKEN: i64 = 1_000_000_000;

/// A positive amount of units, as transfers carry: at least 1, at most `i64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[1-9][0-9]{0,18}$"))]
#[serde(try_from = "units_text::Units", into = "units_text::Units")]
pub struct Amount(i64);

impl Amount {
    /// An amount of `units`; zero and negative amounts are refused.
    pub fn new(units: i64) -> Result<Self, LedgerError> {
        if units > 0 {
            Ok(Self(units))
        } else {
            Err(LedgerError::InvalidAmount { units })
        }
    }

    /// Whole tokens, e.g. `Amount::tokens(5)` is 5 FODI.
    pub fn tokens(tokens: i64) -> Result<Self, LedgerError> {
        let units = tokens
            .checked_mul(UNITS_PER_TOKEN)
            .ok_or(LedgerError::AmountOutOfRange)?;
        Self::new(units)
    }

    /// Parses a decimal string ("12.5") into units; see [`parse_units`].
    pub fn parse_decimal(text: &str) -> Result<Self, LedgerError> {
        Self::new(parse_units(text)?)
    }

    pub fn units(self) -> i64 {
        self.0
    }

    /// The amount as a decimal string without trailing zeros ("12.5").
    pub fn to_decimal(self) -> String {
        format_units(self.0)
    }
}

impl TryFrom<i64> for Amount {
    type Error = LedgerError;
    fn try_from(units: i64) -> Result<Self, Self::Error> {
        Self::new(units)
    }
}

impl From<Amount> for i64 {
    fn from(amount: Amount) -> Self {
        amount.0
    }
}

impl TryFrom<units_text::Units> for Amount {
    type Error = LedgerError;
    fn try_from(units: units_text::Units) -> Result<Self, Self::Error> {
        Self::new(units.value().map_err(|input| LedgerError::InvalidDecimal {
            input,
            reason: "units are an integer".into(),
        })?)
    }
}

impl From<Amount> for units_text::Units {
    fn from(amount: Amount) -> Self {
        units_text::Units::Text(amount.0.to_string())
    }
}

/// Serde for `i64` units as JSON strings of digits (`#[serde(with = "units_text")]`), read back
/// from such a string or a JSON integer; [`units_text::option`] for `Option<i64>`.
pub mod units_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Units as they arrive: text (what this crate writes) or a number (older writers).
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum Units {
        Text(String),
        Number(i64),
    }

    impl Units {
        /// The units, or the text that is not an `i64`.
        pub fn value(self) -> Result<i64, String> {
            match self {
                Units::Number(units) => Ok(units),
                Units::Text(text) => text.parse().map_err(|_| text),
            }
        }
    }

    pub fn serialize<S: Serializer>(units: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(units)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        Units::deserialize(deserializer)?.value().map_err(|text| {
            serde::de::Error::custom(format!("{text:?} is not an integer of units"))
        })
    }

    /// The same for `Option<i64>` (`null` stays `null`).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            units: &Option<i64>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match units {
                Some(units) => serializer.collect_str(units),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<i64>, D::Error> {
            Option::<super::Units>::deserialize(deserializer)?
                .map(|units| {
                    units.value().map_err(|text| {
                        serde::de::Error::custom(format!("{text:?} is not an integer of units"))
                    })
                })
                .transpose()
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
    }
}

/// A positive amount of tokens as a decimal string (`"12.5"`), as a client sends one:
/// at most [`DECIMALS`] decimals and at most 9223372036.854775807 (`i64::MAX` units). It
/// deserialises as any text and is read by [`TokenAmount::amount`], so that a malformed
/// amount is a typed [`LedgerError`] rather than a serde message. The OpenAPI pattern states
/// the same bounds (the api-server's tests hold the served pattern to [`parse_units`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        pattern = r"^(?:0*(?:[1-9][0-9]{0,8}(?:\.[0-9]{1,9})?|(?:[1-8][0-9]{9}|9[0-1][0-9]{8}|92[0-1][0-9]{7}|922[0-2][0-9]{6}|9223[0-2][0-9]{5}|92233[0-6][0-9]{4}|922337[0-1][0-9]{3}|92233720[0-2][0-9]|922337203[0-5])(?:\.[0-9]{1,9})?|9223372036(?:\.(?:[0-7][0-9]{0,8}|8[0-4][0-9]{0,7}|85[0-3][0-9]{0,6}|854[0-6][0-9]{0,5}|8547[0-6][0-9]{0,4}|85477[0-4][0-9]{0,3}|854775[0-7][0-9]{0,2}|85477580[0-6]|8|85|854|8547|85477|854775|8547758|85477580|854775807))?)|0*\.(?:[1-9][0-9]{0,8}|0[1-9][0-9]{0,7}|00[1-9][0-9]{0,6}|000[1-9][0-9]{0,5}|0000[1-9][0-9]{0,4}|00000[1-9][0-9]{0,3}|000000[1-9][0-9]{0,2}|0000000[1-9][0-9]{0,1}|00000000[1-9]))$"
    )
)]
#[serde(transparent)]
pub struct TokenAmount(pub String);

impl TokenAmount {
    /// The amount the text names; see [`parse_units`].
    pub fn amount(&self) -> Result<Amount, LedgerError> {
        Amount::parse_decimal(&self.0)
    }
}

/// Parses a non-negative or negative decimal string of at most [`DECIMALS`] fraction digits
/// into units: "1" is 1_000_000_000, "0.000000001" is 1, "-2.5" is -2_500_000_000.
///
/// Refused: empty input, signs other than a leading '-', exponents, spaces, more than nine
/// fraction digits (they would have to be rounded), and values outside `i64`.
pub fn parse_units(text: &str) -> Result<i64, LedgerError> {
    let invalid = |reason: &str| LedgerError::InvalidDecimal {
        input: text.to_owned(),
        reason: reason.to_owned(),
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(invalid("no digits"));
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("only digits and one '.' are allowed"));
    }
    if digits.contains('.') && fraction.is_empty() {
        return Err(invalid("a '.' must be followed by digits"));
    }
    if fraction.len() > DECIMALS as usize {
        return Err(invalid("more than 9 decimal places"));
    }
    let out_of_range = || LedgerError::AmountOutOfRange;
    let whole_units = if whole.is_empty() {
        0i128
    } else {
        whole
            .parse::<i128>()
            .map_err(|_| out_of_range())?
            .checked_mul(i128::from(UNITS_PER_TOKEN))
            .ok_or_else(out_of_range)?
    };
    let fraction_units = if fraction.is_empty() {
        0i128
    } else {
        let padding = 10i128.pow(DECIMALS - fraction.len() as u32);
        fraction.parse::<i128>().map_err(|_| out_of_range())? * padding
    };
    let magnitude = whole_units + fraction_units;
    let units = if negative { -magnitude } else { magnitude };
    i64::try_from(units).map_err(|_| out_of_range())
}

/// Formats units as a decimal string without trailing zeros: 1_500_000_000 is "1.5",
/// -1 is "-0.000000001", 0 is "0".
pub fn format_units(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let magnitude = units.unsigned_abs();
    let per_token = UNITS_PER_TOKEN.unsigned_abs();
    let whole = magnitude / per_token;
    let fraction = magnitude % per_token;
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{fraction:09}");
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// An asset code: 2 to 16 characters, an upper-case letter then upper-case letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct Asset(String);

impl Asset {
    /// The platform's token.
    pub fn fodi() -> Self {
        Self("FODI".to_owned())
    }

    pub fn new(code: impl Into<String>) -> Result<Self, LedgerError> {
        let code = code.into();
        let mut chars = code.chars();
        let valid = matches!(chars.next(), Some('A'..='Z'))
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && (2..=16).contains(&code.len());
        if valid {
            Ok(Self(code))
        } else {
            Err(LedgerError::InvalidAsset { code })
        }
    }

    pub fn code(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Asset {
    type Error = LedgerError;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::new(code)
    }
}

impl From<Asset> for String {
    fn from(asset: Asset) -> Self {
        asset.0
    }
}

impl FromStr for Asset {
    type Err = LedgerError;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::new(code)
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn units_travel_as_strings_and_lose_nothing_above_2_pow_53() {
        let large = Amount::new(9_007_199_254_740_993).unwrap();
        let json = serde_json::to_value(large).unwrap();
        assert_eq!(json, serde_json::json!("9007199254740993"));
        assert_eq!(serde_json::from_value::<Amount>(json).unwrap(), large);
        // Read back from a number too (what earlier versions wrote), never from a fraction.
        assert_eq!(
            serde_json::from_value::<Amount>(serde_json::json!(5)).unwrap(),
            Amount::new(5).unwrap()
        );
        for refused in [
            serde_json::json!("1.5"),
            serde_json::json!("0"),
            serde_json::json!(1.5),
        ] {
            assert!(
                serde_json::from_value::<Amount>(refused.clone()).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn parses_decimal_strings_exactly() {
        assert_eq!(parse_units("1").unwrap(), 1_000_000_000);
        assert_eq!(parse_units("0.5").unwrap(), 500_000_000);
        assert_eq!(parse_units(".5").unwrap(), 500_000_000);
        assert_eq!(parse_units("0.000000001").unwrap(), 1);
        assert_eq!(parse_units("-2.25").unwrap(), -2_250_000_000);
        assert_eq!(parse_units("9223372036.854775807").unwrap(), i64::MAX);
    }

    #[test]
    fn refuses_what_would_need_rounding_or_guessing() {
        for bad in [
            "",
            "-",
            ".",
            "1.",
            "1e9",
            " 1",
            "1 ",
            "+1",
            "0.0000000001",
            "1,5",
            "--1",
            "0x10",
            "١",
        ] {
            assert!(parse_units(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(
            parse_units("9223372036.854775808"),
            Err(LedgerError::AmountOutOfRange)
        ));
        assert!(matches!(
            parse_units("99999999999999999999999"),
            Err(LedgerError::AmountOutOfRange)
        ));
    }

    #[test]
    fn formats_without_trailing_zeros() {
        assert_eq!(format_units(1_500_000_000), "1.5");
        assert_eq!(format_units(0), "0");
        assert_eq!(format_units(-1), "-0.000000001");
        assert_eq!(format_units(i64::MIN), "-9223372036.854775808");
        assert_eq!(Amount::tokens(3).unwrap().to_string(), "3");
    }

    #[test]
    fn amounts_are_positive_and_overflow_is_an_error() {
        assert!(matches!(
            Amount::new(0),
            Err(LedgerError::InvalidAmount { units: 0 })
        ));
        assert!(Amount::new(-5).is_err());
        assert!(matches!(
            Amount::tokens(i64::MAX / 10),
            Err(LedgerError::AmountOutOfRange)
        ));
        assert!(serde_json::from_str::<Amount>("0").is_err());
        assert_eq!(serde_json::from_str::<Amount>("42").unwrap().units(), 42);
    }

    #[test]
    fn asset_codes_are_validated() {
        assert_eq!(Asset::new("FODI").unwrap(), Asset::fodi());
        assert!(Asset::new("USD2").is_ok());
        for bad in ["F", "fodi", "2FA", "FODI-X", "ABCDEFGHIJKLMNOPQ"] {
            assert!(Asset::new(bad).is_err(), "{bad} was accepted");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_is_the_identity(units in any::<i64>()) {
            prop_assert_eq!(parse_units(&format_units(units)).unwrap(), units);
        }
    }
}
