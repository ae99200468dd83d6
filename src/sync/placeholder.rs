//! Home-path placeholders (native backend): the home path differs from machine to machine
//! (`/Users/alice`, `/home/bob`), so in text files the fleet repo holds `{{fleetkey.home}}`
//! where the machine that captured the file had its own home path, and apply writes the local
//! home path back.
//!
//! The repo form, readable with stock tools (`sed 's|{{fleetkey.home}}|/home/me|g'` gives the
//! live file back, then `s|{{fleetkey.lit}}|{{fleetkey.|g` for the rare escape):
//!
//! - `{{fleetkey.home}}` stands for the home path of the machine that reads the file;
//! - `{{fleetkey.lit}}` stands for the literal text `{{fleetkey.`, so content that already holds
//!   the placeholder text (documentation about fleetkey, say) comes back byte for byte;
//! - everything else is the file's own bytes.
//!
//! Capture ([`Placeholders::to_repo`]) replaces the home path where it stands as a whole path
//! prefix: not preceded by a name character or `/` and not followed by a name character
//! (`A-Z a-z 0-9 . _ -`), so `/home/al` never matches inside `/home/alice` or `/mnt/home/al`.
//! Apply ([`Placeholders::to_live`]) replaces the two tokens and nothing else. The round trip is
//! exact on the machine that wrote it, for any content (property-tested below), and a second
//! machine sees the first one's content with only the home path changed. Three-way merges and
//! diffs between commits work on the repo form; conflict copies on disk hold the live form.
//!
//! Never transformed: binary files (a NUL byte anywhere: unlike git's first-8000-bytes rule,
//! this cannot change when the home path changes length, so both directions agree on what is
//! binary), paths listed in `[sync] literal`, and every file of the chezmoi backend (chezmoi
//! has its own templates). Must never: change a file whose repo form it did not write, beyond
//! the tokens (an unknown `{{fleetkey.…` in the repo is left as it is).
//!
//! Fleet secrets, the same way ([`secrets`]): `{{fleetkey.secret.KEY}}` stands for the value
//! of the fleet secret KEY. Capture replaces every exact occurrence of a secret's value (one
//! that [`crate::tokens::substitutable`] accepts: 8 bytes or more, not low-entropy) by its
//! placeholder; apply writes the value back on every machine that can read the secrets. A
//! placeholder whose KEY this machine cannot substitute (no such secret, a value too short,
//! secrets unreadable here) stays as it is, both ways, and apply reports it: never an empty
//! credential. (So a machine that cannot read the secrets keeps `{{fleetkey.secret.KEY}}`
//! text as a placeholder when it captures; text that was an escaped literal elsewhere then
//! becomes a real placeholder: only documentation about fleetkey is affected, and no value
//! moves.) Because apply substitutes only what capture substitutes back, a value written
//! by apply can never reach the repo form, whatever placeholders a compromised member plants
//! in a managed file (the exfiltration analysis is in docs/sync.md, "Secrets in dotfiles").

mod secrets;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use super::managed::Managed;

pub use secrets::SecretValues;

/// What the repo holds where the capturing machine had its home path.
pub const HOME_TOKEN: &str = "{{fleetkey.home}}";
/// What the repo holds where the live file had the text [`PREFIX`] itself.
pub const ESCAPE_TOKEN: &str = "{{fleetkey.lit}}";
/// The text every token starts with.
pub const PREFIX: &str = "{{fleetkey.";
/// The text a secret's placeholder starts with: `{{fleetkey.secret.KEY}}`.
pub const SECRET_PREFIX: &str = "{{fleetkey.secret.";

/// The transform of one machine: its home path and the `[sync] literal` list.
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    /// `None`: no transform at all (chezmoi backend, or a home path too short to be safe).
    home: Option<Vec<u8>>,
    literal: Vec<Managed>,
    /// The fleet secrets this machine substitutes (none when it cannot read them).
    secrets: Arc<SecretValues>,
}

/// The live form of a file, and what its secret placeholders became.
pub struct Decoded<'a> {
    /// The live bytes.
    pub bytes: Cow<'a, [u8]>,
    /// Whether a secret's value was written in (the file is then written 0600).
    pub substituted: bool,
    /// The keys of placeholders left as they are (no such secret here, or a value too short
    /// or uniform to substitute), each once.
    pub unresolved: Vec<String>,
}

