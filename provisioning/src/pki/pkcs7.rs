//! The certificates of a PKCS#7 / CMS "certs-only" message (RFC 5652
//! SignedData without signers), as an EST server returns them (RFC 7030
//! §4.2.3, `application/pkcs7-mime; smime-type=certs-only`).
//!
//! The message comes from the network, so this is a strict, bounded DER
//! reader that never panics: definite lengths only, at most
//! [`MAX_CERTIFICATES`] certificates, every certificate parsed as X.509
//! before it is returned. Only the certificates are read; the rest of the
//! SignedData (digest algorithms, encapsulated content, CRLs, signer infos)
//! is skipped over, since a certs-only message carries no signature to check
//! (the certificates themselves are checked against the trust anchors by
//! whoever uses them).

use x509_parser::prelude::{FromDer, X509Certificate};

/// Most certificates accepted in one message (a leaf and its chain).
pub const MAX_CERTIFICATES: usize = 16;

/// Largest message accepted, in bytes.
pub const MAX_PKCS7_BYTES: usize = 256 * 1024;

/// DER of the OID 1.2.840.113549.1.7.2 (id-signedData), without tag and length.
const SIGNED_DATA_OID: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;

/// Why a message is not a usable certs-only PKCS#7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PKCS#7 certs-only message: {0}")]
pub struct Pkcs7Error(String);

fn bad(detail: impl Into<String>) -> Pkcs7Error {
    Pkcs7Error(detail.into())
}

/// One DER element: its tag and contents.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    /// The whole element (tag, length, contents).
    raw: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and the rest.
fn element(input: &[u8]) -> Result<(Element<'_>, &[u8]), Pkcs7Error> {
    let (&tag, after_tag) = input.split_first().ok_or_else(|| bad("truncated (expected an element)"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("multi-byte tags are not used in PKCS#7"));
    }
    let (&first, after_len) = after_tag.split_first().ok_or_else(|| bad("truncated length"))?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), after_len)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 {
            return Err(bad("indefinite length (BER) is not DER"));
        }
        if n > 4 || after_len.len() < n {
            return Err(bad("length field too long or truncated"));
        }
        let (digits, body) = after_len.split_at(n);
        (digits.iter().fold(0_usize, |acc, &d| (acc << 8) | usize::from(d)), body)
    };
    if body.len() < len {
        return Err(bad(format!("element of {len} bytes but only {} left", body.len())));
    }
    let (contents, rest) = body.split_at(len);
    let header = input.len() - body.len();
    Ok((Element { tag, contents, raw: &input[..header + len] }, rest))
}

/// Reads an element that must have `tag`.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Element<'a>, &'a [u8]), Pkcs7Error> {
    let (e, rest) = element(input)?;
    if e.tag == tag {
        Ok((e, rest))
    } else {
        Err(bad(format!("expected {what} (tag {tag:#04x}), found tag {:#04x}", e.tag)))
    }
}

/// The DER certificates of the certs-only message `der`, in message order.
/// Each one is a complete X.509 certificate.
pub fn certificates(der: &[u8]) -> Result<Vec<Vec<u8>>, Pkcs7Error> {
    if der.len() > MAX_PKCS7_BYTES {
        return Err(bad(format!("{} bytes, more than {MAX_PKCS7_BYTES}", der.len())));
    }
    let (content_info, trailing) = expect(der, SEQUENCE, "ContentInfo")?;
    if !trailing.is_empty() {
        return Err(bad("trailing bytes after the ContentInfo"));
    }
    let (oid, rest) = expect(content_info.contents, OID, "content type")?;
    if oid.contents != SIGNED_DATA_OID {
        return Err(bad("content type is not signedData"));
    }
    let (explicit, _) = expect(rest, CONTEXT_0, "[0] content")?;
    let (signed_data, _) = expect(explicit.contents, SEQUENCE, "SignedData")?;
    let (_version, rest) = expect(signed_data.contents, INTEGER, "version")?;
    let (_digests, rest) = expect(rest, SET, "digestAlgorithms")?;
    let (_encapsulated, rest) = expect(rest, SEQUENCE, "encapContentInfo")?;
    let (set, _) = element(rest)?;
    if set.tag != CONTEXT_0 {
        return Err(bad("the message holds no certificates"));
    }
    let mut certs = Vec::new();
    let mut input = set.contents;
    while !input.is_empty() {
        let (cert, rest) =
            expect(input, SEQUENCE, "Certificate (other certificate formats are not accepted)")?;
        if certs.len() == MAX_CERTIFICATES {
            return Err(bad(format!("more than {MAX_CERTIFICATES} certificates")));
        }
        match X509Certificate::from_der(cert.raw) {
            Ok(([], _)) => certs.push(cert.raw.to_vec()),
            Ok(_) => return Err(bad("trailing bytes inside a certificate")),
            Err(e) => return Err(bad(format!("certificate {} unreadable: {e}", certs.len() + 1))),
        }
        input = rest;
    }
    if certs.is_empty() {
        return Err(bad("the message holds no certificates"));
    }
    Ok(certs)
}

