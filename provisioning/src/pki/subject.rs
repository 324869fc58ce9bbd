//! Certificate subjects: what the issued institution certificate's subject
//! looks like, how a CA subject is named, and how the institution code is
//! found in (and the subject copied from) a device's CSR.
//!
//! An institution certificate issued here has the subject
//! `O=<name>, [OU=<device id>,] CN=<name> <code>, serialNumber=<code>`: the
//! code is in `serialNumber` (OID 2.5.4.5, PrintableString) and, for
//! certification bodies and agents that read it there, inside the common name
//! (see [`cpe_common::institution::CodeField`]).
//!
//! For a CSR the rule mirrors what the agent accepts: the `serialNumber`
//! attribute, when present, must be the code; otherwise the common name must
//! contain one (a run of exactly 10 digits). Both present and different is an
//! error, never a guess.

use cpe_common::institution::{InstitutionCode, SERIAL_NUMBER_OID_ARCS};
use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{DistinguishedName, DnType, DnValue};
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::pki::error::{ProvisionError, Result};

/// Organisation name used when the operator gives none.
pub const DEFAULT_INSTITUTION_NAME: &str = "Institution";

/// Most characters in a common name or organisation name (RFC 5280 upper
/// bound `ub-common-name`).
pub const MAX_NAME_CHARS: usize = 64;

/// Most characters of a device id.
pub const MAX_DEVICE_ID_CHARS: usize = 64;

/// OID arcs of the X.520 `commonName` attribute (2.5.4.3).
const COMMON_NAME_OID_ARCS: [u64; 4] = [2, 5, 4, 3];

/// The subject of an institution certificate for `code`.
pub(crate) fn institution_subject(
    code: &InstitutionCode,
    name: &str,
    device_id: Option<&str>,
) -> Result<DistinguishedName> {
    // The common name is "<name> <code>": the name leaves room for the code.
    check_name(name, MAX_NAME_CHARS - 1 - code.as_str().len())?;
    if InstitutionCode::find_in(name).is_some() {
        return Err(ProvisionError::InvalidName {
            name: name.to_owned(),
            reason: "contains a 10-digit number, which a reader could take for the institution code".into(),
        });
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, name);
    if let Some(id) = device_id {
        check_device_id(id)?;
        dn.push(DnType::OrganizationalUnitName, id);
    }
    dn.push(DnType::CommonName, format!("{name} {code}"));
    let digits = PrintableString::try_from(code.as_str()).map_err(ProvisionError::signing)?;
    dn.push(DnType::CustomDnType(SERIAL_NUMBER_OID_ARCS.to_vec()), DnValue::PrintableString(digits));
    Ok(dn)
}

/// The subject of a CA certificate: `CN=<name>`.
pub(crate) fn ca_subject(name: &str) -> Result<DistinguishedName> {
    check_name(name, MAX_NAME_CHARS)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    Ok(dn)
}

fn check_name(name: &str, max_chars: usize) -> Result<()> {
    let invalid = |reason: String| ProvisionError::InvalidName { name: name.to_owned(), reason };
    if name.trim().is_empty() {
        return Err(invalid("is empty".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("contains control characters".into()));
    }
    let chars = name.chars().count();
    if chars > max_chars {
        return Err(invalid(format!("has {chars} characters; at most {max_chars} fit in the certificate")));
    }
    Ok(())
}

fn check_device_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_DEVICE_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ProvisionError::InvalidDeviceId { id: id.to_owned() })
    }
}

fn oid_arcs(attr: &AttributeTypeAndValue<'_>) -> Option<Vec<u64>> {
    attr.attr_type().iter().map(Iterator::collect)
}

