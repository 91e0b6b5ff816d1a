//! Recipient numbers: parsed and normalised to E.164 with libphonenumber's metadata
//! (the `phonenumber` crate). A national number (`0170 1234567`) needs
//! `http.default_region`; with `http.require_mobile` a number the metadata classifies
//! as unable to take SMS (fixed-line only, toll-free, premium, shared-cost, UAN,
//! voicemail, short code, emergency) is refused.

use super::{ApiError, ApiSettings};
use phonenumber::{Mode, Type};

/// Longest input worth parsing (E.164 is at most 16 characters; room for spaces).
const MAX_INPUT: usize = 40;

fn invalid(raw: &str, why: &str) -> ApiError {
    ApiError::field(
        "to",
        "invalid_number",
        format!("{raw:?} is not a valid phone number: {why}"),
    )
}

/// Parses without judging the number's type; `None` if it is no number at all.
fn parse(raw: &str, settings: &ApiSettings) -> Result<phonenumber::PhoneNumber, ApiError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(ApiError::field("to", "missing", "to is empty"));
    }
    if s.len() > MAX_INPUT
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || " +-()./".contains(c))
    {
        return Err(invalid(
            raw,
            "only digits, spaces and + - ( ) . / are allowed",
        ));
    }
    let international = s.starts_with('+') || s.starts_with("00");
    let s = match s.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => s.to_owned(),
    };
    if !international && settings.default_region.is_none() {
        return Err(invalid(
            raw,
            "give it in international form (+49…); national numbers need http.default_region",
        ));
    }
    let region = if international {
        None
    } else {
        settings.default_region
    };
    // The parser has panicked on odd inputs in the past: a client must never be able to
    // take a worker down, so a panic is a refusal.
    let parsed = std::panic::catch_unwind(|| phonenumber::parse(region, &s))
        .map_err(|_| invalid(raw, "unparseable"))?;
    parsed.map_err(|e| invalid(raw, &e.to_string()))
}

/// E.164 for a recipient, or 400 naming `to`.
pub(crate) fn normalise(raw: &str, settings: &ApiSettings) -> Result<String, ApiError> {
    let n = parse(raw, settings)?;
    let valid = std::panic::catch_unwind(|| n.is_valid()).unwrap_or(false);
    if !valid {
        return Err(invalid(
            raw,
            "no such number in its country's numbering plan",
        ));
    }
    if settings.require_mobile {
        let kind = std::panic::catch_unwind(|| n.number_type(&phonenumber::metadata::DATABASE))
            .unwrap_or(Type::Unknown);
        if matches!(
            kind,
            Type::FixedLine
                | Type::TollFree
                | Type::PremiumRate
                | Type::SharedCost
                | Type::Uan
                | Type::Voicemail
                | Type::ShortCode
                | Type::Emergency
                | Type::StandardRate
                | Type::Carrier
                | Type::NoInternational
        ) {
            return Err(ApiError::field(
                "to",
                "not_mobile",
                format!(
                    "{raw:?} is a {} number, which cannot receive SMS (http.require_mobile)",
                    format!("{kind:?}").to_lowercase()
                ),
            ));
        }
    }
    Ok(n.format().mode(Mode::E164).to_string())
}

/// E.164 for a filter (`GET /v1/messages?to=`): parsed, not judged.
pub(crate) fn normalise_lenient(raw: &str, settings: &ApiSettings) -> Result<String, ApiError> {
    let n = parse(raw, settings)?;
    Ok(n.format().mode(Mode::E164).to_string())
}
