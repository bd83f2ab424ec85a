//! `wsgate demo`'s development certificates: a CA of its own and a certificate for `localhost`, `127.0.0.1`
//! and `::1` signed by it, kept in a state directory so that a client that trusts the CA once keeps
//! trusting the demo across restarts.
//!
//! The CA may sign names under `localhost` and loopback addresses only (X.509 name constraints), so a
//! machine that trusts it cannot be fooled about any other site, even if its key leaks.

use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, NameConstraints, PublicKeyData as _,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;
use thiserror::Error;
use time::OffsetDateTime;

/// The names the certificate is for: what a browser or client on the same machine connects to.
const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a new CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// How long a new certificate is valid (below the 825 days some platforms accept for any TLS certificate).
const CERTIFICATE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// A CA or certificate that ends within this is made anew at start.
const RENEW_BEFORE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The files of the development certificates in their state directory.
#[derive(Debug, Clone)]
pub(crate) struct DevCertificates {
    /// The CA certificate (PEM): what clients trust.
    pub(crate) ca: PathBuf,
    /// The CA's private key (PEM, readable by the owner only).
    ca_key: PathBuf,
    /// The gateway's certificate (PEM).
    pub(crate) certificate: PathBuf,
    /// Its private key (PEM, readable by the owner only).
    pub(crate) key: PathBuf,
}

/// What [`DevCertificates::ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A new CA and certificate were made: clients must trust the new CA.
    Created,
    /// The CA and certificate from an earlier start are still good and were kept.
    Reused,
    /// The CA was kept; the certificate was missing, unusable or close to its end, and a new one was made.
    Renewed,
}

/// Why the development certificates could not be made.
#[derive(Debug, Error)]
pub(crate) enum DevCertError {
    /// The state directory or a file in it could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// rcgen could not make a key or a certificate.
    #[error("cannot make the development certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

impl DevCertificates {
    /// The files in `dir`.
    pub(crate) fn in_dir(dir: &Path) -> DevCertificates {
        DevCertificates { ca: dir.join("ca.pem"), ca_key: dir.join("ca-key.pem"), certificate: dir.join("localhost.pem"), key: dir.join("localhost-key.pem") }
    }

    /// Keeps the CA and the certificate when they are good for at least another week, makes a new
    /// certificate with the kept CA when only the certificate is not, and a new CA and certificate
    /// otherwise.
    ///
    /// # Errors
    ///
    /// [`DevCertError`] when a file cannot be written or a certificate cannot be made.
    pub(crate) fn ensure(&self) -> Result<Outcome, DevCertError> {
        let now = SystemTime::now();
        if let Some(issuer) = self.kept_ca(now) {
            if self.certificate_is_good(now) {
                return Ok(Outcome::Reused);
            }
            self.write_certificate(&issuer, now)?;
            return Ok(Outcome::Renewed);
        }
        let issuer = self.write_ca(now)?;
        self.write_certificate(&issuer, now)?;
        Ok(Outcome::Created)
    }

