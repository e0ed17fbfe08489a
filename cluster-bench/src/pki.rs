//! Certificates for the `--tls` cluster, made at start with `rcgen`: a CA and one
//! certificate for the nodes (127.0.0.1 and localhost), written as PEM files into a
//! temporary directory that is removed when the run ends.

use std::path::{Path, PathBuf};

use test_cluster::TlsFiles;

/// The files the nodes read and the CA the clients trust.
#[derive(Debug)]
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// The nodes' certificate, key and CA files.
    pub files: TlsFiles,
    dir: PathBuf,
}

impl Pki {
    /// Makes the CA and the nodes' certificate in a new directory under the system's
    /// temporary directory.
    pub fn generate() -> Result<Pki, String> {
        let dir = std::env::temp_dir().join(format!(
            "cluster-bench-tls-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // From here on the directory is removed on every path out.
        let mut pki = Pki {
            ca_pem: Vec::new(),
            files: TlsFiles {
                cert: dir.join("node.pem"),
                key: dir.join("node.key"),
                ca: dir.join("ca.pem"),
                require_client_cert: false,
            },
            dir,
        };
        let e = |e: rcgen::Error| format!("generate certificates: {e}");
        let ca_key = rcgen::KeyPair::generate().map_err(e)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).map_err(e)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cluster-bench CA");
        let ca = ca_params.self_signed(&ca_key).map_err(e)?;
        let node_key = rcgen::KeyPair::generate().map_err(e)?;
        let node = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .map_err(e)?
            .signed_by(&node_key, &ca, &ca_key)
            .map_err(e)?;
        write(&pki.files.cert, &node.pem())?;
        write(&pki.files.key, &node_key.serialize_pem())?;
        write(&pki.files.ca, &ca.pem())?;
        pki.ca_pem = ca.pem().into_bytes();
        Ok(pki)
    }
}

fn write(path: &Path, body: &str) -> Result<(), String> {
    std::fs::write(path, body).map_err(|e| format!("write {}: {e}", path.display()))
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files_the_client_accepts_and_cleans_up() {
        let pki = Pki::generate().unwrap();
        for f in [&pki.files.cert, &pki.files.key, &pki.files.ca] {
            assert!(std::fs::read_to_string(f).unwrap().contains("-----BEGIN"));
        }
        redis_cluster_uring::tls::TlsConfig::new()
            .add_root_pem(&pki.ca_pem)
            .unwrap();
        let dir = pki.dir.clone();
        drop(pki);
        assert!(!dir.exists());
    }
}
