//! Files that must never leave the machine: private keys and credentials, recognised by where
//! they live and by what they hold.
//!
//! The fleet repo is plain git on a forge, and its managed list may come from a compromised
//! machine, so capture asks [`detect`] about every file it would upload, whatever the list says
//! (`fleetkey secrets set` is the place for a secret). By path (relative to `$HOME`, compared
//! case-insensitively): SSH keys (`~/.ssh/id_*` but `*.pub`), GnuPG secret keys and revocation
//! certificates, git/netrc/PostgreSQL credentials, the AWS, Google Cloud, Azure, Docker,
//! Kubernetes and GitHub CLI credential files, a few package registries' tokens, PKCS#12 and
//! PuTTY key files, and fleetkey's own identity and signing key. By content (the whole file):
//! PEM and OpenSSH private key armour (`-----BEGIN … PRIVATE KEY-----`, RSA, EC, DSA, OPENSSH,
//! ENCRYPTED, PGP `PRIVATE KEY BLOCK`), age identities (`AGE-SECRET-KEY-1…`, plugin
//! identities), PuTTY key files and GnuPG's private key S-expressions, so a `*.pem` or `*.key`
//! file with such armour is caught wherever it is.
//!
//! Must never: quote what it found. A finding names the kind of file only.

/// What a private-looking file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateKind {
    /// An SSH private key (`~/.ssh/id_*`, OpenSSH armour, PuTTY `.ppk`).
    SshKey,
    /// A PEM private key (`-----BEGIN … PRIVATE KEY-----`) or a PKCS#12 bundle.
    PemKey,
    /// An age identity (`AGE-SECRET-KEY-1…` or a plugin identity).
    AgeIdentity,
    /// A GnuPG secret key, revocation certificate or armoured private key block.
    GnupgSecret,
    /// A file of passwords or tokens (`.git-credentials`, `.netrc`, `.pgpass`, registry tokens).
    Credentials,
    /// A cloud or container CLI's credentials (AWS, Google Cloud, Azure, Docker, Kubernetes,
    /// GitHub CLI).
    CloudCredentials,
    /// fleetkey's own identity or signing key.
    FleetkeyKey,
}

impl PrivateKind {
    /// How messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            PrivateKind::SshKey => "an SSH private key",
            PrivateKind::PemKey => "a private key",
            PrivateKind::AgeIdentity => "an age identity",
            PrivateKind::GnupgSecret => "a GnuPG secret key",
            PrivateKind::Credentials => "a credentials file",
            PrivateKind::CloudCredentials => "a cloud CLI's credentials",
            PrivateKind::FleetkeyKey => "fleetkey's own identity or signing key",
        }
    }
}

impl std::fmt::Display for PrivateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Whether the file at `rel` (relative to `$HOME`) holding `bytes` is private: by path first,
/// then by content. Capture skips such a file whatever the managed list says.
pub fn detect(rel: &str, bytes: &[u8]) -> Option<PrivateKind> {
    by_path(rel).or_else(|| by_content(bytes))
}

/// Files under these directories (relative to `$HOME`, lower case) are private, whatever their
/// name.
const PRIVATE_DIRS: &[(&str, PrivateKind)] = &[
    (".gnupg/private-keys-v1.d/", PrivateKind::GnupgSecret),
    (".gnupg/openpgp-revocs.d/", PrivateKind::GnupgSecret),
    (
        ".config/gcloud/legacy_credentials/",
        PrivateKind::CloudCredentials,
    ),
    (".aws/sso/cache/", PrivateKind::CloudCredentials),
    (".aws/cli/cache/", PrivateKind::CloudCredentials),
    (".config/fleetkey/", PrivateKind::FleetkeyKey),
];

/// These files (relative to `$HOME`, lower case) are private.
const PRIVATE_FILES: &[(&str, PrivateKind)] = &[
    (".gnupg/secring.gpg", PrivateKind::GnupgSecret),
    (".config/git/credentials", PrivateKind::Credentials),
    (".aws/credentials", PrivateKind::CloudCredentials),
    (
        ".config/gcloud/credentials.db",
        PrivateKind::CloudCredentials,
    ),
    (
        ".config/gcloud/access_tokens.db",
        PrivateKind::CloudCredentials,
    ),
    (
        ".config/gcloud/application_default_credentials.json",
        PrivateKind::CloudCredentials,
    ),
    (".azure/accesstokens.json", PrivateKind::CloudCredentials),
    (
        ".azure/msal_token_cache.json",
        PrivateKind::CloudCredentials,
    ),
    (".azure/msal_token_cache.bin", PrivateKind::CloudCredentials),
    (
        ".azure/service_principal_entries.json",
        PrivateKind::CloudCredentials,
    ),
    (
        ".azure/service_principal_entries.bin",
        PrivateKind::CloudCredentials,
    ),
    (".docker/config.json", PrivateKind::CloudCredentials),
    (".kube/config", PrivateKind::CloudCredentials),
    (".config/gh/hosts.yml", PrivateKind::CloudCredentials),
    (".cargo/credentials", PrivateKind::Credentials),
    (".cargo/credentials.toml", PrivateKind::Credentials),
    (".gem/credentials", PrivateKind::Credentials),
    (
        ".terraform.d/credentials.tfrc.json",
        PrivateKind::Credentials,
    ),
];