/// The institution code carried by a CSR subject (see the module rules).
pub(crate) fn code_in_subject(name: &X509Name<'_>) -> Result<InstitutionCode> {
    let mut serial_number: Option<InstitutionCode> = None;
    let mut in_common_name: Option<InstitutionCode> = None;
    for attr in name.iter_attributes() {
        let arcs = oid_arcs(attr);
        if arcs.as_deref() == Some(&SERIAL_NUMBER_OID_ARCS[..]) {
            if serial_number.is_some() {
                return Err(ProvisionError::CsrSubject {
                    detail: "more than one serialNumber attribute".into(),
                });
            }
            let value = attr
                .as_str()
                .map_err(|_| ProvisionError::BadSerialNumber { value: "<not a text value>".into() })?;
            let code = value
                .parse::<InstitutionCode>()
                .map_err(|_| ProvisionError::BadSerialNumber { value: value.to_owned() })?;
            serial_number = Some(code);
        } else if arcs.as_deref() == Some(&COMMON_NAME_OID_ARCS[..]) && in_common_name.is_none() {
            in_common_name = attr.as_str().ok().and_then(InstitutionCode::find_in);
        }
    }
    match (serial_number, in_common_name) {
        (Some(serial_number), Some(common_name)) if serial_number != common_name => {
            Err(ProvisionError::ConflictingCodes { serial_number, common_name })
        }
        (Some(code), _) | (None, Some(code)) => Ok(code),
        (None, None) => Err(ProvisionError::NoInstitutionCode),
    }
}

/// The text of an attribute value of any string type (`None`: not text).
fn attribute_text(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = attr.attr_value();
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::T61String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::BmpString => {
            let units = data.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units).collect::<std::result::Result<String, _>>().ok()
        }
        Tag::UniversalString => data
            .chunks_exact(4)
            .map(|quad| char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]])))
            .collect(),
        _ => None,
    }
}

/// Refuses a subject whose text holds a control character (NUL included) or
/// a bidirectional override ([`cpe_common::text`]): the carrier shows these
/// names and matches devices on them. Checked where a CSR is signed and
/// where a client certificate is read.
pub(crate) fn check_subject_text(name: &X509Name<'_>) -> Result<()> {
    for attr in name.iter_attributes() {
        if let Some(found) = attribute_text(attr).as_deref().and_then(cpe_common::text::first_control) {
            return Err(ProvisionError::ControlCharacter {
                attribute: attr.attr_type().to_id_string(),
                found: found.to_string(),
            });
        }
    }
    Ok(())
}

/// Copies a CSR subject attribute by attribute, keeping order and string
/// types. Multi-valued name components and repeated attribute types are
/// refused rather than silently merged, and so is text with control
/// characters ([`check_subject_text`]).
pub(crate) fn copy_subject(name: &X509Name<'_>) -> Result<DistinguishedName> {
    check_subject_text(name)?;
    let subject_error = |detail: String| ProvisionError::CsrSubject { detail };
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(subject_error("a name component with several attributes (multi-valued RDN)".into()));
        };
        let arcs = oid_arcs(attr)
            .ok_or_else(|| subject_error(format!("attribute type {} is too large", attr.attr_type())))?;
        let ty = DnType::from_oid(&arcs);
        if dn.get(&ty).is_some() {
            return Err(subject_error(format!("attribute {} appears more than once", attr.attr_type())));
        }
        dn.push(ty, dn_value(attr).map_err(subject_error)?);
    }
    Ok(dn)
}

