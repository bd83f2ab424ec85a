//! EC private keys written without their public key, as Java's keytool writes them in PKCS#12 keystores
//! (the optional `publicKey` of SEC1's `ECPrivateKey` left out). ring, under rustls, refuses such a key;
//! the public key is in the certificate, so [`with_public_key`] puts it back.

use der::asn1::{Any, BitString, OctetString};
use der::{Decode as _, Encode as _, Sequence};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// PKCS#8 `PrivateKeyInfo` (RFC 5208), version 1, without attributes.
#[derive(Sequence)]
struct PrivateKeyInfo {
    version: u8,
    algorithm: Any,
    private_key: OctetString,
}

/// SEC1 `ECPrivateKey` (RFC 5915).
#[derive(Sequence)]
struct EcPrivateKey {
    version: u8,
    private_key: OctetString,
    #[asn1(context_specific = "0", optional = "true")]
    parameters: Option<Any>,
    #[asn1(context_specific = "1", optional = "true")]
    public_key: Option<BitString>,
}

/// `key` with the public key of `certificate` added, when `key` is a PKCS#8 EC key without one; `None`
/// for any other key (which then stays as it is). Whether the two keys belong together is left to the
/// caller's check, as for any key.
pub(crate) fn with_public_key(key: &PrivateKeyDer<'_>, certificate: &CertificateDer<'_>) -> Option<PrivateKeyDer<'static>> {
    let PrivateKeyDer::Pkcs8(pkcs8) = key else { return None };
    let info = PrivateKeyInfo::from_der(pkcs8.secret_pkcs8_der()).ok()?;
    let mut ec = EcPrivateKey::from_der(info.private_key.as_bytes()).ok()?;
    if ec.public_key.is_some() {
        return None;
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    ec.public_key = Some(BitString::new(0, parsed.public_key().subject_public_key.data.to_vec()).ok()?);
    let repaired = PrivateKeyInfo { private_key: OctetString::new(ec.to_der().ok()?).ok()?, ..info };
    Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(repaired.to_der().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_comes_back_from_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["java.example".to_owned()]).unwrap().self_signed(&key).unwrap();
        // As keytool writes it: the same key without its public part.
        let full = PrivateKeyInfo::from_der(&key.serialize_der()).unwrap();
        let mut ec = EcPrivateKey::from_der(full.private_key.as_bytes()).unwrap();
        assert!(ec.public_key.is_some());
        ec.public_key = None;
        let stripped = PrivateKeyInfo { private_key: OctetString::new(ec.to_der().unwrap()).unwrap(), ..full };
        let stripped = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(stripped.to_der().unwrap()));
        let provider = rustls::crypto::ring::default_provider();
        assert!(provider.key_provider.load_private_key(stripped.clone_key()).is_err(), "ring takes it: the repair is not needed any more");

        let repaired = with_public_key(&stripped, certificate.der()).unwrap();
        let signing = provider.key_provider.load_private_key(repaired).unwrap();
        rustls::sign::CertifiedKey::new(vec![certificate.der().clone()], signing).keys_match().unwrap();
        // A key that has its public key is left alone.
        assert!(with_public_key(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())), certificate.der()).is_none());
    }
}
