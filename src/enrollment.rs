//! The enrollment statement, its proof and its code: what binds a new machine's name and its
//! four public keys to one fleet.
//!
//! `enroll` writes a canonical statement (the fleet's founding commit, the machine's name, its
//! age recipient and its SSH, signing and poke keys, each as `TYPE BASE64` without a comment),
//! signs it with the new machine's own signing key (an SSHSIG, namespace `fleetkey-enroll`) and
//! stores statement and signature as `NAME.proof` beside the keys. It prints an **enrollment
//! code** derived from the statement (a hash, shown as five groups of four Crockford base-32
//! characters). `approve` rebuilds the statement from the request's key files, checks the
//! proof and compares the code the user typed: a forge writer who swaps or adds one key changes
//! the statement, so the code no longer matches and the proof no longer verifies.
//!
//! The proof stays on the fleet branch (`keys/NAME.proof`), so every machine re-checks the
//! binding when it verifies the approving commit (see [`crate::trust`]).
//!
//! Owns: the statement's canonical text, the proof file's format, the code. Must never: accept a
//! proof whose statement differs by one byte from the keys beside it, or derive the code from
//! anything but the whole statement.

use std::fmt;

/// The SSHSIG namespace of an enrollment proof (never `git`: a proof is no commit signature).
pub const NAMESPACE: &str = "fleetkey-enroll";

/// The first line of every statement.
const HEADER: &str = "fleetkey enrollment v1";

/// What a new machine states about itself: every field is public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The fleet's founding commit (hex).
    pub fleet: String,
    /// The machine's name.
    pub name: String,
    /// Its age recipient (`age1…`).
    pub age: String,
    /// Its SSH login key, `TYPE BASE64`.
    pub ssh: String,
    /// Its commit-signing key, `TYPE BASE64`.
    pub sign: String,
    /// Its poke key, `TYPE BASE64`.
    pub poke: String,
}

/// Why a proof does not bind the keys beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofProblem {
    /// The file is not a statement followed by an SSH signature.
    Malformed,
    /// The statement in the file is not the one the keys beside it make (a key was swapped,
    /// added or removed, or the proof is for another fleet or name).
    OtherStatement,
    /// The signature does not verify under the machine's own signing key.
    BadSignature,
}

impl fmt::Display for ProofProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProofProblem::Malformed => "the proof is not an enrollment statement and its signature",
            ProofProblem::OtherStatement => {
                "the proof states other keys, another name or another fleet than the key files beside it"
            }
            ProofProblem::BadSignature => {
                "the proof's signature does not verify under the machine's own signing key"
            }
        })
    }
}

/// `TYPE BASE64` of an OpenSSH public key (its comment left out: a comment is not the key).
pub fn key_text(key: &ssh_key::PublicKey) -> String {
    ssh_key::PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .expect("a parsed key encodes")
        .trim()
        .to_string()
}

impl Statement {
    /// The statement for `name`'s keys in the fleet whose founding commit is `fleet`.
    pub fn new(
        fleet: &str,
        name: &str,
        age: &str,
        ssh: &ssh_key::PublicKey,
        sign: &ssh_key::PublicKey,
        poke: &ssh_key::PublicKey,
    ) -> Statement {
        Statement {
            fleet: fleet.to_string(),
            name: name.to_string(),
            age: age.trim().to_string(),
            ssh: key_text(ssh),
            sign: key_text(sign),
            poke: key_text(poke),
        }
    }

    /// The canonical text: one `FIELD VALUE` line each, in a fixed order, `\n`-terminated.
    pub fn text(&self) -> String {
        format!(
            "{HEADER}\nfleet {}\nname {}\nage {}\nssh {}\nsign {}\npoke {}\n",
            self.fleet, self.name, self.age, self.ssh, self.sign, self.poke
        )
    }

