//! Reading certificate files as an installer receives them.
//!
//! Certification bodies and carriers hand out the institution certificate in
//! several forms: PEM bundles (certificate, chain and key, the key as PKCS#8,
//! SEC1 or PKCS#1), a bare DER certificate, or a password-protected PKCS#12
//! file (.p12/.pfx, modern AES/PBKDF2 or legacy 3DES/RC2). This module turns
//! any of them into [`Material`]: certificates and at most one private key,
//! as untrusted bytes. Whether they form an acceptable identity is decided by
//! [`super::validate`]. Every function here takes untrusted input and never
//! panics on it; each has a fuzz target.

use p12_keystore::Pkcs12Archive;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

/// Largest certificate or key file accepted: real bundles are a few KiB.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Certificates and private key read from a file, not yet checked.
#[derive(Debug)]
pub struct Material {
    /// Certificates in file order (DER).
    pub certs: Vec<CertificateDer<'static>>,
    /// The private key, when the file carried one.
    pub key: Option<PrivateKeyDer<'static>>,
}

/// The encodings [`read_material`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Base64 text sections (`-----BEGIN …-----`).
    Pem,
    /// A single binary X.509 certificate.
    Der,
    /// A PKCS#12 (PFX) archive.
    Pkcs12,
}

/// Why a file could not be read as certificate material.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// Empty or larger than [`MAX_INPUT_BYTES`].
    #[error("the file is {len} bytes; a certificate file is between 1 byte and {MAX_INPUT_BYTES} bytes: check that you picked the right file")]
    BadSize {
        /// Size of the input.
        len: usize,
    },
    /// Neither PEM, DER nor PKCS#12.
    #[error("the file is neither PEM, DER nor PKCS#12 (.p12/.pfx): it is corrupt or not a certificate file; ask the certification body for the file again")]
    UnknownFormat,
    /// A PEM file whose text is damaged (often cut off during copying).
    #[error("the PEM file is damaged or truncated ({detail}); copy the file again from the original")]
    CorruptPem {
        /// What the PEM reader found.
        detail: String,
    },
    /// A PEM key protected by a passphrase, which the device does not read.
    #[error("the private key is an encrypted PEM key; export it unencrypted, or import the PKCS#12 (.p12) file with --password-file")]
    EncryptedPemKey,
    /// A PKCS#12 archive whose structure is damaged.
    #[error(
        "the PKCS#12 file is damaged or truncated ({detail}); copy the .p12 file again from the original"
    )]
    CorruptPkcs12 {
        /// What the PKCS#12 reader found.
        detail: String,
    },
    /// The PKCS#12 archive is protected and no password was given.
    #[error("the PKCS#12 file is password-protected; give the password in a file with --password-file")]
    PasswordRequired,
    /// The given password does not open the PKCS#12 archive.
    #[error(
        "the password does not open this PKCS#12 file; check the password file (one line, no extra spaces)"
    )]
    WrongPassword,
    /// The PKCS#12 archive uses an algorithm this device does not implement.
    #[error("the PKCS#12 file uses an encryption or MAC algorithm this device does not support ({detail}); re-export it with AES-256 and SHA-256 (OpenSSL 3 default)")]
    UnsupportedPkcs12 {
        /// The algorithm problem reported.
        detail: String,
    },
    /// The file holds more than one private key, so it is ambiguous.
    #[error("the file holds {count} private keys; give exactly one (split the file or export one identity)")]
    SeveralKeys {
        /// How many keys were found.
        count: usize,
    },
    /// A separate key file holds no usable key.
    #[error("the key file holds no private key in PKCS#8, SEC1 or PKCS#1 form")]
    NoKeyInKeyFile,
}

impl MaterialError {
    /// The explanation in Japanese, for clinic staff.
    pub fn ja(&self) -> String {
        match self {
            Self::BadSize { len } => format!("ファイルの大きさが {len} バイトで、証明書ファイルとして扱えません。正しいファイルか確認してください。"),
            Self::UnknownFormat => "PEM・DER・PKCS#12 のいずれでもありません。ファイルが壊れているか証明書ファイルではありません。認証局からファイルを再入手してください。".into(),
            Self::CorruptPem { detail } => format!("PEM ファイルが壊れているか途中で切れています（{detail}）。元のファイルをもう一度コピーしてください。"),
            Self::EncryptedPemKey => "秘密鍵が暗号化された PEM 形式です。暗号化せずに出力するか、PKCS#12 (.p12) ファイルを --password-file と共に取り込んでください。".into(),
            Self::CorruptPkcs12 { detail } => format!("PKCS#12 ファイルが壊れているか途中で切れています（{detail}）。元の .p12 ファイルをもう一度コピーしてください。"),
            Self::PasswordRequired => "PKCS#12 ファイルはパスワードで保護されています。--password-file でパスワードを記したファイルを指定してください。".into(),
            Self::WrongPassword => "パスワードが違います。パスワードファイル（1 行、余分な空白なし）を確認してください。".into(),
            Self::UnsupportedPkcs12 { detail } => format!("PKCS#12 ファイルの暗号方式に対応していません（{detail}）。AES-256 と SHA-256 で再出力してください。"),
            Self::SeveralKeys { count } => format!("秘密鍵が {count} 個あります。1 個だけにしてください。"),
            Self::NoKeyInKeyFile => "鍵ファイルに PKCS#8・SEC1・PKCS#1 形式の秘密鍵がありません。".into(),
        }
    }
}