/// A minimal DER encoder of certs-only messages, for tests of this parser
/// and of its users.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod encode {
    use super::{CONTEXT_0, INTEGER, OID, SEQUENCE, SET, SIGNED_DATA_OID};

    pub(crate) fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = contents.len();
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap());
        } else {
            let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
            out.push(0x80 | u8::try_from(bytes.len()).unwrap());
            out.extend(bytes);
        }
        out.extend_from_slice(contents);
        out
    }

    pub(crate) fn certs_only(certs: &[Vec<u8>]) -> Vec<u8> {
        let signed_data = [
            tlv(INTEGER, &[1]),
            tlv(SET, &[]),
            tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01])),
            tlv(CONTEXT_0, &certs.concat()),
            tlv(SET, &[]),
        ]
        .concat();
        tlv(SEQUENCE, &[tlv(OID, &SIGNED_DATA_OID), tlv(CONTEXT_0, &tlv(SEQUENCE, &signed_data))].concat())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::encode::{certs_only, tlv};
    use super::*;

    fn cert(name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn reads_every_certificate_in_order() {
        let (a, b) = (cert("a.example"), cert("b.example"));
        assert_eq!(certificates(&certs_only(&[a.clone(), b.clone()])).unwrap(), vec![a, b]);
    }

    #[test]
    fn reads_what_openssl_crl2pkcs7_writes() {
        // `openssl crl2pkcs7 -nocrl -certfile cert.pem -outform DER` (the fuzz seed).
        let message = include_bytes!("../../../fuzz/seeds/est_answer/one-cert.p7b");
        let certs = certificates(message).unwrap();
        assert_eq!(certs.len(), 1);
        let (_, cert) = X509Certificate::from_der(&certs[0]).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=seed");
    }

    #[test]
    fn refuses_what_is_not_certs_only() {
        let a = cert("a.example");
        let msg = certs_only(std::slice::from_ref(&a));
        assert!(certificates(&certs_only(&[])).unwrap_err().0.contains("no certificates"));
        let mut trailing = msg.clone();
        trailing.push(0);
        assert!(certificates(&trailing).unwrap_err().0.contains("trailing"));
        for cut in [0, 1, 5, msg.len() / 2, msg.len() - 1] {
            assert!(certificates(&msg[..cut]).is_err(), "cut at {cut}");
        }
        let mut not_signed_data = msg.clone();
        let at = not_signed_data.windows(9).position(|w| w == SIGNED_DATA_OID).unwrap();
        not_signed_data[at + 8] = 0x03;
        assert!(certificates(&not_signed_data).unwrap_err().0.contains("signedData"));
        let garbage = certs_only(&[tlv(SEQUENCE, &[1, 2, 3])]);
        assert!(certificates(&garbage).unwrap_err().0.contains("unreadable"));
        let many: Vec<Vec<u8>> = std::iter::repeat_n(a, MAX_CERTIFICATES + 1).collect();
        assert!(certificates(&certs_only(&many)).unwrap_err().0.contains("more than"));
        let indefinite = [0x30, 0x80, 0x00, 0x00];
        assert!(certificates(&indefinite).unwrap_err().0.contains("indefinite"));
    }
}
