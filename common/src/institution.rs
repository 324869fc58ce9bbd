//! The institution code and the certificate subject convention.
//!
//! Every medical institution joining the network has a 10-digit code. The
//! institution certificate (機関認証) carries it in its subject: by default in
//! the `serialNumber` attribute (OID 2.5.4.5), or, for certification bodies
//! that put it there, inside the common name. The agent refuses a certificate
//! whose code differs from the one it was provisioned with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Number of digits of an institution code.
pub const INSTITUTION_CODE_LEN: usize = 10;

/// OID arcs of the X.520 `serialNumber` attribute (2.5.4.5).
pub const SERIAL_NUMBER_OID_ARCS: [u64; 4] = [2, 5, 4, 5];

/// A validated 10-digit institution code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstitutionCode(String);

/// Why a string is not an institution code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("institution code {given:?} is not {INSTITUTION_CODE_LEN} ASCII digits; use the code printed on the institution's registration (e.g. 1312345678)")]
pub struct InvalidInstitutionCode {
    /// The rejected input, as given.
    pub given: String,
}

impl InstitutionCode {
    /// The code as its 10 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Finds the first run of exactly [`INSTITUTION_CODE_LEN`] digits in
    /// `text` (not part of a longer digit run), e.g. in a common name such as
    /// `"Clinic 1312345678"`.
    pub fn find_in(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            if bytes[start].is_ascii_digit() {
                let end = bytes[start..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(bytes.len(), |n| start + n);
                if end - start == INSTITUTION_CODE_LEN {
                    return Some(Self(text[start..end].to_owned()));
                }
                start = end;
            } else {
                start += 1;
            }
        }
        None
    }
}

impl FromStr for InstitutionCode {
    type Err = InvalidInstitutionCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == INSTITUTION_CODE_LEN && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidInstitutionCode { given: s.to_owned() })
        }
    }
}

impl TryFrom<String> for InstitutionCode {
    type Error = InvalidInstitutionCode;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<InstitutionCode> for String {
    fn from(code: InstitutionCode) -> Self {
        code.0
    }
}

impl fmt::Display for InstitutionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Device name used when a certificate names no device (no OU attribute).
pub const DEFAULT_DEVICE: &str = "main";

/// The device id both sides use: `<institution code>/<device>`, where the
/// device is the certificate's OU (one institution may have several units)
/// or [`DEFAULT_DEVICE`].
pub fn device_id(code: &InstitutionCode, unit: Option<&str>) -> String {
    let unit = unit.map(str::trim).filter(|u| !u.is_empty()).unwrap_or(DEFAULT_DEVICE);
    format!("{code}/{unit}")
}

/// Which subject attribute of the certificate carries the institution code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeField {
    /// `serialNumber` (2.5.4.5); when absent, a common name containing the code.
    #[default]
    SerialNumber,
    /// Only the common name, which must contain the code.
    CommonName,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_ten_digits() {
        assert!("1312345678".parse::<InstitutionCode>().is_ok());
        for bad in ["", "131234567", "13123456789", "13123456a8", "１３１２３４５６７８"] {
            let err = bad.parse::<InstitutionCode>().unwrap_err();
            assert_eq!(err.given, bad);
        }
    }

    #[test]
    fn device_id_uses_unit_or_main() {
        let code: InstitutionCode = "1312345678".parse().unwrap();
        assert_eq!(device_id(&code, Some("cpe-01")), "1312345678/cpe-01");
        assert_eq!(device_id(&code, Some(" ")), "1312345678/main");
        assert_eq!(device_id(&code, None), "1312345678/main");
    }

    #[test]
    fn finds_code_in_common_name_but_not_inside_longer_numbers() {
        let found = InstitutionCode::find_in("Clinic 1312345678 Tokyo").map(|c| c.0);
        assert_eq!(found.as_deref(), Some("1312345678"));
        assert_eq!(InstitutionCode::find_in("id 131234567890"), None);
        assert_eq!(InstitutionCode::find_in("12 1312345678"), Some(InstitutionCode("1312345678".into())));
        assert_eq!(InstitutionCode::find_in("no digits"), None);
    }
}