impl Placeholders {
    /// No transform: every file byte for byte.
    pub fn off() -> Placeholders {
        Placeholders::default()
    }

    /// The transform for the home directory `home`, leaving the `literal` paths alone. A home
    /// of `/` (or one that is not absolute) turns it off.
    pub fn new(home: &Path, literal: Vec<Managed>) -> Placeholders {
        use std::os::unix::ffi::OsStrExt;
        let bytes = home.as_os_str().as_bytes();
        let trimmed = match bytes.iter().rposition(|b| *b != b'/') {
            Some(end) => &bytes[..=end],
            None => &[][..],
        };
        let usable = trimmed.len() >= 2 && trimmed.starts_with(b"/");
        Placeholders {
            home: usable.then(|| trimmed.to_vec()),
            literal,
            secrets: Arc::default(),
        }
    }

    /// The same transform, substituting `secrets` too.
    pub fn with_secrets(mut self, secrets: SecretValues) -> Placeholders {
        self.secrets = Arc::new(secrets);
        self
    }

    /// The same transform, capturing the values `earlier` held (the secrets as this machine
    /// last applied them) as their keys' placeholders too.
    pub fn with_earlier_secrets(&self, earlier: &crate::envfile::EnvFile) -> Placeholders {
        let mut out = self.clone();
        out.secrets = Arc::new((*self.secrets).clone().with_earlier(earlier));
        out
    }

    /// The secrets this transform substitutes.
    pub fn secrets(&self) -> &SecretValues {
        &self.secrets
    }

    /// The key of a fleet secret whose value `bytes` (a repo form) still holds in plain, if
    /// any: a binary or `[sync] literal` file, which is never transformed.
    pub fn leaked_secret(&self, bytes: &[u8]) -> Option<&str> {
        self.secrets.find_any(bytes)
    }

    /// Whether the managed file `rel` is transformed here (before looking at its content).
    pub fn covers(&self, rel: &str) -> bool {
        self.home.is_some() && !self.literal.iter().any(|m| m.covers(rel))
    }

    /// The repo form of the live content `bytes` of `rel`.
    pub fn to_repo<'a>(&self, rel: &str, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.home {
            Some(home) if self.covers(rel) && !is_binary(bytes) => {
                encode_with(bytes, home, &self.secrets)
            }
            _ => Cow::Borrowed(bytes),
        }
    }

    /// The live form of the repo content `bytes` of `rel`.
    pub fn to_live<'a>(&self, rel: &str, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        self.to_live_checked(rel, bytes).bytes
    }

    /// The live form of the repo content `bytes` of `rel`, with what became of its secret
    /// placeholders.
    pub fn to_live_checked<'a>(&self, rel: &str, bytes: &'a [u8]) -> Decoded<'a> {
        match &self.home {
            Some(home) if self.covers(rel) && !is_binary(bytes) => {
                decode_with(bytes, home, &self.secrets)
            }
            _ => Decoded {
                bytes: Cow::Borrowed(bytes),
                substituted: false,
                unresolved: Vec::new(),
            },
        }
    }

    /// The form `diff` and `log` show: the live form with every secret placeholder left as it
    /// is (never a value).
    pub fn to_shown<'a>(&self, rel: &str, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.home {
            Some(home) if self.covers(rel) && !is_binary(bytes) => {
                decode_with(bytes, home, &SecretValues::default()).bytes
            }
            _ => Cow::Borrowed(bytes),
        }
    }
}

/// Whether `bytes` is binary for the transform: it holds a NUL byte.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

/// A byte that can continue a file or directory name.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// `home` (non-empty) stands at `at` in `bytes` as a whole path prefix.
fn home_at(bytes: &[u8], at: usize, home: &[u8]) -> bool {
    bytes[at..].starts_with(home)
        && (at == 0 || !(name_byte(bytes[at - 1]) || bytes[at - 1] == b'/'))
        && bytes.get(at + home.len()).is_none_or(|b| !name_byte(*b))
}

