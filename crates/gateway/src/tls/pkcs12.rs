//! PKCS#12 keystores (`.p12`, `.pfx`), as `openssl pkcs12 -export` (OpenSSL 3's PBES2/AES-256-CBC with an
//! HMAC-SHA256 MAC, or `-legacy`'s RC2/3DES with a SHA-1 MAC) and Java's keytool (Zowe's keystores) write
//! them.
//!
//! [`load`] reads one into DER certificates and, when the store holds one, its private key with the
//! key's certificate chain: the gateway's identity for `server.ssl.keyStore`, and the certificates of a
//! PKCS#12 trust store.

use std::io;
use std::path::Path;

use p12_keystore::{CertificateBag, Pkcs12Archive};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

/// What a PKCS#12 file holds, as rustls takes it.
#[derive(Debug)]
pub struct Pkcs12Store {
    /// Every certificate in the store, in file order (a trust store's certificates).
    pub certificates: Vec<CertificateDer<'static>>,
    /// The store's private key and its chain; `None` for a store of certificates only.
    pub identity: Option<Pkcs12Identity>,
}

/// The private key of a PKCS#12 store with its certificate chain.
#[derive(Debug)]
pub struct Pkcs12Identity {
    /// The key's certificate first, then its issuers as far as the store holds them.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

/// Why a PKCS#12 file could not be read. The caller adds the file's name and config key.
#[derive(Debug, Error)]
pub enum Pkcs12Error {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(io::Error),
    /// The integrity MAC does not verify, or the contents do not decrypt: almost always a wrong password.
    #[error("wrong password (the keystore's integrity check fails with it)")]
    WrongPassword,
    /// Not a PKCS#12 file, or one using a scheme this build cannot read (e.g. MD5-based encryption).
    #[error("not a PKCS#12 keystore this gateway can read: {0}")]
    Unreadable(p12_keystore::error::Error),
    /// No certificate at all: nothing to trust.
    #[error("it holds no certificate")]
    NoCertificate,
    /// A key without any certificate: nothing to present to clients.
    #[error("its private key has no certificate in the keystore")]
    KeyWithoutCertificate,
    /// More than one private key: which one to use would be a guess.
    #[error("it holds {0} private keys; keep one (e.g. `openssl pkcs12 -export` a single key, or `keytool -delete` the others)")]
    SeveralKeys(usize),
}

/// Reads the PKCS#12 file at `path` with `password`.
///
/// The key's certificate is the one that carries the key's local key id (OpenSSL and keytool write it), or the
/// only certificate when the key has none.
///
/// # Errors
///
/// [`Pkcs12Error`]: unreadable file, wrong password, unsupported or malformed contents, several private
/// keys, or a key without its certificate.
pub fn load(path: &Path, password: &str) -> Result<Pkcs12Store, Pkcs12Error> {
    let data = std::fs::read(path).map_err(Pkcs12Error::Read)?;
    let archive = Pkcs12Archive::from_pkcs12(&data, password).map_err(|error| match error {
        // MAC first; a store without a MAC fails in the decryption's padding instead.
        p12_keystore::error::Error::MacError(_) | p12_keystore::error::Error::UnpadError => Pkcs12Error::WrongPassword,
        other => Pkcs12Error::Unreadable(other),
    })?;
    let certificates = archive.certs.iter().map(|bag| CertificateDer::from(bag.cert.as_der().to_vec())).collect();
    let identity = match archive.keys.as_slice() {
        [] => None,
        [key] => {
            let leaf = match &key.local_key_id {
                Some(id) => archive.certs.iter().position(|bag| bag.local_key_id.as_deref() == Some(id.0.as_slice())),
                None if archive.certs.len() == 1 => Some(0),
                None => None,
            };
            let leaf = leaf.ok_or(Pkcs12Error::KeyWithoutCertificate)?;
            let chain = chain_from(&archive.certs, leaf).into_iter().map(|bag| CertificateDer::from(bag.cert.as_der().to_vec())).collect();
            Some(Pkcs12Identity { chain, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.as_der().to_vec())) })
        }
        several => return Err(Pkcs12Error::SeveralKeys(several.len())),
    };
    Ok(Pkcs12Store { certificates, identity })
}

