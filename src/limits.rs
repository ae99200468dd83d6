//! Every size and time bound fleetkey puts on what the fleet repo (or a command line) hands it,
//! in one place, each with the reason for its value.
//!
//! Owns: the numbers, and the checks that compare against them. The values are far above what a
//! dotfile user meets, and far below what would let one bad push make every machine write
//! gigabytes or spin against the forge. Must never: quote the content that broke a limit (an
//! error names what it is, its size and the limit).

use std::time::Duration;

/// A cap on the size of one kind of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What is capped, for messages ("a managed file").
    pub what: &'static str,
    /// The largest size allowed, in bytes.
    pub bytes: u64,
}

/// Something was larger than its [`Limit`]. Names the kind of input and the sizes, never the
/// content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{size} is larger than the limit for {what} ({limit}); fleetkey refuses it")]
pub struct TooLarge {
    /// What was capped.
    pub what: &'static str,
    /// The size seen (a lower bound when reading stopped at the limit).
    pub size: Size,
    /// The limit.
    pub limit: Size,
}

/// A byte count shown in a human unit (`16 MiB`, `1.5 KiB`, `12 bytes`); a count that is not
/// a whole number of tenths is rounded up, so a size over a limit never prints as equal to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (unit, scale) in UNITS {
            if self.0 >= scale {
                let mut whole = self.0 / scale;
                let mut tenths = ((self.0 % scale) * 10).div_ceil(scale);
                if tenths == 10 {
                    (whole, tenths) = (whole + 1, 0);
                }
                return if tenths == 0 {
                    write!(f, "{whole} {unit}")
                } else {
                    write!(f, "{whole}.{tenths} {unit}")
                };
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

impl Limit {
    /// Refuses `size` when it exceeds the limit.
    pub fn check(&self, size: u64) -> Result<(), TooLarge> {
        if size > self.bytes {
            Err(TooLarge {
                what: self.what,
                size: Size(size),
                limit: Size(self.bytes),
            })
        } else {
            Ok(())
        }
    }
}

/// One managed dotfile. Shell profiles, editor configs and even a large vim plugin bundle are
/// kilobytes; 16 MiB leaves room for the odd font or binary helper while one push of a huge
/// file cannot make every machine write it (and hold it in memory) twice.
pub const MANAGED_FILE: Limit = Limit {
    what: "a managed file",
    bytes: 16 << 20,
};

/// Everything one capture reads in one cycle. A whole home's dotfiles are a few MiB; 256 MiB
/// bounds the memory and disk a cycle may use when a managed directory fills up by mistake.
pub const CAPTURE_TOTAL: Limit = Limit {
    what: "one capture (all managed files read in a cycle)",
    bytes: 256 << 20,
};

/// The decrypted secrets file. A secret is a token or a password; ten thousand of them are a
/// few hundred KiB. 4 MiB keeps the plaintext (which lives in zeroized memory) small.
pub const SECRETS_PLAINTEXT: Limit = Limit {
    what: "the decrypted secrets file",
    bytes: 4 << 20,
};

/// Room for the recipient stanzas of the age header: one X25519 stanza is about 100 bytes, so
/// 1 MiB holds some ten thousand machines.
const SECRETS_HEADER_BUDGET: u64 = 1 << 20;

/// The armored age file of [`SECRETS_PLAINTEXT`] bytes with [`SECRETS_HEADER_BUDGET`] of
/// header: 16-byte nonce, a 16-byte tag per 64 KiB chunk, then base64 in 64-column lines
/// between the BEGIN and END lines.
const fn armored_age_len(plaintext: u64, header: u64) -> u64 {
    let chunks = if plaintext == 0 {
        1
    } else {
        plaintext.div_ceil(64 << 10)
    };
    let binary = header + 16 + plaintext + 16 * chunks;
    let base64 = binary.div_ceil(3) * 4;
    let lines = base64.div_ceil(64);
    let begin = "-----BEGIN AGE ENCRYPTED FILE-----\n".len() as u64;
    let end = "-----END AGE ENCRYPTED FILE-----\n".len() as u64;
    begin + base64 + lines + end
}

/// `secrets.env.age`: derived from [`SECRETS_PLAINTEXT`] (age's framing and the armor's base64)
/// so that every plaintext fleetkey accepts also fits as ciphertext, whatever the fleet size.
pub const SECRETS_CIPHERTEXT: Limit = Limit {
    what: "the secrets file (secrets.env.age)",
    bytes: armored_age_len(SECRETS_PLAINTEXT.bytes, SECRETS_HEADER_BUDGET),
};

/// fleet.toml. The design's example is 600 bytes; a list of a thousand managed paths is 50 KiB.
pub const FLEET_TOML: Limit = Limit {
    what: "fleet.toml",
    bytes: 1 << 20,
};

/// One `keys/NAME.*.pub` file: one age recipient (63 bytes) or a few OpenSSH public keys
/// (an RSA-8192 key line is about 1.4 KiB).
pub const KEY_FILE: Limit = Limit {
    what: "a keys/ file",
    bytes: 64 << 10,
};

/// `keys/revoked`, which only grows: each revocation adds a recipient, the machine's SSH keys
/// and their notes (under 2 KiB even with RSA keys), so 1 MiB holds hundreds of revocations.
pub const REVOKED_FILE: Limit = Limit {
    what: "keys/revoked",
    bytes: 1 << 20,
};

/// One file of `[collect] paths`. The kit's pull-fleet moved a task-durations parquet file of
/// a few MiB per host; 32 MiB leaves room to grow while every machine downloads every other
/// machine's files each time they change (and reads each into memory once).
pub const COLLECT_FILE: Limit = Limit {
    what: "a collected file",
    bytes: 32 << 20,
};

/// Everything one machine publishes on its host branch: with a fleet of ten, every machine
/// fetches up to ten times this whenever all of them change.
pub const COLLECT_TOTAL: Limit = Limit {
    what: "the collected files of one machine (all of [collect] paths)",
    bytes: 128 << 20,
};

/// A collected file as gathered from another machine's branch: [`COLLECT_FILE`] as armored age
/// (when `[collect] encrypt` is on) with the recipient stanzas of [`SECRETS_HEADER_BUDGET`].
pub const COLLECT_GATHERED: Limit = Limit {
    what: "a collected file on another machine's branch",
    bytes: armored_age_len(COLLECT_FILE.bytes, SECRETS_HEADER_BUDGET),
};

/// Everything materialised from one machine's branch: [`COLLECT_TOTAL`] as armored age, so a
/// hostile branch of ten thousand files at the per-file limit is still bounded.
pub const COLLECT_GATHERED_TOTAL: Limit = Limit {
    what: "the collected files on another machine's branch",
    bytes: armored_age_len(COLLECT_TOTAL.bytes, SECRETS_HEADER_BUDGET),
};

/// `status.json` on a host branch: a few hundred bytes, plus names of conflict copies and
/// collected files; 1 MiB bounds what a hostile branch can make `fleet` parse.
pub const HOST_STATUS: Limit = Limit {
    what: "a machine's status.json",
    bytes: 1 << 20,
};

/// The most entries a host branch's tree may hold (its `status.json` and collected files with
/// their directories): a machine collects a handful of files, not a home.
pub const HOST_TREE_ENTRIES: usize = 10_000;

/// The longest managed path, in bytes of `REL` (after `~/`). macOS's PATH_MAX is 1024, and a
/// dotfile path is rarely a tenth of that.
pub const PATH_BYTES: usize = 1024;

/// The longest single component of a managed path (NAME_MAX on Linux and macOS).
pub const COMPONENT_BYTES: usize = 255;

/// The most entries (files and directories, counted along every path) a fleet commit's tree
/// may hold. A home's dotfiles are hundreds; a million also stops a "tree bomb" (one subtree
/// referenced over and over) before checkout would write it out.
pub const TREE_ENTRIES: usize = 1_000_000;

/// A git bundle a poke carries (the commits a peer just made, see [`crate::sync::carry`]). A
/// revocation or a secrets change is a few KiB; a whole fleet's history rarely reaches 1 MiB.
/// 4 MiB keeps what a poke key holder can make a machine store and unpack small; a larger
/// change is left to the forge (the peer is poked plainly and fetches).
pub const POKE_BUNDLE: Limit = Limit {
    what: "a bundle carried by a poke",
    bytes: 4 << 20,
};

/// How long `fleetkey poke` reads its stdin (the bundle) before it gives up: [`POKE_BUNDLE`]
/// at about 3.4 Mbit/s. A sender that trickles or never closes holds one process for no
/// longer than this.
pub const POKE_READ: Duration = Duration::from_secs(10);

/// The most bundles kept in the inbox for the next cycle: each peer's latest change and some
/// more; the oldest is dropped first (a dropped bundle only means a fetch from the forge).
pub const POKE_INBOX: usize = 8;

/// The bounds of a duration setting: `key` names it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The setting, as written in fleet.toml (`sync.settle`) or on the command line
    /// (`--every`).
    pub key: &'static str,
    /// The shortest value allowed.
    pub min: Duration,
    /// The longest value allowed.
    pub max: Duration,
}

