//! A TLS client handshake driven by bytes in and bytes out (rustls is
//! sans-IO), that records what the server shows of itself rather than
//! judging it: a scanner reports self-signed and expired certificates, it
//! does not refuse them.

use super::cert::{self, Certificate};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

/// What a TLS server showed: the version it chose and its chain, leaf first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub version: &'static str,
    pub chain: Vec<Certificate>,
}

/// Takes every certificate and signature: the handshake exists to see them.
#[derive(Debug)]
struct Recording(Vec<SignatureScheme>);

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// One configuration for every handshake: TLS 1.2 and 1.3, HTTP/1.1 offered
/// by ALPN (so an HTTPS server answers our request as HTTP/1.1).
fn config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let schemes = provider.signature_verification_algorithms.supported_schemes();
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .expect("ring's provider supports TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Recording(schemes)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            // Each port shows its own chain: a session resumed from another
            // port of the host would show none.
            config.resumption = rustls::client::Resumption::disabled();
            Arc::new(config)
        })
        .clone()
}

/// One client's handshake, and the records after it.
pub struct Handshake {
    conn: ClientConnection,
}

impl Handshake {
    /// A handshake that names `server` by SNI where it is a hostname (rustls
    /// sends none for an address, as RFC 6066 asks).
    pub fn new(server: ServerName<'static>) -> Result<Handshake, rustls::Error> {
        Ok(Handshake { conn: ClientConnection::new(config(), server)? })
    }

    /// What is to be sent to the server now.
    pub fn outgoing(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        out
    }

    /// Takes in what the server sent.
    pub fn receive(&mut self, mut bytes: &[u8]) -> Result<(), rustls::Error> {
        while !bytes.is_empty() {
            match self.conn.read_tls(&mut bytes) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return Err(rustls::Error::General("too many records buffered".into())),
            }
            self.conn.process_new_packets()?;
        }
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        !self.conn.is_handshaking()
    }

    /// What the server showed; None before the handshake ended.
    pub fn shown(&self) -> Option<Tls> {
        if !self.is_done() {
            return None;
        }
        let version = match self.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        };
        let chain = self.conn.peer_certificates().unwrap_or_default().iter().map(|c| cert::parse(c)).collect();
        Some(Tls { version, chain })
    }

    /// Queues application data for the server (sent by the next `outgoing`).
    pub fn write(&mut self, data: &[u8]) {
        let _ = self.conn.writer().write_all(data);
    }

    /// Moves the application data received so far to `out`, up to `cap` bytes in all.
    pub fn read(&mut self, out: &mut Vec<u8>, cap: usize) {
        let mut buf = [0u8; 4096];
        while out.len() < cap {
            match self.conn.reader().read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n.min(cap - out.len())]),
            }
        }
    }
}
