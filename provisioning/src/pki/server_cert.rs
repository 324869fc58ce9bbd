//! The carrier server's own TLS certificate, signed by a CA the agents are
//! configured to trust (`carrier_ca` in the agent configuration). For demos
//! and tests the same test CA signs it; in production the carrier uses its
//! own server PKI.

use rcgen::{DistinguishedName, DnType};

use crate::pki::ca::{CertificationBody, LeafPurpose};
use crate::pki::encoding::{pem_encode, PRIVATE_KEY_TAG};
use crate::pki::error::Result;
use crate::pki::keys::KeySource;
use crate::pki::validity::Validity;

/// A server certificate and its key.
#[derive(Clone)]
pub struct IssuedServer {
    /// Server certificate followed by the CA certificate (PEM).
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM. Secret.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedServer").finish_non_exhaustive()
    }
}

impl CertificationBody {
    /// Issues a server certificate (EKU serverAuth) for `names` (DNS names
    /// or IP addresses; the first is also the common name) with a new P-256 key.
    pub fn issue_server(&self, names: &[String], validity: &Validity) -> Result<IssuedServer> {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, names.first().map_or("carrier server", String::as_str));
        let key = KeySource::default().key_pair()?;
        let purpose = LeafPurpose::Server { names: names.to_vec() };
        let leaf = self.sign_leaf(subject, &key, validity, &purpose)?;
        Ok(IssuedServer {
            chain_pem: format!("{}{}", leaf.cert_pem, self.ca_cert_pem()),
            key_pem: pem_encode(PRIVATE_KEY_TAG, &key.serialize_der()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn server_certificate_has_server_auth_and_sans() {
        let v = Validity::new(datetime!(2025-01-01 00:00 UTC), 3650).unwrap();
        let ca = CertificationBody::generate("Test CA", v).unwrap();
        let v = Validity::new(datetime!(2025-01-02 00:00 UTC), 30).unwrap();
        let issued = ca.issue_server(&["localhost".into(), "127.0.0.1".into()], &v).unwrap();
        let der = pem::parse_many(&issued.chain_pem).unwrap()[0].contents().to_vec();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let san = format!("{:?}", cert.subject_alternative_name().unwrap().unwrap().value);
        assert!(san.contains("DNSName(\"localhost\")") && san.contains("IPAddress([127, 0, 0, 1])"), "{san}");
        assert!(ca.issue_server(&["not a name!".into()], &v).is_err());
    }
}