/// The certificate at `leaf`, then each issuer found among `certs`, up to a self-signed one or one whose
/// issuer the store lacks. Each certificate appears once, so a cycle ends the walk.
fn chain_from(certs: &[CertificateBag], leaf: usize) -> Vec<&CertificateBag> {
    let mut chain = vec![&certs[leaf]];
    let mut current = &certs[leaf];
    while current.cert.issuer() != current.cert.subject() {
        let issuer = certs.iter().find(|bag| bag.cert.subject() == current.cert.issuer() && !chain.iter().any(|c| c.cert == bag.cert));
        let Some(issuer) = issuer else { break };
        chain.push(issuer);
        current = issuer;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use p12_keystore::{Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey, PrivateKeyChain};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// A CA and a leaf certificate it signed, with the leaf's key.
    struct Made {
        ca: Vec<u8>,
        leaf: Vec<u8>,
        key: Vec<u8>,
    }

    fn make(name: &str) -> Made {
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} CA"));
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let leaf = params.signed_by(&key, &issuer).unwrap();
        Made { ca: ca.der().to_vec(), leaf: leaf.der().to_vec(), key: key.serialize_der() }
    }

    fn chain_entry(made: &Made, id: &str) -> KeyStoreEntry {
        let certs = [&made.leaf, &made.ca].map(|der| Certificate::from_der(der).unwrap());
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(id, PrivateKey::from_der(&made.key).unwrap(), certs))
    }

    fn write(dir: &Path, name: &str, store: &KeyStore, legacy: bool) -> std::path::PathBuf {
        let writer = store.writer("s3cret");
        let writer = if legacy {
            writer.encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc).mac_algorithm(MacAlgorithm::HmacSha1)
        } else {
            writer
        };
        let path = dir.join(name);
        std::fs::write(&path, writer.write().unwrap()).unwrap();
        path
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wsgate-pkcs12-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_the_key_and_its_chain_leaf_first_with_modern_and_legacy_encryption() {
        let dir = temp_dir("chain");
        let made = make("gateway.example");
        let mut store = KeyStore::new();
        store.add_entry("gateway", chain_entry(&made, "gateway"));
        for legacy in [false, true] {
            let path = write(&dir, &format!("legacy-{legacy}.p12"), &store, legacy);
            let loaded = load(&path, "s3cret").unwrap();
            let identity = loaded.identity.unwrap();
            assert_eq!(identity.chain, vec![CertificateDer::from(made.leaf.clone()), CertificateDer::from(made.ca.clone())]);
            assert_eq!(identity.key.secret_der(), made.key.as_slice());
            assert_eq!(loaded.certificates.len(), 2);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_wrong_password_is_named_as_such() {
        let dir = temp_dir("password");
        let mut store = KeyStore::new();
        store.add_entry("gateway", chain_entry(&make("a.example"), "gateway"));
        let path = write(&dir, "store.p12", &store, false);
        assert!(matches!(load(&path, "guess"), Err(Pkcs12Error::WrongPassword)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_store_of_certificates_only_has_no_identity() {
        let dir = temp_dir("trust");
        let made = make("b.example");
        let mut store = KeyStore::new();
        store.add_entry("ca", KeyStoreEntry::Certificate(Certificate::from_der(&made.ca).unwrap()));
        let path = write(&dir, "trust.p12", &store, false);
        let loaded = load(&path, "s3cret").unwrap();
        assert!(loaded.identity.is_none());
        assert_eq!(loaded.certificates, vec![CertificateDer::from(made.ca)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn several_keys_are_refused() {
        let dir = temp_dir("several");
        let mut store = KeyStore::new();
        store.add_entry("one", chain_entry(&make("one.example"), "one"));
        store.add_entry("two", chain_entry(&make("two.example"), "two"));
        let path = write(&dir, "two.p12", &store, false);
        assert!(matches!(load(&path, "s3cret"), Err(Pkcs12Error::SeveralKeys(2))));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn garbage_and_missing_files_are_told_apart() {
        let dir = temp_dir("garbage");
        let path = dir.join("not.p12");
        std::fs::write(&path, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        assert!(matches!(load(&path, "x"), Err(Pkcs12Error::Unreadable(_))));
        assert!(matches!(load(&dir.join("missing.p12"), "x"), Err(Pkcs12Error::Read(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
