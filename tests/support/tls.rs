//! Certificates made at test time (rcgen): a CA, and the server certificates it
//! signs for `127.0.0.1` and `localhost`, written as the PEM files `[tls]` reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use framework::config::TlsConfig;
use framework::rustls;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A certificate authority of a test.
pub struct TestCa {
    /// The CA's certificate (PEM), what clients trust.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate and its key, as PEM.
pub struct ServerCert {
    /// The chain: the server's certificate.
    pub chain: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("a CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`, signed by this CA.
    pub fn issue(&self) -> ServerCert {
        let key = KeyPair::generate().expect("a server key");
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "framework test server");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        ServerCert {
            chain: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Writes a new server certificate of this CA to `dir/cert.pem` and
    /// `dir/key.pem` (replacing them, each in one rename) and returns the
    /// configuration naming them.
    pub fn write_server_files(&self, dir: &Path) -> TlsConfig {
        let cert = self.issue();
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        replace(&key_file, &cert.key);
        replace(&cert_file, &cert.chain);
        TlsConfig::new(cert_file, key_file)
    }

    /// Writes this CA's certificate to `dir/<name>` (for Python's and Node's TLS).
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).expect("write the CA");
        path
    }

    /// A rustls client configuration trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("the CA's PEM"))
            .expect("a root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Replaces `path` with `text` at once (a new file renamed over it), as a
/// certificate manager does.
pub fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}
