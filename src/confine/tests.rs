//! Tests of the path rules ([`super::Confinement`]) and of the confined walk
//! ([`super::walk::HomeDir`]), with property tests that plant symlinks before and during a walk.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::walk::Step;
use super::*;
use crate::limits::{self, Limit};

fn machine(home: &str) -> Confinement {
    Confinement::new(
        home,
        [
            (
                OwnDir::Clone,
                format!("{home}/.local/share/fleetkey/fleet").into(),
            ),
            (OwnDir::Config, format!("{home}/.config/fleetkey").into()),
            (OwnDir::Data, format!("{home}/.local/share/fleetkey").into()),
            (
                OwnDir::State,
                format!("{home}/.local/state/fleetkey").into(),
            ),
        ],
    )
}

fn reason(c: &Confinement, entry: &str) -> Reason {
    c.check_entry(entry).expect_err(entry).reason
}

#[test]
fn plain_entries_pass_as_files_and_directories() {
    let c = machine("/home/u");
    let f = c.check_entry("~/.zshrc").unwrap();
    assert_eq!((f.rel.as_str(), f.dir), (".zshrc", false));
    let d = c.check_entry("~/.config/git/").unwrap();
    assert_eq!((d.rel.as_str(), d.dir), (".config/git", true));
    assert_eq!(d.rel.components().collect::<Vec<_>>(), [".config", "git"]);
    assert_eq!(d.rel.file_name(), "git");
    assert_eq!(d.rel.to_string(), "~/.config/git");
    assert_eq!(f.rel.entry(), "~/.zshrc");
    for ok in [
        "~/.local/share/other/x",
        "~/.config/fleetkeys",
        "~/.gitignore",
        "~/.gitconfig",
        "~/.git-credentials",
        "~/notes/résumé.md",
        "~/a b/c",
    ] {
        c.check_entry(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn hostile_entries_are_refused_with_the_reason() {
    let c = machine("/home/u");
    for (entry, want) in [
        ("", Reason::Empty),
        ("~", Reason::IsHome),
        ("~/", Reason::IsHome),
        ("/etc/passwd", Reason::NotTilde),
        (".zshrc", Reason::NotTilde),
        ("~root/.ssh/authorized_keys", Reason::NotTilde),
        ("~/../x", Reason::EscapesHome),
        ("~/../../../etc/shadow", Reason::EscapesHome),
        ("~/a/../../x", Reason::EscapesHome),
        ("~/a/../b", Reason::NotNormal),
        ("~/./a", Reason::NotNormal),
        ("~/a//b", Reason::NotNormal),
        ("~/a/.", Reason::NotNormal),
        ("~//", Reason::IsHome),
        ("~/a//", Reason::NotNormal),
        ("~/a\0b", Reason::Nul),
        ("~/a\\..\\..\\x", Reason::Backslash),
        ("~/a\nb", Reason::Control),
        ("~/a\u{7f}", Reason::Control),
        ("~/proj/.git/config", Reason::Git(GitName::Dir)),
        ("~/proj/.GIT/hooks/", Reason::Git(GitName::Dir)),
        ("~/proj/.git./config", Reason::Git(GitName::Dir)),
        ("~/proj/git~1/config", Reason::Git(GitName::Dir)),
        ("~/.gitmodules", Reason::Git(GitName::Modules)),
        ("~/x/.GitAttributes", Reason::Git(GitName::Attributes)),
    ] {
        assert_eq!(reason(&c, entry), want, "{entry:?}");
    }
}

#[test]
fn long_paths_are_refused_before_any_other_work() {
    let c = machine("/home/u");
    let ok = format!("~/{}", "a/".repeat(limits::PATH_BYTES / 2 - 1) + "b");
    c.check_entry(&ok).unwrap();
    let long = format!("~/{}", "a/".repeat(limits::PATH_BYTES / 2) + "b");
    assert_eq!(
        reason(&c, &long),
        Reason::TooLong {
            max: limits::PATH_BYTES
        }
    );
    let huge = format!("~/{}", "x".repeat(10 << 20));
    let err = c.check_entry(&huge).unwrap_err();
    assert!(err.to_string().len() < 300, "the message stays short");
    let wide = format!("~/{}", "x".repeat(limits::COMPONENT_BYTES + 1));
    assert_eq!(
        reason(&c, &wide),
        Reason::ComponentTooLong {
            max: limits::COMPONENT_BYTES
        }
    );
}

#[test]
fn fleetkeys_own_directories_are_refused_inside_and_above() {
    let c = machine("/home/u");
    for (entry, what) in [
        ("~/.config/fleetkey/config.toml", OwnDir::Config),
        ("~/.config/fleetkey/identity.txt", OwnDir::Config),
        ("~/.config/fleetkey/", OwnDir::Config),
        ("~/.config/", OwnDir::Config),
        ("~/.CONFIG/FleetKey/signing_key", OwnDir::Config),
        ("~/.local/share/fleetkey/fleet/gd/config", OwnDir::Clone),
        ("~/.local/share/fleetkey/fleet/fleet.toml", OwnDir::Clone),
        ("~/.local/share/fleetkey/forge.git/config", OwnDir::Data),
        ("~/.local/", OwnDir::Clone),
        ("~/.local/state/fleetkey/lock", OwnDir::State),
        ("~/.local/state", OwnDir::State),
    ] {
        match reason(&c, entry) {
            Reason::OwnDirectory { what: got, .. } => assert_eq!(got, what, "{entry}"),
            other => panic!("{entry}: {other:?}"),
        }
    }
    let err = c
        .check_entry("~/.config/fleetkey/x")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "\"~/.config/fleetkey/x\" is or holds fleetkey's configuration directory (/home/u/.config/fleetkey); fleetkey cannot manage its own files"
    );
}

#[test]
fn own_directories_elsewhere_are_found_by_their_configured_and_real_paths() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(home.join("dotfiles/xdg-config/fleetkey")).unwrap();
    // ~/.config is a symlink into ~/dotfiles; XDG_CONFIG_HOME points through it.
    symlink(home.join("dotfiles/xdg-config"), home.join(".config")).unwrap();
    // The clone lives elsewhere in $HOME; the data dir outside $HOME altogether.
    let c = Confinement::new(
        &home,
        [
            (OwnDir::Clone, home.join("src/fleet")),
            (OwnDir::Config, home.join(".config/fleetkey/")),
            (OwnDir::Data, t.path().join("data/fleetkey")),
            (OwnDir::State, home.join(".local/state/../state2/fleetkey")),
        ],
    );
    for (entry, what) in [
        ("~/src/fleet/.git/config", None),
        ("~/src/fleet/keys/x", Some(OwnDir::Clone)),
        ("~/.config/fleetkey/identity.txt", Some(OwnDir::Config)),
        (
            "~/dotfiles/xdg-config/fleetkey/identity.txt",
            Some(OwnDir::Config),
        ),
        ("~/Dotfiles/XDG-config/", Some(OwnDir::Config)),
        ("~/.local/state2/fleetkey/x", Some(OwnDir::State)),
    ] {
        match (c.check_entry(entry), what) {
            (Err(r), Some(w)) => {
                assert!(
                    matches!(r.reason, Reason::OwnDirectory { what, .. } if what == w),
                    "{entry}: {r}"
                )
            }
            (Err(r), None) => assert!(matches!(r.reason, Reason::Git(_)), "{entry}: {r}"),
            (Ok(_), _) => panic!("{entry} passed"),
        }
    }
    // The data directory is outside $HOME: nothing in $HOME is it.
    c.check_entry("~/.local/share/fleetkey/x").unwrap();
}

#[test]
fn home_itself_being_fleetkeys_directory_refuses_everything() {
    let c = Confinement::new("/x/fleetkey", [(OwnDir::Config, "/x/fleetkey".into())]);
    assert!(matches!(
        reason(&c, "~/.zshrc"),
        Reason::OwnDirectory { .. }
    ));
}

#[test]
fn file_settings_refuse_directories() {
    let c = machine("/home/u");
    assert_eq!(
        c.check_file_entry("~/.ssh/authorized_keys")
            .unwrap()
            .as_str(),
        ".ssh/authorized_keys"
    );
    assert_eq!(
        c.check_file_entry("~/.leak/").unwrap_err().reason,
        Reason::NotAFile
    );
    assert_eq!(
        c.check_file_entry("/elsewhere/file").unwrap_err().reason,
        Reason::NotTilde
    );
    assert_eq!(
        c.check_file_entry("~/../outside/leak.env")
            .unwrap_err()
            .reason,
        Reason::EscapesHome
    );
}

#[test]
fn relative_paths_from_a_tree_get_the_same_rules() {
    let c = machine("/home/u");
    assert_eq!(
        c.check_rel(".config/git/config").unwrap().as_str(),
        ".config/git/config"
    );
    for (rel, want) in [
        ("", Reason::IsHome),
        ("/etc/x", Reason::NotNormal),
        ("a/", Reason::NotNormal),
        ("../x", Reason::EscapesHome),
        ("a/.git/config", Reason::Git(GitName::Dir)),
        (
            ".config/fleetkey/identity.txt",
            Reason::OwnDirectory {
                what: OwnDir::Config,
                dir: "/home/u/.config/fleetkey".into(),
            },
        ),
    ] {
        assert_eq!(c.check_rel(rel).unwrap_err().reason, want, "{rel:?}");
    }
}

#[test]
fn track_input_resolves_like_a_shell_then_gets_the_same_rules() {
    let c = machine("/home/u");
    let cwd = Path::new("/home/u/src/proj");
    let rel = |input: &str| {
        c.check_input(input, cwd)
            .map(|x| x.rel.as_str().to_string())
    };
    assert_eq!(rel("~/.zshrc").unwrap(), ".zshrc");
    assert_eq!(rel("/home/u/.config/git/").unwrap(), ".config/git");
    assert!(c.check_input("/home/u/.config/git/", cwd).unwrap().dir);
    assert_eq!(rel(".envrc").unwrap(), "src/proj/.envrc");
    assert_eq!(rel("../../.vimrc").unwrap(), ".vimrc");
    assert_eq!(rel("~/a/./b/../c").unwrap(), "a/c");
    for (input, want) in [
        ("/etc/passwd", Reason::EscapesHome),
        ("~/../other/.zshrc", Reason::EscapesHome),
        ("../../../etc/x", Reason::EscapesHome),
        ("~", Reason::IsHome),
        ("/home/u", Reason::IsHome),
        ("/home/user2/x", Reason::EscapesHome),
        (".git/config", Reason::Git(GitName::Dir)),
    ] {
        assert_eq!(
            c.check_input(input, cwd).unwrap_err().reason,
            want,
            "{input}"
        );
    }
    assert!(matches!(
        c.check_input("~/.config/fleetkey/identity.txt", cwd)
            .unwrap_err()
            .reason,
        Reason::OwnDirectory { .. }
    ));
}

#[test]
fn refusals_show_the_path_escaped_and_convert_to_a_refused_error() {
    let c = machine("/home/u");
    let err = c.check_entry("~/a\nb").unwrap_err();
    assert_eq!(err.to_string(), "\"~/a\\nb\" holds a control character");
    let e: crate::Error = err.into();
    assert!(matches!(e.kind(), crate::error::ErrorKind::Refused(_)));
}

/// A strategy for path components, hostile ones included.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,3}".prop_map(|s| s),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just(String::new()),
        1 => Just(".git".to_string()),
        1 => Just(".Git.".to_string()),
        1 => Just("GIT~1".to_string()),
        1 => Just(".config".to_string()),
        1 => Just("fleetkey".to_string()),
        1 => Just("a\\b".to_string()),
        1 => Just("\u{0}".to_string()),
        1 => Just("/".to_string()),
        1 => Just("~".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_string_is_checked_without_panicking(entry in ".{0,64}") {
        let c = machine("/home/u");
        let _ = c.check_entry(&entry);
        let _ = c.check_rel(&entry);
        let _ = c.check_input(&entry, Path::new("/home/u/x"));
    }

    #[test]
    fn what_passes_is_a_normal_path_strictly_under_home(
        parts in proptest::collection::vec(component(), 1..8),
        prefix in prop_oneof![Just("~/"), Just("/"), Just(""), Just("~"), Just("~/../")],
        dir in any::<bool>(),
    ) {
        let c = machine("/home/u");
        let entry = format!("{prefix}{}{}", parts.join("/"), if dir { "/" } else { "" });
        if let Ok(ok) = c.check_entry(&entry) {
            let rel = ok.rel.as_str();
            prop_assert!(entry.starts_with("~/"));
            prop_assert!(!rel.is_empty() && !rel.starts_with('/') && !rel.ends_with('/'));
            for comp in rel.split('/') {
                prop_assert!(!comp.is_empty() && comp != "." && comp != "..");
                prop_assert!(git_name(comp).is_none());
                prop_assert!(!comp.contains(['\0', '\\']));
            }
            let lower = rel.to_lowercase();
            prop_assert!(!lower.starts_with(".config/fleetkey") || lower.starts_with(".config/fleetkeyx"));
            prop_assert!(lower != ".config");
            let full = lexical_clean(&Path::new("/home/u").join(rel));
            prop_assert!(full.starts_with("/home/u") && full != Path::new("/home/u"));
            // The check is stable: the canonical form passes again, unchanged.
            let again = c.check_entry(&format!("~/{rel}{}", if ok.dir { "/" } else { "" })).unwrap();
            prop_assert_eq!(again, ok);
        }
    }

    #[test]
    fn track_input_never_resolves_outside_home(
        parts in proptest::collection::vec(component(), 1..8),
        absolute in any::<bool>(),
    ) {
        let c = machine("/home/u");
        let input = format!("{}{}", if absolute { "/home/u/" } else { "" }, parts.join("/"));
        if let Ok(ok) = c.check_input(&input, Path::new("/home/u/src")) {
            let full = lexical_clean(&Path::new("/home/u").join(ok.rel.as_str()));
            prop_assert!(full.starts_with("/home/u") && full != Path::new("/home/u"));
            prop_assert!(ok.rel.components().all(|c| git_name(c).is_none() && c != ".."));
        }
    }
}

// ---- The walk -------------------------------------------------------------------------------

/// A temp directory with `home/` and a sibling `outside/` whose state is checksummed.
struct World {
    root: tempfile::TempDir,
}

const MARKER: &[u8] = b"OUTSIDE-CONTENT";

impl World {
    fn new() -> World {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        let out = root.path().join("outside");
        std::fs::create_dir_all(out.join("sub/deeper")).unwrap();
        std::fs::write(out.join("file"), MARKER).unwrap();
        std::fs::write(out.join("sub/file"), MARKER).unwrap();
        std::fs::write(out.join("sub/deeper/file"), MARKER).unwrap();
        World { root }
    }
    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }
    fn outside(&self) -> PathBuf {
        self.root.path().join("outside")
    }
    fn confinement(&self) -> Confinement {
        let h = self.home();
        Confinement::new(
            &h,
            [
                (OwnDir::Config, h.join(".config/fleetkey")),
                (OwnDir::Data, h.join(".local/share/fleetkey")),
                (OwnDir::State, h.join(".local/state/fleetkey")),
            ],
        )
    }
    fn rel(&self, rel: &str) -> HomeRel {
        self.confinement().check_rel(rel).unwrap()
    }
    fn open(&self) -> HomeDir {
        HomeDir::open(&self.home()).unwrap()
    }
    /// Every entry below `outside/`: type, mode, and content or link target.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let p = e.path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let mode = m.permissions().mode();
                let what = if m.file_type().is_symlink() {
                    format!("link {:?}", std::fs::read_link(&p).unwrap())
                } else if m.is_dir() {
                    walk(&p, out);
                    "dir".to_string()
                } else {
                    format!("file {:?}", std::fs::read(&p).unwrap())
                };
                out.insert(p, format!("{mode:o} {what}"));
            }
        }
        let mut out = BTreeMap::new();
        let top = std::fs::symlink_metadata(self.outside()).unwrap();
        out.insert(self.outside(), format!("{:o}", top.permissions().mode()));
        walk(&self.outside(), &mut out);
        out
    }
}