impl Bounds {
    /// Whether `d` is within the bounds.
    pub fn contains(&self, d: Duration) -> bool {
        self.min <= d && d <= self.max
    }
}

/// `[sync] quiet`: how long the watcher waits after the last change before a cycle starts.
/// Editors save in a burst of a few milliseconds (write a temp file, rename it), so 10 ms still
/// makes one save one commit; over 5 s the watcher no longer feels live (`settle` is for
/// longer bursts).
pub const QUIET: Bounds = Bounds {
    key: "sync.quiet",
    min: Duration::from_millis(10),
    max: Duration::from_secs(5),
};

/// `[sync] settle`: the longest the watcher waits after the first change of a burst while
/// changes keep coming (and the longest a cycle waits for a file still being written), so a
/// busy directory still commits regularly. Under 100 ms a tool rewriting many files becomes
/// many commits; over a minute the watcher no longer feels live.
pub const SETTLE: Bounds = Bounds {
    key: "sync.settle",
    min: Duration::from_millis(100),
    max: Duration::from_secs(60),
};

/// `[sync] poll`: how often the watcher and the puller ask the forge for its ref. Under 5 s a
/// fleet hammers its forge (one `git ls-remote` per machine per poll); over a day a revocation
/// takes too long to reach a machine nobody pokes.
pub const POLL: Bounds = Bounds {
    key: "sync.poll",
    min: Duration::from_secs(5),
    max: Duration::from_secs(24 * 60 * 60),
};