    /// The kept CA as an issuer, when its files are there, belong together and stay valid long enough.
    fn kept_ca(&self, now: SystemTime) -> Option<Issuer<'static, KeyPair>> {
        let der = CertificateDer::from_pem_file(&self.ca).ok()?;
        let key = KeyPair::from_pem(&std::fs::read_to_string(&self.ca_key).ok()?).ok()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).ok()?;
        let ends = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(parsed.validity().not_after.timestamp()).ok()?);
        let good = *parsed.public_key().subject_public_key.data == *key.der_bytes() && ends > now + RENEW_BEFORE;
        good.then(|| Issuer::from_ca_cert_der(&der, key).ok()).flatten()
    }

    /// Whether the kept certificate and key belong together, and a client trusting the CA accepts the
    /// certificate for each of [`NAMES`] now and for another week.
    fn certificate_is_good(&self, now: SystemTime) -> bool {
        let check = || -> Option<bool> {
            let ca = CertificateDer::from_pem_file(&self.ca).ok()?;
            let certificate = CertificateDer::from_pem_file(&self.certificate).ok()?;
            let key = KeyPair::from_pem(&std::fs::read_to_string(&self.key).ok()?).ok()?;
            let (_, parsed) = x509_parser::parse_x509_certificate(&certificate).ok()?;
            if *parsed.public_key().subject_public_key.data != *key.der_bytes() {
                return Some(false);
            }
            let mut roots = RootCertStore::empty();
            roots.add(ca).ok()?;
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(rustls::crypto::ring::default_provider())).build().ok()?;
            let later = UnixTime::since_unix_epoch((now + RENEW_BEFORE).duration_since(SystemTime::UNIX_EPOCH).ok()?);
            let accepted = |name: &str| {
                let name = ServerName::try_from(name.to_owned()).ok();
                name.is_some_and(|name| verifier.verify_server_cert(&certificate, &[], &name, &[], later).is_ok())
            };
            Some(NAMES.iter().all(|name| accepted(name)))
        };
        check().unwrap_or(false)
    }

    /// Makes a new CA, writes its files, and returns it as an issuer.
    fn write_ca(&self, now: SystemTime) -> Result<Issuer<'static, KeyPair>, DevCertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "wsgate");
        params.distinguished_name.push(DnType::CommonName, "wsgate demo development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![
                GeneralSubtree::DnsName("localhost".to_owned()),
                GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([127, 0, 0, 0], 8)),
                GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix(std::net::Ipv6Addr::LOCALHOST.octets(), 128)),
            ],
            excluded_subtrees: Vec::new(),
        });
        (params.not_before, params.not_after) = (datetime(now - DAY), datetime(now + CA_VALIDITY));
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let directory = self.ca.parent().unwrap_or(Path::new("."));
        // Owner only: the directory holds the CA's key.
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(directory).map_err(|source| DevCertError::Write { path: directory.to_owned(), source })?;
        write_file(&self.ca_key, &key.serialize_pem(), true)?;
        write_file(&self.ca, &certificate.pem(), false)?;
        Ok(Issuer::new(params, key))
    }

    /// Makes a new certificate for [`NAMES`] signed by `issuer`, and writes it and its key.
    fn write_certificate(&self, issuer: &Issuer<'_, KeyPair>, now: SystemTime) -> Result<(), DevCertError> {
        let mut params = CertificateParams::new(NAMES.map(str::to_owned).to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = (datetime(now - DAY), datetime(now + CERTIFICATE_VALIDITY));
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, issuer)?;
        write_file(&self.key, &key.serialize_pem(), true)?;
        write_file(&self.certificate, &certificate.pem(), false)
    }
}

fn datetime(at: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(at)
}

/// Writes `contents` to a temporary file beside `path` and renames it over `path`, so that a crash never
/// leaves half a key; `private` files are readable by their owner only.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), DevCertError> {
    let error = |source| DevCertError::Write { path: path.to_owned(), source };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(if private { 0o600 } else { 0o644 }).open(&temporary).map_err(error)?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(error)?;
    std::fs::rename(&temporary, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wsgate-devcert-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn made_once_then_kept_and_a_lost_certificate_is_made_again_with_the_same_ca() {
        let dir = temp_dir("kept");
        let files = DevCertificates::in_dir(&dir.join("state"));
        assert_eq!(files.ensure().unwrap(), Outcome::Created);
        let ca = std::fs::read(&files.ca).unwrap();
        let certificate = std::fs::read(&files.certificate).unwrap();
        assert_eq!(files.ensure().unwrap(), Outcome::Reused);
        assert_eq!(std::fs::read(&files.certificate).unwrap(), certificate);
        std::fs::remove_file(&files.key).unwrap();
        assert_eq!(files.ensure().unwrap(), Outcome::Renewed);
        assert_eq!(std::fs::read(&files.ca).unwrap(), ca);
        assert_ne!(std::fs::read(&files.certificate).unwrap(), certificate);
        assert!(files.certificate_is_good(SystemTime::now()));
        let mode = |path: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777;
        assert_eq!((mode(&files.key), mode(&files.ca_key)), (0o600, 0o600));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_certificate_close_to_its_end_or_a_broken_ca_is_replaced() {
        let dir = temp_dir("renew");
        let files = DevCertificates::in_dir(&dir);
        files.ensure().unwrap();
        // Seen from 360 days on, the certificate ends within the week: renewed, the CA kept.
        let later = SystemTime::now() + Duration::from_secs(360 * 24 * 60 * 60);
        assert!(files.kept_ca(later).is_some());
        assert!(!files.certificate_is_good(later));
        std::fs::write(&files.ca_key, "not a key").unwrap();
        assert_eq!(files.ensure().unwrap(), Outcome::Created);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