const BIG: Limit = Limit {
    what: "a test file",
    bytes: 1 << 20,
};

#[test]
fn a_write_creates_directories_with_the_asked_mode_and_is_read_back() {
    let w = World::new();
    let home = w.open();
    home.write_file(&w.rel("a/b/c.txt"), b"one", 0o644, DirMode::Shared)
        .unwrap();
    home.write_file(&w.rel(".ssh/x/key"), b"two", 0o600, DirMode::Private)
        .unwrap();
    let mode = |rel: &str| {
        std::fs::symlink_metadata(w.home().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("a"), 0o755);
    assert_eq!(mode("a/b"), 0o755);
    assert_eq!(mode("a/b/c.txt"), 0o644);
    assert_eq!(mode(".ssh"), 0o700);
    assert_eq!(mode(".ssh/x/key"), 0o600);
    let got = home.read_file(&w.rel("a/b/c.txt"), BIG).unwrap();
    assert_eq!(got.bytes, b"one");
    assert!(got.metadata.is_file());
    // Replacing keeps no temp file behind and sets the new mode exactly.
    home.write_file(&w.rel("a/b/c.txt"), b"three", 0o755, DirMode::Shared)
        .unwrap();
    assert_eq!(std::fs::read(w.home().join("a/b/c.txt")).unwrap(), b"three");
    assert_eq!(mode("a/b/c.txt"), 0o755);
    let names: Vec<_> = std::fs::read_dir(w.home().join("a/b"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["c.txt"]);
    // A file directly in $HOME.
    home.write_file(&w.rel(".zshrc"), b"z", 0o644, DirMode::Shared)
        .unwrap();
    assert_eq!(std::fs::read(w.home().join(".zshrc")).unwrap(), b"z");
}

#[test]
fn existing_directories_keep_their_mode() {
    let w = World::new();
    let shared = w.home().join("tmpish");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let open = w.home().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o775)).unwrap();
    let home = w.open();
    home.write_file(&w.rel("tmpish/new/f"), b"x", 0o600, DirMode::Private)
        .unwrap();
    home.write_file(&w.rel("open/f"), b"x", 0o600, DirMode::Private)
        .unwrap();
    home.create_dir(&w.rel("open"), DirMode::Private).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&shared), 0o1777);
    assert_eq!(mode(&open), 0o775);
    assert_eq!(mode(&shared.join("new")), 0o700);
}