/// Files with these names are private wherever they are.
const PRIVATE_NAMES: &[(&str, PrivateKind)] = &[
    (".git-credentials", PrivateKind::Credentials),
    (".netrc", PrivateKind::Credentials),
    ("_netrc", PrivateKind::Credentials),
    (".pgpass", PrivateKind::Credentials),
    (".vault-token", PrivateKind::Credentials),
];

/// Files with these extensions are private wherever they are (their formats exist to hold a
/// private key).
const PRIVATE_EXTENSIONS: &[(&str, PrivateKind)] = &[
    (".p12", PrivateKind::PemKey),
    (".pfx", PrivateKind::PemKey),
    (".ppk", PrivateKind::SshKey),
];

/// Whether `rel` (relative to `$HOME`, `/`-separated) is a private file by where it is.
pub fn by_path(rel: &str) -> Option<PrivateKind> {
    let rel = rel.to_lowercase();
    let name = rel.rsplit('/').next().unwrap_or(&rel);
    if let Some(key) = rel.strip_prefix(".ssh/")
        && !key.contains('/')
        && key.starts_with("id_")
        && !key.ends_with(".pub")
    {
        return Some(PrivateKind::SshKey);
    }
    PRIVATE_DIRS
        .iter()
        .find(|(dir, _)| rel.starts_with(dir))
        .or_else(|| PRIVATE_FILES.iter().find(|(file, _)| rel == *file))
        .or_else(|| PRIVATE_NAMES.iter().find(|(n, _)| name == *n))
        .or_else(|| {
            PRIVATE_EXTENSIONS
                .iter()
                .find(|(ext, _)| name.ends_with(ext))
        })
        .map(|(_, kind)| *kind)
}

/// Content that only a private key or identity holds, anywhere in a file.
const PRIVATE_CONTENT: &[(&[u8], PrivateKind)] = &[
    // PEM: RSA, EC, DSA, ENCRYPTED, PKCS#8 and OpenSSH keys, on the BEGIN and END lines.
    (b" PRIVATE KEY-----", PrivateKind::PemKey),
    (b"-----BEGIN PRIVATE KEY", PrivateKind::PemKey),
    (b"BEGIN SSH2 ENCRYPTED PRIVATE KEY", PrivateKind::PemKey),
    (b"PGP PRIVATE KEY BLOCK-----", PrivateKind::GnupgSecret),
    (b"AGE-SECRET-KEY-1", PrivateKind::AgeIdentity),
    (b"age-secret-key-1", PrivateKind::AgeIdentity),
    (b"AGE-PLUGIN-", PrivateKind::AgeIdentity),
    (b"PuTTY-User-Key-File-", PrivateKind::SshKey),
    // GnuPG's private-keys-v1.d, in its extended and canonical S-expression forms.
    (b"(protected-private-key", PrivateKind::GnupgSecret),
    (b"(private-key", PrivateKind::GnupgSecret),
    (b":protected-private-key", PrivateKind::GnupgSecret),
    (b"(11:private-key", PrivateKind::GnupgSecret),
];

/// Whether `bytes` hold a private key or an age identity anywhere.
pub fn by_content(bytes: &[u8]) -> Option<PrivateKind> {
    let hit = PRIVATE_CONTENT
        .iter()
        .find(|(needle, _)| contains(bytes, needle))?;
    // An OpenSSH key is an SSH key, whatever the armour says.
    if hit.1 == PrivateKind::PemKey && contains(bytes, b"OPENSSH PRIVATE KEY-----") {
        return Some(PrivateKind::SshKey);
    }
    Some(hit.1)
}