fn dn_value(attr: &AttributeTypeAndValue<'_>) -> std::result::Result<DnValue, String> {
    let value = attr.attr_value();
    let data = value.data;
    let text =
        || std::str::from_utf8(data).map_err(|_| format!("attribute {} is not valid text", attr.attr_type()));
    let bad = |e: rcgen::Error| format!("attribute {}: {e}", attr.attr_type());
    Ok(match value.tag() {
        Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
        Tag::PrintableString => DnValue::PrintableString(PrintableString::try_from(text()?).map_err(bad)?),
        Tag::Ia5String => DnValue::Ia5String(Ia5String::try_from(text()?).map_err(bad)?),
        Tag::T61String => DnValue::TeletexString(TeletexString::try_from(text()?).map_err(bad)?),
        Tag::BmpString => DnValue::BmpString(BmpString::from_utf16be(data.to_vec()).map_err(bad)?),
        Tag::UniversalString => {
            DnValue::UniversalString(UniversalString::from_utf32be(data.to_vec()).map_err(bad)?)
        }
        other => {
            return Err(format!("attribute {} has the unsupported value type {other}", attr.attr_type()))
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::FromDer;

    fn code() -> InstitutionCode {
        "1312345678".parse().unwrap()
    }

    /// Builds a CSR with `dn` and runs `f` on its parsed subject.
    fn with_csr_subject<T>(dn: DistinguishedName, f: impl FnOnce(&X509Name<'_>) -> T) -> T {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        let csr = params.serialize_request(&key).unwrap();
        let (_, parsed) = X509CertificationRequest::from_der(csr.der()).unwrap();
        f(&parsed.certification_request_info.subject)
    }

    #[test]
    fn institution_subject_has_code_in_serial_number_and_common_name() {
        let dn = institution_subject(&code(), "さくら医院", Some("CPE-0001")).unwrap();
        assert_eq!(dn.get(&DnType::CommonName), Some(&DnValue::Utf8String("さくら医院 1312345678".into())));
        assert_eq!(dn.get(&DnType::OrganizationalUnitName), Some(&DnValue::Utf8String("CPE-0001".into())));
        let found = with_csr_subject(dn, code_in_subject).unwrap();
        assert_eq!(found, code());
    }

    #[test]
    fn bad_names_and_device_ids_are_refused() {
        for name in ["", "  ", "a\nb", "Clinic 0312345678", &"x".repeat(54)] {
            assert!(
                matches!(institution_subject(&code(), name, None), Err(ProvisionError::InvalidName { .. })),
                "{name:?}"
            );
        }
        assert!(institution_subject(&code(), &"x".repeat(53), None).is_ok());
        for id in ["", "a b", "ü", &"d".repeat(65)] {
            assert!(matches!(
                institution_subject(&code(), "Clinic", Some(id)),
                Err(ProvisionError::InvalidDeviceId { .. })
            ));
        }
        assert!(ca_subject(&"c".repeat(65)).is_err());
    }

    #[test]
    fn code_rules_for_csr_subjects() {
        let serial = DnType::CustomDnType(SERIAL_NUMBER_OID_ARCS.to_vec());
        let mut only_cn = DistinguishedName::new();
        only_cn.push(DnType::CommonName, "Clinic 1312345678");
        assert_eq!(with_csr_subject(only_cn, code_in_subject).unwrap(), code());

        let mut nothing = DistinguishedName::new();
        nothing.push(DnType::CommonName, "Clinic");
        assert!(matches!(with_csr_subject(nothing, code_in_subject), Err(ProvisionError::NoInstitutionCode)));

        let mut bad_serial = DistinguishedName::new();
        bad_serial.push(serial.clone(), "13123");
        bad_serial.push(DnType::CommonName, "Clinic 1312345678");
        assert!(matches!(
            with_csr_subject(bad_serial, code_in_subject),
            Err(ProvisionError::BadSerialNumber { value }) if value == "13123"
        ));

        let mut conflict = DistinguishedName::new();
        conflict.push(serial, "1312345678");
        conflict.push(DnType::CommonName, "Clinic 2712345678");
        assert!(matches!(
            with_csr_subject(conflict, code_in_subject),
            Err(ProvisionError::ConflictingCodes { .. })
        ));
    }

    #[test]
    fn control_characters_in_a_csr_subject_are_refused() {
        for (ty, value) in [
            (DnType::CommonName, DnValue::Utf8String("Clinic\u{0} 1312345678".into())),
            (DnType::OrganizationalUnitName, DnValue::Utf8String("main\u{7}".into())),
            (DnType::OrganizationName, DnValue::BmpString(BmpString::try_from("医院\u{202e}").unwrap())),
        ] {
            let mut dn = DistinguishedName::new();
            dn.push(ty, value.clone());
            let err = with_csr_subject(dn, copy_subject).unwrap_err();
            assert!(matches!(err, ProvisionError::ControlCharacter { .. }), "{value:?}: {err}");
            assert!(err.to_string().contains("control character U+"), "{err}");
        }
        let mut fine = DistinguishedName::new();
        fine.push(DnType::OrganizationName, DnValue::BmpString(BmpString::try_from("医院").unwrap()));
        assert!(with_csr_subject(fine, copy_subject).is_ok());
    }

    #[test]
    fn copy_keeps_order_and_string_types() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, DnValue::PrintableString("JP".try_into().unwrap()));
        dn.push(DnType::OrganizationName, "医療法人");
        dn.push(
            DnType::CustomDnType(SERIAL_NUMBER_OID_ARCS.to_vec()),
            DnValue::PrintableString("1312345678".try_into().unwrap()),
        );
        let copied = with_csr_subject(dn.clone(), copy_subject).unwrap();
        assert_eq!(copied, dn);
        assert_eq!(copied.iter().count(), 3);
    }
}
