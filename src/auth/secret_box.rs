//! Encrypts provider keys stored at runtime (AES-256-GCM under a key derived from
//! `LITELLM_SALT_KEY` / `SWITCHYARD_SALT_KEY`, else the master key, as LiteLLM does).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "sy1:";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no encryption key: set LITELLM_SALT_KEY (or SWITCHYARD_SALT_KEY) or a master key to store provider keys")]
    NoKey,
    #[error("stored secret cannot be decrypted (was the salt key changed?)")]
    Decrypt,
}

/// A sealing key for secrets at rest.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Option<Aes256Gcm>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("configured", &self.cipher.is_some())
            .finish()
    }
}

impl SecretBox {
    /// From the salt key environment variables, else `master_key`.
    pub fn from_env(master_key: Option<&str>) -> SecretBox {
        let salt = std::env::var("SWITCHYARD_SALT_KEY")
            .ok()
            .or_else(|| std::env::var("LITELLM_SALT_KEY").ok())
            .filter(|s| !s.is_empty());
        SecretBox::new(salt.as_deref().or(master_key))
    }

    pub fn new(secret: Option<&str>) -> SecretBox {
        let cipher = secret.map(|s| {
            let digest = Sha256::digest(s.as_bytes());
            Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&digest))
        });
        SecretBox { cipher }
    }

    pub fn seal(&self, plain: &str) -> Result<String, SecretError> {
        let cipher = self.cipher.as_ref().ok_or(SecretError::NoKey)?;
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| SecretError::Decrypt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let cipher = self.cipher.as_ref().ok_or(SecretError::NoKey)?;
        let raw = sealed.strip_prefix(PREFIX).ok_or(SecretError::Decrypt)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|_| SecretError::Decrypt)?;
        if bytes.len() < 13 {
            return Err(SecretError::Decrypt);
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_do_not_contain_the_plaintext() {
        let a = SecretBox::new(Some("salt-a"));
        let sealed = a.seal("sk-provider-secret").unwrap();
        assert!(!sealed.contains("sk-provider-secret"));
        assert_eq!(a.open(&sealed).unwrap(), "sk-provider-secret");
        assert!(SecretBox::new(Some("salt-b")).open(&sealed).is_err());
        assert!(matches!(
            SecretBox::new(None).seal("x"),
            Err(SecretError::NoKey)
        ));
    }
}