/// Whether `needle` (non-empty) occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut from = 0;
    while let Some(pos) = hay[from..].iter().position(|&b| b == first) {
        let at = from + pos;
        if hay[at + 1..].starts_with(rest) {
            return true;
        }
        from = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_recognised_by_path() {
        use PrivateKind::*;
        for (rel, kind) in [
            (".ssh/id_ed25519", SshKey),
            (".ssh/id_rsa", SshKey),
            (".ssh/id_ecdsa_sk", SshKey),
            (".SSH/ID_RSA", SshKey),
            (".gnupg/private-keys-v1.d/0123ABCD.key", GnupgSecret),
            (".gnupg/secring.gpg", GnupgSecret),
            (".gnupg/openpgp-revocs.d/ABCD.rev", GnupgSecret),
            (".git-credentials", Credentials),
            ("work/.git-credentials", Credentials),
            (".config/git/credentials", Credentials),
            (".netrc", Credentials),
            ("_netrc", Credentials),
            (".pgpass", Credentials),
            (".vault-token", Credentials),
            (".cargo/credentials.toml", Credentials),
            (".aws/credentials", CloudCredentials),
            (".aws/sso/cache/abc.json", CloudCredentials),
            (".config/gcloud/credentials.db", CloudCredentials),
            (".config/gcloud/access_tokens.db", CloudCredentials),
            (
                ".config/gcloud/application_default_credentials.json",
                CloudCredentials,
            ),
            (
                ".config/gcloud/legacy_credentials/me@example.org/adc.json",
                CloudCredentials,
            ),
            (".azure/accessTokens.json", CloudCredentials),
            (".azure/msal_token_cache.json", CloudCredentials),
            (".azure/service_principal_entries.json", CloudCredentials),
            (".docker/config.json", CloudCredentials),
            (".kube/config", CloudCredentials),
            (".config/gh/hosts.yml", CloudCredentials),
            ("certs/client.p12", PemKey),
            ("keys/server.PFX", PemKey),
            ("putty/me.ppk", SshKey),
            (".config/fleetkey/identity.txt", FleetkeyKey),
            (".config/fleetkey/identity.txt.next", FleetkeyKey),
            (".config/fleetkey/signing_key", FleetkeyKey),
        ] {
            assert_eq!(by_path(rel), Some(kind), "{rel}");
            assert_eq!(detect(rel, b"harmless\n"), Some(kind), "{rel}");
        }
    }

    #[test]
    fn ordinary_dotfiles_are_not_private_by_path() {
        for rel in [
            ".ssh/id_ed25519.pub",
            ".ssh/config",
            ".ssh/known_hosts",
            ".ssh/keys/id_rsa",
            ".gnupg/gpg.conf",
            ".gnupg/pubring.kbx",
            ".aws/config",
            ".config/gcloud/configurations/config_default",
            ".azure/config",
            ".docker/daemon.json",
            ".kube/cache/x",
            ".config/gh/config.yml",
            ".gitconfig",
            ".zshrc",
            "notes/netrc.md",
            "server.pem",
            "slides.key",
        ] {
            assert_eq!(by_path(rel), None, "{rel}");
        }
    }

    #[test]
    fn key_armour_is_recognised_anywhere_in_the_content() {
        use PrivateKind::*;
        let long_prefix = "# a long comment\n".repeat(2000);
        for (text, kind) in [
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", SshKey),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n", PemKey),
            ("-----BEGIN EC PRIVATE KEY-----\nMHcC\n", PemKey),
            ("-----BEGIN DSA PRIVATE KEY-----\n", PemKey),
            ("-----BEGIN PRIVATE KEY-----\nMIIE\n", PemKey),
            ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n", PemKey),
            ("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nP2/5\n", PemKey),
            ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQ", GnupgSecret),
            (
                "# created: 2026\n# public key: age1x\nAGE-SECRET-KEY-1QQQ\n",
                AgeIdentity,
            ),
            ("age-secret-key-1qqq\n", AgeIdentity),
            ("AGE-PLUGIN-YUBIKEY-1QQ\n", AgeIdentity),
            ("PuTTY-User-Key-File-3: ssh-ed25519\n", SshKey),
            (
                "Created: 20260101T000000\nKey: (protected-private-key (rsa (n #00",
                GnupgSecret,
            ),
            ("(21:protected-private-key(3:rsa(1:n", GnupgSecret),
            ("(11:private-key(3:ecc", GnupgSecret),
        ] {
            assert_eq!(by_content(text.as_bytes()), Some(kind), "{text}");
            // A certificate chain first, the key last, far past any header.
            let bundle = format!(
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n{long_prefix}{text}"
            );
            assert_eq!(by_content(bundle.as_bytes()), Some(kind), "late {text}");
            // *.pem and *.key files are caught by their armour.
            assert_eq!(detect("tls/server.pem", text.as_bytes()), Some(kind));
            assert_eq!(detect("tls/server.key", text.as_bytes()), Some(kind));
        }
    }

    #[test]
    fn public_material_and_ordinary_text_are_not_private() {
        for text in [
            "ssh-ed25519 AAAAC3Nza me@host\n",
            "Host *\n  IdentityFile ~/.ssh/id_ed25519\n",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
            "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs\n",
            "# how to make a private key: ssh-keygen -t ed25519\n",
            "",
        ] {
            assert_eq!(by_content(text.as_bytes()), None, "{text}");
            assert_eq!(detect(".config/app/x.pem", text.as_bytes()), None, "{text}");
        }
        assert_eq!(by_content(&[0u8, 255, 1, 2]), None);
    }

    #[test]
    fn substring_search_finds_needles_at_every_position() {
        assert!(contains(b"abc", b"abc"));
        assert!(contains(b"xxabc", b"abc"));
        assert!(contains(b"aababc", b"abc"));
        assert!(!contains(b"ab", b"abc"));
        assert!(!contains(b"", b"a"));
        assert!(contains(b"", b""));
    }
}
