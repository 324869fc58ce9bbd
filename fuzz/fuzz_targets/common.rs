//! Shared by the import targets: the whole decision after parsing, so the
//! fuzzer reaches the validator (x509 parsing, key loading, chain building).

use cpe_agent::identity::material::Material;
use cpe_agent::identity::validate::{validate, Policy};
use cpe_common::institution::{CodeField, InstitutionCode};
use time::OffsetDateTime;

pub fn check(material: Material) {
    let Ok(code) = "1312345678".parse::<InstitutionCode>() else { return };
    // Anchors taken from the input itself: any self-issued certificate in it.
    let anchors = material.certs.clone();
    let policy = Policy {
        trust_anchors: &anchors,
        institution_code: &code,
        code_field: CodeField::SerialNumber,
        build_time: OffsetDateTime::UNIX_EPOCH,
    };
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let _ = validate(material, None, &policy, now);
}