#[test]
fn symlinks_anywhere_on_the_path_are_refused_and_nothing_outside_changes() {
    let w = World::new();
    let before = w.snapshot();
    symlink(w.outside(), w.home().join("pwn")).unwrap();
    symlink(w.outside().join("file"), w.home().join("leak")).unwrap();
    std::fs::create_dir(w.home().join("d")).unwrap();
    symlink(w.outside().join("sub"), w.home().join("d/inner")).unwrap();
    // A link that stays inside $HOME is refused too: no component is ever a symlink.
    symlink(w.home().join("d"), w.home().join("alias")).unwrap();
    let home = w.open();
    for rel in [
        "pwn/x",
        "pwn/sub/file",
        "leak",
        "d/inner/file",
        "d/inner/new/f",
        "alias/f",
    ] {
        let err = home
            .write_file(&w.rel(rel), b"evil", 0o644, DirMode::Shared)
            .unwrap_err();
        assert!(matches!(err, WalkError::Symlink { .. }), "{rel}: {err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = home.read_file(&w.rel(rel), BIG).unwrap_err();
        assert!(matches!(err, WalkError::Symlink { .. }), "{rel}: {err}");
        assert!(!err.to_string().contains("OUTSIDE"));
        assert!(home.remove_file(&w.rel(rel)).is_err(), "{rel}");
        assert!(home.probe(&w.rel(rel)).is_err(), "{rel}");
    }
    assert_eq!(w.snapshot(), before);
    // The links themselves are still there (never removed or replaced).
    assert!(
        std::fs::symlink_metadata(w.home().join("leak"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn directories_special_files_and_clashes_are_refused() {
    let w = World::new();
    let home = w.open();
    std::fs::create_dir_all(w.home().join("dir/sub")).unwrap();
    std::fs::write(w.home().join("file"), b"f").unwrap();
    let err = home
        .write_file(&w.rel("dir/sub"), b"x", 0o644, DirMode::Shared)
        .unwrap_err();
    assert!(matches!(err, WalkError::IsADirectory { .. }), "{err}");
    let err = home
        .write_file(&w.rel("file/below"), b"x", 0o644, DirMode::Shared)
        .unwrap_err();
    assert!(matches!(err, WalkError::NotADirectory { .. }), "{err}");
    let err = home.read_file(&w.rel("dir"), BIG).unwrap_err();
    assert!(matches!(err, WalkError::IsADirectory { .. }), "{err}");
    let fifo = w.home().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Neither hangs on the FIFO.
    let err = home.read_file(&w.rel("fifo"), BIG).unwrap_err();
    assert!(matches!(err, WalkError::NotRegular { .. }), "{err}");
    let err = home
        .write_file(&w.rel("fifo"), b"x", 0o644, DirMode::Shared)
        .unwrap_err();
    assert!(matches!(err, WalkError::NotRegular { .. }), "{err}");
    let err = home.read_file(&w.rel("missing/x"), BIG).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        home.read_file(&w.rel("nope"), BIG)
            .unwrap_err()
            .is_not_found()
    );
    assert!(!home.remove_file(&w.rel("missing/x")).unwrap());
    assert!(!home.remove_file(&w.rel("nope")).unwrap());
    assert!(home.remove_file(&w.rel("file")).unwrap());
    assert!(!w.home().join("file").exists());
    home.probe(&w.rel("missing/x")).unwrap();
    // A refusal converts to the crate's error with the message intact.
    let e: crate::Error = home.read_file(&w.rel("dir"), BIG).unwrap_err().into();
    assert!(e.to_string().contains("is a directory here"), "{e}");
}

#[test]
fn reads_are_capped_without_reading_the_whole_file() {
    let w = World::new();
    let home = w.open();
    let small = Limit {
        what: "a managed file",
        bytes: 10,
    };
    std::fs::write(w.home().join("ten"), b"0123456789").unwrap();
    std::fs::write(w.home().join("eleven"), b"0123456789a").unwrap();
    assert_eq!(
        home.read_file(&w.rel("ten"), small).unwrap().bytes.len(),
        10
    );
    let err = home.read_file(&w.rel("eleven"), small).unwrap_err();
    match &err {
        WalkError::TooLarge { limit, .. } => assert_eq!(limit.limit.0, 10),
        other => panic!("{other}"),
    }
    let shown = err.to_string();
    assert!(
        shown.contains("larger than the limit for a managed file"),
        "{shown}"
    );
    assert!(!shown.contains("0123"), "{shown}");
    // A sparse 1 TiB file is refused from its size alone.
    let huge = std::fs::File::create(w.home().join("huge")).unwrap();
    huge.set_len(1 << 40).unwrap();
    let err = home
        .read_file(&w.rel("huge"), limits::MANAGED_FILE)
        .unwrap_err();
    assert!(matches!(err, WalkError::TooLarge { .. }), "{err}");
}

/// What to do to the tree while a walk runs.
#[derive(Debug, Clone)]
enum Plant {
    /// Before the walk: make component `i` (clamped) a symlink to outside.
    Before(usize, bool),
    /// After the walk opened depth `at`: replace component `i` (clamped) by a symlink to outside.
    During { at: usize, i: usize },
    /// Just before the rename: make the target a symlink to an outside file.
    TargetLink,
}

fn plant() -> impl Strategy<Value = Plant> {
    prop_oneof![
        (0usize..6, any::<bool>()).prop_map(|(i, f)| Plant::Before(i, f)),
        (1usize..6, 0usize..6).prop_map(|(at, i)| Plant::During { at, i }),
        Just(Plant::TargetLink),
    ]
}

/// Moves the directory at `prefix` aside (inside $HOME) and puts a symlink to `to` in its
/// place.
fn swap_for_link(home: &Path, prefix: &Path, to: &Path, n: &mut usize) {
    let p = home.join(prefix);
    // Only where the test's own path stays inside $HOME: after an earlier swap, the path would
    // lead the test's rename and symlink outside (the walk under test never follows it).
    let inside = p
        .parent()
        .and_then(|d| d.canonicalize().ok())
        .is_some_and(|d| d.starts_with(home.canonicalize().unwrap_or_default()));
    if !inside {
        return;
    }
    if std::fs::symlink_metadata(&p).is_ok() {
        *n += 1;
        let _ = std::fs::rename(&p, home.join(format!("moved-{n}")));
    }
    let _ = symlink(to, &p);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_write_or_read_ever_leaves_home(
        parts in proptest::collection::vec(
            prop_oneof![4 => "[ab]", 1 => Just("..".to_string()), 1 => Just(".".to_string())],
            1..6,
        ),
        pre in proptest::collection::vec(0usize..6, 0..3),
        plants in proptest::collection::vec(plant(), 0..3),
        content in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let w = World::new();
        let before = w.snapshot();
        let rel_text = parts.join("/");
        let checked = w.confinement().check_rel(&rel_text);
        if parts.iter().any(|p| p == ".." || p == ".") {
            prop_assert!(checked.is_err());
            return Ok(());
        }
        let rel = checked.unwrap();
        let comps: Vec<&str> = rel.components().collect();
        // Some of the directories exist already.
        for &i in &pre {
            let i = i.min(comps.len().saturating_sub(2));
            if comps.len() > 1 {
                let dir: PathBuf = comps[..=i].iter().collect();
                let _ = std::fs::create_dir_all(w.home().join(dir));
            }
        }
        let mut moved = 0;
        let mut planted_before = false;
        for p in &plants {
            if let Plant::Before(i, to_file) = p {
                let i = (*i).min(comps.len() - 1);
                let prefix: PathBuf = comps[..=i].iter().collect();
                let to = if *to_file { w.outside().join("file") } else { w.outside().join("sub") };
                swap_for_link(&w.home(), &prefix, &to, &mut moved);
                planted_before = true;
            }
        }
        let home = w.open();
        let during: Vec<(usize, usize)> = plants
            .iter()
            .filter_map(|p| match p {
                Plant::During { at, i } => Some((*at, *i)),
                _ => None,
            })
            .collect();
        let target_link = plants.iter().any(|p| matches!(p, Plant::TargetLink));
        let home_path = w.home();
        let outside = w.outside();
        let comps_owned: Vec<String> = comps.iter().map(|s| s.to_string()).collect();
        let mut hook = |step: Step| match step {
            Step::Opened(depth) => {
                for &(at, i) in &during {
                    if at == depth {
                        let i = i.min(comps_owned.len() - 1);
                        let prefix: PathBuf = comps_owned[..=i].iter().collect();
                        swap_for_link(&home_path, &prefix, &outside.join("sub"), &mut moved);
                    }
                }
            }
            Step::BeforeRename => {
                // Planted only where the test itself stays inside $HOME: after a `During`
                // swap, the path would lead the test's own remove and symlink outside.
                let target: PathBuf = comps_owned.iter().collect();
                let target = home_path.join(&target);
                let parent_inside = target.parent().and_then(|p| p.canonicalize().ok()).is_some_and(
                    |p| p.starts_with(home_path.canonicalize().unwrap_or_default()),
                );
                if target_link && parent_inside {
                    let _ = std::fs::remove_file(&target);
                    let _ = symlink(outside.join("file"), &target);
                }
            }
        };
        let wrote = home.write_file_hooked(&rel, &content, 0o644, DirMode::Shared, &mut hook);
        // Whatever happened, nothing outside $HOME changed.
        prop_assert_eq!(w.snapshot(), before.clone());
        if !planted_before && during.is_empty() {
            prop_assert!(wrote.is_ok(), "{:?}", wrote);
        }
        if wrote.is_ok() && !target_link && during.is_empty() {
            prop_assert_eq!(home.read_file(&rel, BIG).unwrap().bytes, content.clone());
        }
        // A read through whatever is there now never returns outside content.
        if let Ok(got) = home.read_file(&rel, BIG) {
            prop_assert!(got.bytes.windows(MARKER.len()).all(|win| win != MARKER));
        }
        let _ = home.remove_file(&rel);
        prop_assert_eq!(w.snapshot(), before);
    }
}

#[test]
fn materialize_may_name_only_secrets_env_in_the_config_directory() {
    let c = machine("/home/u");
    assert_eq!(
        c.check_materialize("~/.config/fleetkey/secrets.env")
            .unwrap()
            .as_str(),
        ".config/fleetkey/secrets.env"
    );
    assert_eq!(
        c.check_materialize("~/.leak.env").unwrap().as_str(),
        ".leak.env"
    );
    for bad in [
        "~/.config/fleetkey/identity.txt",
        "~/.config/fleetkey/config.toml",
        "~/.config/fleetkey/sub/secrets.env",
        "~/.local/state/fleetkey/secrets.env",
        "~/.local/share/fleetkey/fleet/secrets.env",
        "~/../outside/leak.env",
        "~/.config/fleetkey/secrets.env/",
    ] {
        assert!(c.check_materialize(bad).is_err(), "{bad} was allowed");
    }
    // Managed paths never reach it.
    assert!(c.check_entry("~/.config/fleetkey/secrets.env").is_err());
}

#[test]
fn new_shared_directories_follow_the_users_umask_and_private_ones_are_0700() {
    assert_eq!(DirMode::Shared.bits_with(0o022), 0o755);
    assert_eq!(DirMode::Shared.bits_with(0o027), 0o750);
    assert_eq!(DirMode::Shared.bits_with(0o077), 0o700);
    assert_eq!(DirMode::Shared.bits_with(0o002), 0o755);
    assert_eq!(DirMode::Private.bits_with(0o000), 0o700);
}

#[test]
fn a_collected_name_stays_inside_its_host_directory() {
    for bad in [
        "../host=b/x",
        "a/../../x",
        "/etc/passwd",
        "a//b",
        "./a",
        "a/.git/config",
        "a\\b",
        "",
        "a\nb",
    ] {
        assert!(collected_rel(bad).is_err(), "{bad:?} was allowed");
    }
    let ok = collected_rel(".local/share/task-durations/local.parquet").unwrap();
    assert_eq!(ok.as_str(), ".local/share/task-durations/local.parquet");
    // Written through a HomeDir rooted at the host directory, a symlinked directory there is
    // refused rather than followed.
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host=a");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    symlink(&outside, host.join("sub")).unwrap();
    let root = HomeDir::open(&host).unwrap();
    let rel = collected_rel("sub/file").unwrap();
    assert!(matches!(
        root.write_file(&rel, b"x", 0o600, DirMode::Private),
        Err(WalkError::Symlink { .. })
    ));
    assert!(!outside.join("file").exists());
    let stamp_rel = collected_rel("plain").unwrap();
    root.write_file(&stamp_rel, b"abc", 0o600, DirMode::Private)
        .unwrap();
    assert_eq!(root.stamp(&stamp_rel).unwrap().size, 3);
}
