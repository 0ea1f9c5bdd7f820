//! Certificates for TLS tests, made with the openssl command.

use std::path::Path;
use std::process::Command;

/// Runs the openssl command in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(
        status.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    Ok(())
}

/// A CA named `name` in `dir` (`name.crt`, `name.key`).
/// A self-signed certificate authority `name` (`name.crt`, `name.key`) in `dir`.
pub fn make_ca(dir: &Path, name: &str) -> anyhow::Result<()> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
        ],
    )
}

/// A server certificate for 127.0.0.1 signed by CA `ca` (`server.crt`, `server.key`).
/// `server.crt` and `server.key` in `dir`, for 127.0.0.1 and localhost, signed by `ca`.
pub fn make_server_certificate(dir: &Path, ca: &str) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    )
}