/// `fleetkey pull --every`: the puller's period, bounded as [`POLL`] is.
pub const EVERY: Bounds = Bounds {
    key: "--every",
    min: POLL.min,
    max: POLL.max,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_only_what_is_larger() {
        MANAGED_FILE.check(16 << 20).unwrap();
        let err = MANAGED_FILE.check((16 << 20) + 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "16.1 MiB is larger than the limit for a managed file (16 MiB); fleetkey refuses it"
        );
        assert_eq!(err.limit, Size(16 << 20));
        MANAGED_FILE.check(u64::MAX).unwrap_err();
    }

    #[test]
    fn sizes_print_in_human_units() {
        assert_eq!(Size(0).to_string(), "0 bytes");
        assert_eq!(Size(1023).to_string(), "1023 bytes");
        assert_eq!(Size(1024).to_string(), "1 KiB");
        assert_eq!(Size(1536).to_string(), "1.5 KiB");
        assert_eq!(Size(16 << 20).to_string(), "16 MiB");
        assert_eq!(Size(3 << 30).to_string(), "3 GiB");
        assert_eq!(Size(1025).to_string(), "1.1 KiB");
        assert_eq!(Size((2 << 10) - 1).to_string(), "2 KiB");
        assert_eq!(Size(u64::MAX).to_string(), "17179869184 GiB");
    }

    #[test]
    fn the_ciphertext_limit_holds_the_largest_plaintext_for_a_big_fleet() {
        // Encrypt the largest plaintext to 1,000 recipients and armor it: it must fit.
        let recipients: Vec<age::x25519::Recipient> = (0..1000)
            .map(|_| age::x25519::Identity::generate().to_public())
            .collect();
        let plaintext = vec![b'x'; SECRETS_PLAINTEXT.bytes as usize];
        let ciphertext = crate::secrets::encrypt(&plaintext, &recipients).unwrap();
        SECRETS_CIPHERTEXT
            .check(ciphertext.len() as u64)
            .expect("the largest plaintext fits as ciphertext");
        // …and the derivation is not wildly loose: under 1.4 times the plaintext plus header.
        const { assert!(SECRETS_CIPHERTEXT.bytes < SECRETS_PLAINTEXT.bytes * 14 / 10 + (2 << 20)) };
        const { assert!(armored_age_len(0, 0) > 0) };
    }

    #[test]
    fn duration_bounds_are_the_documented_ones() {
        assert!(SETTLE.contains(Duration::from_millis(100)));
        assert!(!SETTLE.contains(Duration::from_millis(99)));
        assert!(SETTLE.contains(Duration::from_secs(60)));
        assert!(!SETTLE.contains(Duration::from_secs(61)));
        assert!(POLL.contains(Duration::from_secs(5)));
        assert!(!POLL.contains(Duration::from_millis(4999)));
        assert!(POLL.contains(Duration::from_secs(86_400)));
        assert!(!POLL.contains(Duration::from_secs(86_401)));
        assert_eq!((EVERY.min, EVERY.max), (POLL.min, POLL.max));
    }
}
