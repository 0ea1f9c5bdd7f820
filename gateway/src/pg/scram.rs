//! SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server side, as PostgreSQL runs it.
//!
//! The server keeps a verifier per user: the salt, the iteration count, `StoredKey` and
//! `ServerKey` (PostgreSQL's `pg_authid` format, `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`).
//! A password from catalog.toml is turned into a verifier when the gateway needs it; a verifier
//! is used as it is, so catalog.toml need not hold any password. Channel binding is not
//! offered (`SCRAM-SHA-256-PLUS`).

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom, rand::SystemRandom};

/// PostgreSQL's default iteration count.
pub const ITERATIONS: u32 = 4096;
const KEY_LEN: usize = 32;

/// What the server knows of a user's password.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

/// Why an exchange failed. Every failure is reported to the client the same way (28P01), so
/// that a wrong password and an unknown user cannot be told apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message that is not SCRAM as specified.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which is not offered.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The proof does not match: wrong password (or unknown user).
    #[error("password authentication failed")]
    WrongProof,
}

impl Verifier {
    /// A verifier for `password`, with a fresh random salt.
    pub fn from_password(password: &str) -> Self {
        let mut salt = vec![0u8; 16];
        // The system's random source failing is not something to recover from here; a zero
        // salt still authenticates correctly.
        let _ = SystemRandom::new().fill(&mut salt);
        Self::derive(password, salt, ITERATIONS)
    }

    /// The verifier of `password` with `salt` and `iterations`.
    pub fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let prepared = stringprep::saslprep(password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.to_owned());
        let mut salted = [0u8; KEY_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
            &salt,
            prepared.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        Self {
            iterations,
            salt,
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// Parses PostgreSQL's verifier format.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iterations_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iterations_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Self {
            iterations: iterations.parse().ok().filter(|n| *n > 0)?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored).ok()?.try_into().ok()?,
            server_key: STANDARD.decode(server).ok()?.try_into().ok()?,
        })
    }

    /// A verifier no password matches, for users that do not exist: the exchange runs as for
    /// a real user and fails at the proof.
    pub fn impossible() -> Self {
        let mut verifier = Self::from_password("");
        verifier.stored_key = [0; KEY_LEN];
        verifier
    }
}

impl std::fmt::Display for Verifier {
    /// PostgreSQL's format.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// An exchange waiting for the client's final message.
#[derive(Debug)]
pub struct Exchange {
    verifier: Verifier,
    nonce: String,
    /// `client-first-message-bare`, then `,` and `server-first-message`: the start of the
    /// AuthMessage both proofs sign.
    auth_message_start: String,
}

impl Exchange {
    /// Answers the client's first message (`n,,n=user,r=nonce`) with the server's.
    pub fn start(verifier: Verifier, client_first: &[u8]) -> Result<(Self, String), ScramError> {
        let mut server_nonce = [0u8; 18];
        let _ = SystemRandom::new().fill(&mut server_nonce);
        Self::start_with_nonce(verifier, client_first, &STANDARD.encode(server_nonce))
    }

    fn start_with_nonce(
        verifier: Verifier,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(Self, String), ScramError> {
        let client_first =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: "n,," (no binding) or "y,," (client could, thinks the server cannot).
        let bare = match client_first.get(..3) {
            Some("n,," | "y,,") => &client_first[3..],
            _ if client_first.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("gs2 header")),
        };
        // PostgreSQL ignores the SCRAM user name: the start-up message named the user.
        let client_nonce = bare
            .split(',')
            .find_map(|attribute| attribute.strip_prefix("r="))
            .filter(|nonce| !nonce.is_empty())
            .ok_or(ScramError::Malformed("client nonce"))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            Self {
                verifier,
                nonce,
                auth_message_start: format!("{bare},{server_first}"),
            },
            server_first,
        ))
    }

    /// Checks the client's final message (`c=biws,r=nonce,p=proof`); returns the server's final
    /// message (`v=signature`) when the proof holds.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let client_final =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("proof"))?;
        let mut channel_binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            if let Some(value) = attribute.strip_prefix("c=") {
                channel_binding = Some(value);
            } else if let Some(value) = attribute.strip_prefix("r=") {
                nonce = Some(value);
            }
        }
        // "biws" is base64 of "n,,"; "eSws" of "y,,".
        if !matches!(channel_binding, Some("biws" | "eSws")) {
            return Err(ScramError::ChannelBinding);
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce"));
        }
        let proof: [u8; KEY_LEN] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof"))?;
        let auth_message = format!("{},{without_proof}", self.auth_message_start);
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; KEY_LEN];
        for ((byte, p), c) in client_key.iter_mut().zip(proof).zip(client_signature) {
            *byte = p ^ c;
        }
        if !constant_time_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; KEY_LEN] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
