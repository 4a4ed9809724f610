//! Per-sandbox envd access tokens (`envdAccessToken`): `<sandbox id>.<mac>`,
//! the MAC an HMAC-SHA256 of the id under a key kept in the data
//! directory. Nothing is stored per sandbox, tokens survive a restart, and
//! a request carrying only its token (older SDKs after `connect()`) still
//! names its sandbox.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use stacyvm_core::SandboxId;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks access tokens. The key never appears in Debug output.
pub struct Tokens {
    key: [u8; 32],
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

impl Tokens {
    /// Loads the key at `path`, creating it (mode 0600) on first use.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(bytes) = hex::decode(text.trim())
            && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(Tokens { key });
        }
        let key: [u8; 32] = rand::random();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(hex::encode(key).as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(Tokens { key })
    }

    /// A key for tests.
    #[cfg(test)]
    pub fn from_key(key: [u8; 32]) -> Self {
        Tokens { key }
    }

    fn mac(&self, id: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length");
        mac.update(b"e2b-envd-access:");
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The access token of sandbox `id`.
    pub fn issue(&self, id: &SandboxId) -> String {
        format!("{}.{}", id.as_str(), self.mac(id.as_str()))
    }

    /// The sandbox a valid token belongs to.
    pub fn verify(&self, token: &str) -> Option<SandboxId> {
        let (id, mac) = token.trim().split_once('.')?;
        let id = SandboxId::parse(id)?;
        let want = self.mac(id.as_str());
        bool::from(want.as_bytes().ct_eq(mac.as_bytes())).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_sandbox_and_resist_forgery() {
        let t = Tokens::from_key([7; 32]);
        let id = SandboxId::generate();
        let token = t.issue(&id);
        assert_eq!(t.verify(&token), Some(id.clone()));
        let other = SandboxId::generate();
        let forged = format!("{}.{}", other.as_str(), token.split_once('.').unwrap().1);
        assert_eq!(t.verify(&forged), None);
        assert_eq!(t.verify("garbage"), None);
        assert_eq!(t.verify(""), None);
        assert_eq!(Tokens::from_key([8; 32]).verify(&token), None);
    }

    #[test]
    fn the_key_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = Tokens::open(&path).unwrap();
        let b = Tokens::open(&path).unwrap();
        let id = SandboxId::generate();
        assert_eq!(b.verify(&a.issue(&id)), Some(id));
    }
}
