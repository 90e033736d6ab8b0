//! Money: integer counts of an asset's smallest unit, never floats.
//!
//! Every asset has [`DECIMALS`] decimals: 1 FODI is 1_000_000_000 units. Amounts and balances
//! are `i64` units in Rust and `bigint` in PostgreSQL; decimal strings ("0.5") exist only at the
//! edges, through [`parse_units`] and [`format_units`], which never round.

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
#[serde(try_from = "i64", into = "i64")]
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

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
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