/// Live form to repo form: `home` → [`HOME_TOKEN`], [`PREFIX`] → [`ESCAPE_TOKEN`].
#[cfg(test)]
pub fn encode<'a>(bytes: &'a [u8], home: &[u8]) -> Cow<'a, [u8]> {
    encode_with(bytes, home, &SecretValues::default())
}

/// Repo form to live form: [`HOME_TOKEN`] → `home`, [`ESCAPE_TOKEN`] → [`PREFIX`]; any other
/// text, an unknown `{{fleetkey.…` included, is kept.
#[cfg(test)]
pub fn decode<'a>(bytes: &'a [u8], home: &[u8]) -> Cow<'a, [u8]> {
    decode_with(bytes, home, &SecretValues::default()).bytes
}

/// Live form to repo form: a value of `secrets` → its `{{fleetkey.secret.KEY}}`, `home` →
/// [`HOME_TOKEN`], a secret placeholder whose KEY `secrets` does not substitute → itself (it
/// comes back as it is), any other [`PREFIX`] → [`ESCAPE_TOKEN`].
pub fn encode_with<'a>(bytes: &'a [u8], home: &[u8], secrets: &SecretValues) -> Cow<'a, [u8]> {
    let prefix = PREFIX.as_bytes();
    let first = home.first().copied();
    let may_change = |b: u8| Some(b) == first || b == b'{';
    if secrets.is_empty() && !bytes.iter().any(|b| may_change(*b)) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        if let Some((key, len)) = secrets.value_at(bytes, i) {
            push_secret_token(&mut out, key);
            i += len;
            changed = true;
        } else if !home.is_empty() && home_at(bytes, i, home) {
            out.extend_from_slice(HOME_TOKEN.as_bytes());
            i += home.len();
            changed = true;
        } else if let Some((key, len)) = secret_token_at(bytes, i)
            && secrets.current(key).is_none()
            && secrets.find_any(&bytes[i..i + len]).is_none()
        {
            // Kept only when no value hides inside it: `{{fleetkey.secret.VALUE}}` (which a
            // planted `{{fleetkey.lit}}secret.{{fleetkey.secret.KEY}}}}` decodes to) is escaped
            // and its value replaced like any other.
            out.extend_from_slice(&bytes[i..i + len]);
            i += len;
        } else if bytes[i..].starts_with(prefix) {
            out.extend_from_slice(ESCAPE_TOKEN.as_bytes());
            i += prefix.len();
            changed = true;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(bytes)
    }
}