    /// The enrollment code: the statement's SHA-256, its first 100 bits as 20 Crockford
    /// base-32 characters in groups of four (`ABCD-EFGH-…`).
    pub fn code(&self) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let digest = ssh_key::HashAlg::Sha256.digest(self.text().as_bytes());
        let mut bits: u128 = 0;
        for b in &digest[..16] {
            bits = (bits << 8) | u128::from(*b);
        }
        let mut out = String::new();
        for i in 0..20 {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            let idx = ((bits >> (123 - 5 * i)) & 0x1f) as usize;
            out.push(ALPHABET[idx] as char);
        }
        out
    }

    /// The proof file: the statement, then its SSHSIG by `key` (namespace
    /// [`NAMESPACE`]).
    pub fn prove(&self, key: &crate::signing::SigningKey) -> crate::error::Result<String> {
        let sig = key.sign_for(NAMESPACE, self.text().as_bytes())?;
        Ok(format!("{}{}", self.text(), sig))
    }

    /// Checks that `proof` (a proof file's text) states exactly this statement and is signed
    /// by this statement's signing key.
    pub fn check(&self, proof: &str) -> Result<(), ProofProblem> {
        let (stated, armor) = proof
            .find("-----BEGIN SSH SIGNATURE-----")
            .map(|at| proof.split_at(at))
            .ok_or(ProofProblem::Malformed)?;
        if stated != self.text() {
            return Err(ProofProblem::OtherStatement);
        }
        let sig = ssh_key::SshSig::from_pem(armor.trim()).map_err(|_| ProofProblem::Malformed)?;
        let key = ssh_key::PublicKey::from_openssh(&self.sign)
            .map_err(|_| ProofProblem::OtherStatement)?;
        if sig.namespace() != NAMESPACE || sig.public_key() != key.key_data() {
            return Err(ProofProblem::BadSignature);
        }
        key.verify(NAMESPACE, self.text().as_bytes(), &sig)
            .map_err(|_| ProofProblem::BadSignature)
    }
}

/// Whether `typed` is `code` as a person may type it: case, spaces and dashes do not matter,
/// and the Crockford look-alikes (`O` for 0, `I`/`L` for 1) are read as the digits.
pub fn code_matches(code: &str, typed: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            })
            .collect()
    };
    let (a, b) = (norm(code), norm(typed));
    !a.is_empty()
        && a.len() == b.len()
        && subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// Whether `text` looks like an SSH `SHA256:…` fingerprint rather than an enrollment code.
pub fn looks_like_fingerprint(text: &str) -> bool {
    text.trim().starts_with("SHA256:") || text.trim().starts_with("age1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::SigningKey;

    fn statement(sign: &SigningKey, ssh: &SigningKey, poke: &SigningKey) -> Statement {
        let id = crate::identity::Identity::generate();
        Statement::new(
            &"a".repeat(40),
            "beta",
            &id.recipient().to_string(),
            ssh.public(),
            sign.public(),
            poke.public(),
        )
    }

    #[test]
    fn a_proof_binds_every_key_and_the_code_changes_with_any_of_them() {
        let sign = SigningKey::generate("s").unwrap();
        let ssh = SigningKey::generate("x").unwrap();
        let poke = SigningKey::generate("p").unwrap();
        let st = statement(&sign, &ssh, &poke);
        let proof = st.prove(&sign).unwrap();
        st.check(&proof).unwrap();
        let code = st.code();
        assert_eq!(code.len(), 24, "{code}");
        assert!(code_matches(&code, &code.to_lowercase().replace('-', " ")));
        assert!(!code_matches(&code, "0000-0000-0000-0000-0000"));
        assert!(!code_matches(&code, ""));

        // Any swapped key: another statement, another code, and the proof no longer holds.
        let other = SigningKey::generate("o").unwrap();
        for changed in [
            Statement {
                ssh: key_text(other.public()),
                ..st.clone()
            },
            Statement {
                poke: key_text(other.public()),
                ..st.clone()
            },
            Statement {
                name: "gamma".into(),
                ..st.clone()
            },
            Statement {
                fleet: "b".repeat(40),
                ..st.clone()
            },
        ] {
            assert_ne!(changed.code(), code);
            assert_eq!(changed.check(&proof), Err(ProofProblem::OtherStatement));
        }
        // The attacker's own signing key, and a statement signed by it: the proof verifies
        // (it is the attacker's), but the code is not the one the real machine printed.
        let evil = Statement {
            sign: key_text(other.public()),
            ..st.clone()
        };
        evil.check(&evil.prove(&other).unwrap()).unwrap();
        assert_ne!(evil.code(), code);
        // A proof signed by another key than the stated one.
        assert_eq!(
            st.check(&format!(
                "{}{}",
                st.text(),
                other.sign_for(NAMESPACE, st.text().as_bytes()).unwrap()
            )),
            Err(ProofProblem::BadSignature)
        );
        // A commit signature (namespace git) is no proof.
        assert_eq!(
            st.check(&format!(
                "{}{}",
                st.text(),
                sign.sign(st.text().as_bytes()).unwrap()
            )),
            Err(ProofProblem::BadSignature)
        );
        assert_eq!(st.check("garbage"), Err(ProofProblem::Malformed));
    }

    #[test]
    fn the_comment_is_not_part_of_a_key() {
        let k = SigningKey::generate("a comment").unwrap();
        assert_eq!(key_text(k.public()).split_whitespace().count(), 2);
    }
}
