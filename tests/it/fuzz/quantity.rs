//! `Quantity::parse`.

use super::*;

/// Parses, and on success checks that the printed form parses back to the
/// same value and prints the same.
fn parse_round_trips(text: &str) -> Result<(), TestCaseError> {
    let Ok(quantity) = Quantity::parse(text) else {
        return Ok(());
    };
    let printed = quantity.to_string();
    let back = Quantity::parse(&printed).map_err(|error| {
        TestCaseError::fail(format!("{text:?} printed as {printed:?}: {error}"))
    })?;
    prop_assert_eq!(back, quantity, "{:?} → {:?}", text, printed);
    prop_assert_eq!(back.to_string(), printed);
    Ok(())
}

/// Text shaped like a quantity: signs, digits, points, exponents, suffixes
/// and whitespace in plausible and implausible places.
fn quantity_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ +-]?[+-]?[0-9]{0,30}(\\.[0-9]{0,30})?(\\.)?([eE][+-]?[0-9]{0,12}|[numkMGTPE]|[KMGTPE]i|[eE]|i|[kK][iI])?[ \t\n]?",
        "[0-9.+eEnumkKMGTPi \t-]{0,40}",
        "[0-9]{1,3}[eE][+-]?(2147483647|2147483648|4294967296|[0-9]{5,12})",
    ]
}

#[test]
fn quantity_parse_never_panics_on_any_unicode_and_round_trips() {
    fuzz("quantity_parse_any_unicode", 512, any::<String>(), |text| {
        parse_round_trips(&text)
    });
}

#[test]
fn quantity_parse_never_panics_on_quantity_shaped_text_and_round_trips() {
    fuzz(
        "quantity_parse_quantity_shaped",
        512,
        quantity_like(),
        |text| parse_round_trips(&text),
    );
}
