//! The device's trust roots: PEM certificates in the service's `trust/` dir.

use super::{BundleManager, ierr};
use crate::api::TrustRoot;
use crate::error::BundleError;
use crate::verify;
use std::path::PathBuf;

impl BundleManager {
    fn trust_dir(&self) -> PathBuf {
        self.cfg.dir.join("trust")
    }

    /// The trust roots (DER).
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.trust_list()
            .into_iter()
            .flat_map(|t| verify::pem_certs(t.pem.as_bytes()))
            .collect()
    }

    /// Adds a root certificate; returns its file name (from its SHA-256).
    pub fn trust_add(&self, pem_text: &str) -> Result<String, BundleError> {
        let certs = verify::pem_certs(pem_text.as_bytes());
        let [der] = certs.as_slice() else {
            return Err(BundleError::new(
                oxh_ipc::code::INVALID_PARAM,
                format!("expected one PEM certificate, found {}", certs.len()),
            ));
        };
        if x509_parser::parse_x509_certificate(der).is_err() {
            return Err(BundleError::new(
                oxh_ipc::code::INVALID_PARAM,
                "not an X.509 certificate",
            ));
        }
        use sha2::Digest;
        let h = sha2::Sha256::digest(der);
        let name: String = h[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            + ".pem";
        let pem_out = ::pem::encode_config(
            &::pem::Pem::new("CERTIFICATE", der.clone()),
            ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
        );
        std::fs::write(self.trust_dir().join(&name), pem_out).map_err(ierr)?;
        Ok(name)
    }

    /// Lists the trust roots.
    pub fn trust_list(&self) -> Vec<TrustRoot> {
        let mut v: Vec<TrustRoot> = std::fs::read_dir(self.trust_dir())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pem"))
            .filter_map(|e| {
                let pem = std::fs::read_to_string(e.path()).ok()?;
                let der = verify::pem_certs(pem.as_bytes()).into_iter().next()?;
                Some(TrustRoot {
                    name: e.file_name().to_string_lossy().into_owned(),
                    subject: crate::pkcs7::subject_cn(&der),
                    pem,
                })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Removes a trust root by file name.
    pub fn trust_remove(&self, name: &str) -> Result<(), BundleError> {
        if name.contains('/') || !name.ends_with(".pem") {
            return Err(BundleError::new(
                oxh_ipc::code::INVALID_PARAM,
                "not a trust root name",
            ));
        }
        std::fs::remove_file(self.trust_dir().join(name)).map_err(|_| {
            BundleError::new(
                oxh_ipc::code::INVALID_PARAM,
                format!("no trust root {name}"),
            )
        })
    }
}
