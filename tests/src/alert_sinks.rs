//! The receivers of alert tests: a real SMTP submission server (Python's aiosmtpd, which
//! `.ci/run` installs, requiring STARTTLS and AUTH) and an HTTPS webhook receiver, both from
//! `tests/tools/alert_sinks.py`, with a certificate of a test CA made here. Each writes what it
//! receives as JSON files the tests read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{Proc, wait_until};

/// A test CA and a server certificate for 127.0.0.1 and localhost.
#[derive(Debug, Clone)]
pub struct SinkCerts {
    /// The CA (PEM), for the daemon's `ca_file`.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
}

impl SinkCerts {
    /// Makes them in `dir`.
    pub fn make(dir: &Path) -> SinkCerts {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir).expect("certs dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "alert sinks test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
        let cert = params
            .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
            .expect("server cert");
        let out = SinkCerts {
            ca: dir.join("sink-ca.pem"),
            cert: dir.join("sink.pem"),
            key: dir.join("sink.key"),
        };
        std::fs::write(&out.ca, ca_cert.pem()).expect("write CA");
        std::fs::write(&out.cert, cert.pem()).expect("write cert");
        std::fs::write(&out.key, key.serialize_pem()).expect("write key");
        out
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One running receiver.
#[derive(Debug)]
pub struct Sink {
    /// The process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
    /// Where it writes what it receives.
    pub dir: PathBuf,
}

impl Sink {
    /// Starts `mode` (`smtp` or `webhook`) on `port`, writing into `dir`; for SMTP, `login`
    /// is the AUTH user and password it accepts.
    pub fn start(
        mode: &str,
        port: u16,
        dir: &Path,
        certs: &SinkCerts,
        login: (&str, &str),
    ) -> Sink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/alert_sinks.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(mode)
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(dir)
            .arg("--cert")
            .arg(&certs.cert)
            .arg("--key")
            .arg(&certs.key)
            .args(["--user", login.0, "--password", login.1]);
        let log = dir.with_extension(format!("{mode}.log"));
        let proc = Proc::spawn(mode, cmd, log);
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "the {mode} receiver did not start (is aiosmtpd installed? pip install aiosmtpd)\n{}",
            proc.log_text()
        );
        Sink {
            proc,
            port,
            dir: dir.to_owned(),
        }
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Value> {
        received(&self.dir)
    }
}

/// The JSON files a receiver wrote into `dir`, in order.
pub fn received(dir: &Path) -> Vec<Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect()
}