/// Guesses the encoding of `bytes`: PEM if it has a PEM header, PKCS#12 if it
/// is a DER SEQUENCE starting with version 3, DER otherwise.
pub fn detect_format(bytes: &[u8]) -> Format {
    if contains(bytes, b"-----BEGIN ") {
        return Format::Pem;
    }
    if looks_like_pfx(bytes) {
        Format::Pkcs12
    } else {
        Format::Der
    }
}

/// Reads certificate material in any supported format.
///
/// `password` is used only for PKCS#12; `None` tries the empty password,
/// which some exporters use, and otherwise asks for one.
pub fn read_material(bytes: &[u8], password: Option<&str>) -> Result<Material, MaterialError> {
    check_size(bytes)?;
    match detect_format(bytes) {
        Format::Pem => read_pem(bytes),
        Format::Der => read_der(bytes),
        Format::Pkcs12 => read_pkcs12(bytes, password),
    }
}

/// Reads a PEM bundle: every CERTIFICATE section, and at most one private key.
pub fn read_pem(bytes: &[u8]) -> Result<Material, MaterialError> {
    check_size(bytes)?;
    if contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(bytes, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(MaterialError::EncryptedPemKey);
    }
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = section.map_err(|e| MaterialError::CorruptPem { detail: e.to_string() })?;
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => keys.push(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))),
            SectionKind::EcPrivateKey => keys.push(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der))),
            SectionKind::RsaPrivateKey => keys.push(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der))),
            _ => {}
        }
    }
    if certs.is_empty() && keys.is_empty() {
        return Err(MaterialError::CorruptPem { detail: "no CERTIFICATE or PRIVATE KEY section".into() });
    }
    Ok(Material { certs, key: single_key(keys)? })
}

/// Reads one DER certificate. The certificate is parsed here only far enough
/// to know it is one; [`super::validate`] inspects it.
pub fn read_der(bytes: &[u8]) -> Result<Material, MaterialError> {
    check_size(bytes)?;
    match x509_parser::parse_x509_certificate(bytes) {
        Ok(([], _)) => Ok(Material { certs: vec![CertificateDer::from(bytes.to_vec())], key: None }),
        _ => Err(MaterialError::UnknownFormat),
    }
}

/// Opens a PKCS#12 archive with `password` (`None`: try the empty password).
pub fn read_pkcs12(bytes: &[u8], password: Option<&str>) -> Result<Material, MaterialError> {
    check_size(bytes)?;
    let archive = match password {
        Some(password) => Pkcs12Archive::from_pkcs12(bytes, password).map_err(pkcs12_error)?,
        None => Pkcs12Archive::from_pkcs12(bytes, "").map_err(|e| match pkcs12_error(e) {
            MaterialError::WrongPassword => MaterialError::PasswordRequired,
            other => other,
        })?,
    };
    let certs = archive.certs.iter().map(|bag| CertificateDer::from(bag.cert.as_der().to_vec())).collect();
    let keys = archive
        .keys
        .iter()
        .map(|bag| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bag.key.as_der().to_vec())))
        .collect();
    Ok(Material { certs, key: single_key(keys)? })
}

/// Reads a separate key file (`--key`): PEM, or DER in PKCS#8, SEC1 or PKCS#1.
pub fn read_key_file(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, MaterialError> {
    check_size(bytes)?;
    if detect_format(bytes) == Format::Pem {
        return read_pem(bytes)?.key.ok_or(MaterialError::NoKeyInKeyFile);
    }
    let candidates = [
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes.to_vec())),
        PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(bytes.to_vec())),
        PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(bytes.to_vec())),
    ];
    let provider = rustls::crypto::ring::default_provider();
    candidates
        .into_iter()
        .find(|key| provider.key_provider.load_private_key(key.clone_key()).is_ok())
        .ok_or(MaterialError::NoKeyInKeyFile)
}

fn check_size(bytes: &[u8]) -> Result<(), MaterialError> {
    if bytes.is_empty() || bytes.len() > MAX_INPUT_BYTES {
        Err(MaterialError::BadSize { len: bytes.len() })
    } else {
        Ok(())
    }
}

fn single_key(
    mut keys: Vec<PrivateKeyDer<'static>>,
) -> Result<Option<PrivateKeyDer<'static>>, MaterialError> {
    match keys.len() {
        0 | 1 => Ok(keys.pop()),
        count => Err(MaterialError::SeveralKeys { count }),
    }
}

fn pkcs12_error(error: p12_keystore::error::Error) -> MaterialError {
    use p12_keystore::error::Error as E;
    match error {
        // A MAC mismatch is the normal sign of a wrong password; without a MAC,
        // a wrong password shows up as bad padding after decryption.
        E::MacError(_) | E::UnpadError => MaterialError::WrongPassword,
        E::UnsupportedEncryptionScheme | E::UnsupportedMacAlgorithm | E::UnsupportedContentType => {
            MaterialError::UnsupportedPkcs12 { detail: error.to_string() }
        }
        other => MaterialError::CorruptPkcs12 { detail: other.to_string() },
    }
}

/// PFX ::= SEQUENCE { version INTEGER (3), ... }: a SEQUENCE tag, a DER length,
/// then the INTEGER 3 encoded as 02 01 03.
fn looks_like_pfx(bytes: &[u8]) -> bool {
    if bytes.first() != Some(&0x30) {
        return false;
    }
    let Some(&len_byte) = bytes.get(1) else { return false };
    let header = if len_byte < 0x80 { 2 } else { 2 + usize::from(len_byte & 0x7f) };
    bytes.get(header..header + 3) == Some(&[0x02, 0x01, 0x03][..])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