/// Repo form to live form: [`HOME_TOKEN`] → `home`, [`ESCAPE_TOKEN`] → [`PREFIX`],
/// `{{fleetkey.secret.KEY}}` → KEY's value when `secrets` substitutes KEY; any other text, an
/// unknown `{{fleetkey.…` included, is kept.
pub fn decode_with<'a>(bytes: &'a [u8], home: &[u8], secrets: &SecretValues) -> Decoded<'a> {
    let prefix = PREFIX.as_bytes();
    let mut decoded = Decoded {
        bytes: Cow::Borrowed(bytes),
        substituted: false,
        unresolved: Vec::new(),
    };
    if !bytes.windows(prefix.len()).any(|w| w == prefix) {
        return decoded;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(HOME_TOKEN.as_bytes()) {
            out.extend_from_slice(home);
            i += HOME_TOKEN.len();
        } else if bytes[i..].starts_with(ESCAPE_TOKEN.as_bytes()) {
            out.extend_from_slice(prefix);
            i += ESCAPE_TOKEN.len();
        } else if let Some((key, len)) = secret_token_at(bytes, i) {
            match secrets.current(key) {
                Some(value) => {
                    out.extend_from_slice(value);
                    decoded.substituted = true;
                }
                None => {
                    out.extend_from_slice(&bytes[i..i + len]);
                    if !decoded.unresolved.iter().any(|k| k == key) {
                        decoded.unresolved.push(key.to_string());
                    }
                }
            }
            i += len;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    decoded.bytes = Cow::Owned(out);
    decoded
}

/// Longest KEY a secret placeholder may name.
const KEY_MAX: usize = 128;

/// The KEY and the length of a `{{fleetkey.secret.KEY}}` placeholder at `at`, KEY of the
/// secrets grammar (`[A-Za-z_][A-Za-z0-9_]*`, at most 128 bytes). Anything else is not a
/// placeholder (and is escaped like any other `{{fleetkey.` text).
pub fn secret_token_at(bytes: &[u8], at: usize) -> Option<(&str, usize)> {
    let rest = bytes[at..].strip_prefix(SECRET_PREFIX.as_bytes())?;
    let n = rest
        .iter()
        .take(KEY_MAX + 1)
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    if n == 0 || n > KEY_MAX || rest[0].is_ascii_digit() || !rest[n..].starts_with(b"}}") {
        return None;
    }
    let key = std::str::from_utf8(&rest[..n]).ok()?;
    Some((key, SECRET_PREFIX.len() + n + 2))
}

fn push_secret_token(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(SECRET_PREFIX.as_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALICE: &[u8] = b"/tmp/x/home-alice";
    const BOB: &[u8] = b"/var/tmp/fleet/deeper/home-bob";

    #[test]
    fn the_home_path_becomes_the_placeholder_and_back() {
        let live = b"source /tmp/x/home-alice/.config/app/aliases.sh\nexport A=/tmp/x/home-alice\n";
        let repo = encode(live, ALICE);
        assert_eq!(
            repo.as_ref(),
            b"source {{fleetkey.home}}/.config/app/aliases.sh\nexport A={{fleetkey.home}}\n"
        );
        assert_eq!(decode(&repo, ALICE).as_ref(), live);
        assert_eq!(
            decode(&repo, BOB).as_ref(),
            b"source /var/tmp/fleet/deeper/home-bob/.config/app/aliases.sh\nexport A=/var/tmp/fleet/deeper/home-bob\n"
        );
    }

    #[test]
    fn only_a_whole_path_prefix_is_replaced() {
        for text in [
            &b"/tmp/x/home-alice2/f"[..],
            b"/mnt/tmp/x/home-alice/f",
            b"x/tmp/x/home-alice",
            b"/tmp/x/home-alice.bak",
        ] {
            assert!(matches!(encode(text, ALICE), Cow::Borrowed(_)), "{text:?}");
        }
        assert_eq!(
            encode(b"\"/tmp/x/home-alice\":/tmp/x/home-alice/b", ALICE).as_ref(),
            b"\"{{fleetkey.home}}\":{{fleetkey.home}}/b"
        );
    }

    #[test]
    fn placeholder_text_already_in_a_file_is_escaped() {
        let live = b"docs: {{fleetkey.home}} means your home; {{fleetkey.lit}} too";
        let repo = encode(live, ALICE);
        assert_eq!(
            repo.as_ref(),
            b"docs: {{fleetkey.lit}}home}} means your home; {{fleetkey.lit}}lit}} too"
        );
        assert_eq!(decode(&repo, ALICE).as_ref(), live);
        assert_eq!(decode(&repo, BOB).as_ref(), live);
    }

    #[test]
    fn binary_and_literal_files_and_a_root_home_are_left_alone() {
        let p = Placeholders::new(
            Path::new("/tmp/x/home-alice/"),
            vec![Managed {
                rel: ".config/lit".into(),
                dir: true,
            }],
        );
        let text = b"/tmp/x/home-alice/x";
        assert_eq!(p.to_repo(".zshrc", text).as_ref(), b"{{fleetkey.home}}/x");
        assert_eq!(p.to_repo(".config/lit/a", text).as_ref(), text);
        let binary = b"\0/tmp/x/home-alice/x";
        assert_eq!(p.to_repo(".zshrc", binary).as_ref(), binary);
        assert_eq!(
            p.to_live(".zshrc", b"\0{{fleetkey.home}}").as_ref(),
            b"\0{{fleetkey.home}}"
        );
        let root = Placeholders::new(Path::new("/"), Vec::new());
        assert_eq!(root.to_repo(".zshrc", b"/x").as_ref(), b"/x");
        assert_eq!(
            root.to_live(".zshrc", b"{{fleetkey.home}}").as_ref(),
            b"{{fleetkey.home}}"
        );
    }

    const TOKEN: &str = "npm_Zk3QpX7vLm2Rt9Wy4Bc6Dh8Jf1Gn5Ks0Ae7X";

    fn secrets(text: &str) -> SecretValues {
        SecretValues::new(&crate::envfile::parse(text).unwrap(), "c1".into())
    }

    #[test]
    fn a_secret_value_becomes_its_placeholder_and_back() {
        let s = secrets(&format!("NPM_TOKEN={TOKEN}\nSHORT=abc\n"));
        let live = format!("//registry.npmjs.org/:_authToken={TOKEN}\nhome=/tmp/x/home-alice\n");
        let repo = encode_with(live.as_bytes(), ALICE, &s);
        assert_eq!(
            repo.as_ref(),
            b"//registry.npmjs.org/:_authToken={{fleetkey.secret.NPM_TOKEN}}\nhome={{fleetkey.home}}\n"
        );
        let back = decode_with(&repo, BOB, &s);
        assert!(back.substituted && back.unresolved.is_empty());
        assert_eq!(
            back.bytes.as_ref(),
            format!(
                "//registry.npmjs.org/:_authToken={TOKEN}\nhome=/var/tmp/fleet/deeper/home-bob\n"
            )
            .as_bytes()
        );
        // Without the secrets (or with a value too short to substitute) the placeholder stays.
        let none = decode_with(&repo, BOB, &SecretValues::default());
        assert_eq!(none.unresolved, ["NPM_TOKEN"]);
        assert!(!none.substituted);
        let short = decode_with(b"p={{fleetkey.secret.SHORT}}", ALICE, &s);
        assert_eq!(short.bytes.as_ref(), b"p={{fleetkey.secret.SHORT}}");
        assert_eq!(short.unresolved, ["SHORT"]);
        // And a machine without the value captures the placeholder back unchanged.
        assert_eq!(
            encode_with(&none.bytes, BOB, &SecretValues::default()).as_ref(),
            repo.as_ref()
        );
    }

    #[test]
    fn placeholder_text_in_a_live_file_comes_back_as_it_was() {
        let s = secrets(&format!("NPM_TOKEN={TOKEN}\n"));
        // A known key's placeholder text is escaped (apply would otherwise fill it in); an
        // unknown key's stays a placeholder (apply leaves it); a malformed one is escaped.
        let live =
            b"a {{fleetkey.secret.NPM_TOKEN}} b {{fleetkey.secret.OTHER}} c {{fleetkey.secret.9}}";
        let repo = encode_with(live, ALICE, &s);
        assert_eq!(
            repo.as_ref(),
            &b"a {{fleetkey.lit}}secret.NPM_TOKEN}} b {{fleetkey.secret.OTHER}} c {{fleetkey.lit}}secret.9}}"[..]
        );
        assert_eq!(decode_with(&repo, ALICE, &s).bytes.as_ref(), live);
    }

    #[test]
    fn a_value_planted_inside_placeholder_text_is_still_replaced() {
        let s = secrets("KEY_A=abcdefgh1234_XYZ\n");
        let planted = b"{{fleetkey.lit}}secret.{{fleetkey.secret.KEY_A}}}}";
        let live = decode_with(planted, ALICE, &s).bytes.into_owned();
        assert_eq!(live, b"{{fleetkey.secret.abcdefgh1234_XYZ}}");
        let repo = encode_with(&live, ALICE, &s);
        assert_eq!(repo.as_ref(), planted);
        assert_eq!(s.find_any(&repo), None);
    }

    #[test]
    fn an_earlier_value_is_captured_as_the_placeholder_and_a_leak_is_found() {
        let old = crate::envfile::parse(&format!("NPM_TOKEN={TOKEN}\n")).unwrap();
        let s = secrets("NPM_TOKEN=npm_NewValue0123456789abcdefghijklmnopq\n").with_earlier(&old);
        let live = format!("t={TOKEN}");
        let repo = encode_with(live.as_bytes(), ALICE, &s);
        assert_eq!(repo.as_ref(), b"t={{fleetkey.secret.NPM_TOKEN}}");
        assert_eq!(
            decode_with(&repo, ALICE, &s).bytes.as_ref(),
            b"t=npm_NewValue0123456789abcdefghijklmnopq"
        );
        assert_eq!(
            s.find_any(format!("\0bin{TOKEN}").as_bytes()),
            Some("NPM_TOKEN")
        );
        assert_eq!(s.find_any(b"nothing here"), None);
    }

    /// Content made of the pieces that matter (a home path, tokens, their fragments) and of
    /// bytes that cannot spell another machine's home path.
    fn content(home: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(home.to_vec()),
            Just(PREFIX.as_bytes().to_vec()),
            Just(HOME_TOKEN.as_bytes().to_vec()),
            Just(ESCAPE_TOKEN.as_bytes().to_vec()),
            Just(b"{{fleetkey".to_vec()),
            Just(b"{".to_vec()),
            Just(b"}}".to_vec()),
            prop::sample::select(b"{}/. \n\"=:_-09XYZ\xff\x01".to_vec()).prop_map(|b| vec![b]),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    /// Content with secret values, their placeholders and fragments too.
    fn content_with_secrets(home: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            content(home),
            Just(TOKEN.as_bytes().to_vec()),
            Just(TOKEN.as_bytes()[..10].to_vec()),
            Just(b"{{fleetkey.secret.NPM_TOKEN}}".to_vec()),
            Just(b"{{fleetkey.secret.OTHER}}".to_vec()),
            Just(b"{{fleetkey.secret.".to_vec()),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn with_secrets_both_ways_on_the_machine_that_wrote_it(x in content_with_secrets(ALICE)) {
            let s = secrets(&format!("NPM_TOKEN={TOKEN}\n"));
            let repo = encode_with(&x, ALICE, &s).into_owned();
            prop_assert_eq!(decode_with(&repo, ALICE, &s).bytes.into_owned(), x.clone());
            // The value never stays in the repo form.
            prop_assert!(!repo.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
            // Another machine with the secrets sees the same repo form again.
            let on_bob = decode_with(&repo, BOB, &s).bytes.into_owned();
            prop_assert_eq!(encode_with(&on_bob, BOB, &s).into_owned(), repo.clone());
            // One without them keeps the placeholders, and its own round trip is exact.
            let none = SecretValues::default();
            let bare = decode_with(&repo, BOB, &none).bytes.into_owned();
            let again = encode_with(&bare, BOB, &none).into_owned();
            prop_assert_eq!(decode_with(&again, BOB, &none).bytes.into_owned(), bare);
            prop_assert!(!again.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
        }

        #[test]
        fn any_bytes_come_back_byte_for_byte(x in prop::collection::vec(any::<u8>(), 0..200)) {
            let repo = encode(&x, ALICE);
            prop_assert_eq!(decode(&repo, ALICE).into_owned(), x.clone());
        }

        #[test]
        fn both_ways_on_the_machine_that_wrote_it(x in content(ALICE)) {
            let repo = encode(&x, ALICE).into_owned();
            prop_assert_eq!(decode(&repo, ALICE).into_owned(), x.clone());
            let live = decode(&repo, ALICE).into_owned();
            prop_assert_eq!(encode(&live, ALICE).into_owned(), repo.clone());
        }

        #[test]
        fn another_machine_sees_the_same_repo_form(x in content(ALICE)) {
            // Bob applies Alice's file and captures it again: the repo form does not move,
            // so two machines never undo each other's capture.
            let repo = encode(&x, ALICE).into_owned();
            let on_bob = decode(&repo, BOB).into_owned();
            prop_assert_eq!(encode(&on_bob, BOB).into_owned(), repo.clone());
            // And Alice gets her own bytes back from Bob's capture.
            let again = encode(&on_bob, BOB).into_owned();
            prop_assert_eq!(decode(&again, ALICE).into_owned(), x.clone());
        }

        #[test]
        fn the_other_way_round(x in content(BOB)) {
            let repo = encode(&x, BOB).into_owned();
            let on_alice = decode(&repo, ALICE).into_owned();
            prop_assert_eq!(encode(&on_alice, ALICE).into_owned(), repo.clone());
            let again = encode(&on_alice, ALICE).into_owned();
            prop_assert_eq!(decode(&again, BOB).into_owned(), x.clone());
        }
    }
}
