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
//! the two tokens (an unknown `{{fleetkey.…` in the repo is left as it is).

use std::borrow::Cow;
use std::path::Path;

use super::managed::Managed;

/// What the repo holds where the capturing machine had its home path.
pub const HOME_TOKEN: &str = "{{fleetkey.home}}";
/// What the repo holds where the live file had the text [`PREFIX`] itself.
pub const ESCAPE_TOKEN: &str = "{{fleetkey.lit}}";
/// The text every token starts with.
pub const PREFIX: &str = "{{fleetkey.";

/// The transform of one machine: its home path and the `[sync] literal` list.
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    /// `None`: no transform at all (chezmoi backend, or a home path too short to be safe).
    home: Option<Vec<u8>>,
    literal: Vec<Managed>,
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
        }
    }

    /// Whether the managed file `rel` is transformed here (before looking at its content).
    pub fn covers(&self, rel: &str) -> bool {
        self.home.is_some() && !self.literal.iter().any(|m| m.covers(rel))
    }

    /// The repo form of the live content `bytes` of `rel`.
    pub fn to_repo<'a>(&self, rel: &str, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.home {
            Some(home) if self.covers(rel) && !is_binary(bytes) => encode(bytes, home),
            _ => Cow::Borrowed(bytes),
        }
    }

    /// The live form of the repo content `bytes` of `rel`.
    pub fn to_live<'a>(&self, rel: &str, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.home {
            Some(home) if self.covers(rel) && !is_binary(bytes) => decode(bytes, home),
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
pub fn encode<'a>(bytes: &'a [u8], home: &[u8]) -> Cow<'a, [u8]> {
    let prefix = PREFIX.as_bytes();
    let first = home.first().copied();
    let may_change = |b: u8| Some(b) == first || b == b'{';
    if !bytes.iter().any(|b| may_change(*b)) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        if !home.is_empty() && home_at(bytes, i, home) {
            out.extend_from_slice(HOME_TOKEN.as_bytes());
            i += home.len();
            changed = true;
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

/// Repo form to live form: [`HOME_TOKEN`] → `home`, [`ESCAPE_TOKEN`] → [`PREFIX`]; any other
/// text, an unknown `{{fleetkey.…` included, is kept.
pub fn decode<'a>(bytes: &'a [u8], home: &[u8]) -> Cow<'a, [u8]> {
    let prefix = PREFIX.as_bytes();
    if !bytes.windows(prefix.len()).any(|w| w == prefix) {
        return Cow::Borrowed(bytes);
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
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(out)
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

    proptest! {
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
