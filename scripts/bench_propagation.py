#!/usr/bin/env python3
"""scripts/bench propagation: how fast a change and a revocation reach a peer, and what an idle
watcher costs, with the default settings, beside the old defaults (poll 60 s, no poke).

Machines are real local users (useradd; removed at the end, even on failure) so that one sshd
on 127.0.0.1 gives each its own HOME, as a peer's sshd does. The forge is ssh:// on that sshd
(a forge user holding a bare repo), so the watchers' ref checks use the multiplexed connection.

  defaults, poked      A saves -> B's live file changes; quiet 150 ms, settle 2 s, poll 15 s,
                       B has an address; rename-saves with random pauses (0.5-3 s) between them
  quiet 2 s, poked     the same with quiet = settle = 2 s (the fixed settle before quiet existed)
  burst                A writes 1,000 new files into a managed directory at once (as a checkout
                       does) -> B has them all; how many commits A made for them (goal: one)
  defaults, poll only  the same with B's address cleared
  old defaults         settle 2 s, poll 60 s, no addresses
  revocation           `revoke cN` on A returns -> B's authorized_keys lacks cN's key (B poked),
                       and the same with the old defaults, and with the forge spammed (an
                       unsigned commit pushed on its branch every 0.5 s by the forge's own user)
  idle watcher         one watcher, default poll, ssh:// forge: CPU, RSS and SSH handshakes
                       (sshd's "Accepted publickey" lines for the forge user) over the window,
                       and the same without multiplexing and poll 60 s

Parameters (environment): BENCH_PROP_EDITS (20), BENCH_PROP_EDITS_POLL (BENCH_PROP_EDITS),
BENCH_PROP_EDITS_OLD (20), BENCH_REVOKES (10), BENCH_REVOKES_OLD (5), BENCH_IDLE_SECS (600).
Must run as root.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
EDITS = int(os.environ.get("BENCH_PROP_EDITS", "20"))
EDITS_POLL = int(os.environ.get("BENCH_PROP_EDITS_POLL", str(EDITS)))
EDITS_OLD = int(os.environ.get("BENCH_PROP_EDITS_OLD", "20"))
REVOKES = int(os.environ.get("BENCH_REVOKES", "10"))
REVOKES_OLD = int(os.environ.get("BENCH_REVOKES_OLD", "5"))
IDLE = int(os.environ.get("BENCH_IDLE_SECS", "600"))
TAG = f"fkb{os.getpid() % 100000}"
USERS = []
PROCS = []


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


class User:
    def __init__(self, machine):
        self.machine = machine
        self.name = f"{TAG}{machine}"
        run(["useradd", "-m", "-s", "/bin/sh", "-p", "*", self.name])
        USERS.append(self.name)
        self.uid = int(run(["id", "-u", self.name]))
        self.gid = int(run(["id", "-g", self.name]))
        self.home = f"/home/{self.name}"
        self.state = f"{self.home}/.local/state/fleetkey"

    def env(self, extra=None):
        e = {"HOME": self.home, "USER": self.name, "LOGNAME": self.name,
             "PATH": "/usr/local/bin:/usr/bin:/bin"}
        e.update(extra or {})
        return e

    def popen(self, args, extra_env=None, **kw):
        return subprocess.Popen(args, env=self.env(extra_env), user=self.uid, group=self.gid,
                                extra_groups=[], cwd=self.home, **kw)

    def fk(self, *args):
        p = subprocess.run([BIN, *args], env=self.env(), user=self.uid, group=self.gid,
                           extra_groups=[], cwd=self.home, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"{self.machine}: fleetkey {args} failed: {p.stderr}")
        return p.stdout

    def write(self, rel, text):
        tmp = f"{self.home}/{rel}.swp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chown(tmp, self.uid, self.gid)
        os.rename(tmp, f"{self.home}/{rel}")

    def read(self, rel):
        try:
            return open(f"{self.home}/{rel}").read()
        except OSError:
            return ""

    def ssh_setup(self, port, host_pub):
        d = f"{self.home}/.ssh"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/known_hosts", "w") as f:
            f.write(f"[127.0.0.1]:{port} {host_pub}\n")
        if not os.path.exists(f"{d}/id_ed25519"):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", f"{d}/id_ed25519"])
        for root, dirs, files in os.walk(d):
            for n in [root] + [os.path.join(root, x) for x in files]:
                os.chown(n, self.uid, self.gid)
        os.chmod(d, 0o700)
        return open(f"{d}/id_ed25519.pub").read()

    def watch(self, extra_env=None):
        ready, last = f"{self.state}/watch-ready", f"{self.state}/last-cycle.json"
        if os.path.exists(ready):
            os.remove(ready)
        mtime = os.stat(last).st_mtime_ns if os.path.exists(last) else 0
        p = self.popen([BIN, "watch"], extra_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        PROCS.append(p)
        deadline = time.monotonic() + 30
        while True:
            try:
                said = open(ready).read()
            except OSError:
                said = ""
            if said == f"{p.pid}\n" and os.path.exists(last) and os.stat(last).st_mtime_ns != mtime:
                return p
            if p.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.machine}'s watcher did not start")
            time.sleep(0.02)


def stop(p):
    p.terminate()
    p.wait()


def main():
    work = tempfile.mkdtemp(prefix="fleetkey-bench-prop-", dir="/var/tmp")
    os.chmod(work, 0o755)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "host", "-f", f"{work}/host_key"])
    host_pub = " ".join(open(f"{work}/host_key.pub").read().split()[:2])
    port = int(run(["python3", "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"]))
    with open(f"{work}/sshd_config", "w") as f:
        f.write(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work}/host_key\n"
                "AuthorizedKeysFile .ssh/authorized_keys\nStrictModes yes\nPubkeyAuthentication yes\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                f"PermitRootLogin no\nPidFile {work}/sshd.pid\nLogLevel INFO\nMaxStartups 100\n")
    os.makedirs("/run/sshd", exist_ok=True)
    log = open(f"{work}/sshd.log", "w")
    sshd = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", f"{work}/sshd_config"],
                            stderr=log, stdout=subprocess.DEVNULL)
    PROCS.append(sshd)
    deadline = time.monotonic() + 15
    while f"port {port}." not in open(f"{work}/sshd.log").read():
        if sshd.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("sshd did not start: " + open(f"{work}/sshd.log").read())
        time.sleep(0.02)

    forge = User("forge")
    run(["git", "init", "-q", "--bare", "-b", "main", f"{forge.home}/fleet.git"])
    run(["chown", "-R", f"{forge.uid}:{forge.gid}", f"{forge.home}/fleet.git"])
    url = f"ssh://{forge.name}@127.0.0.1:{port}{forge.home}/fleet.git"
    fkeys = []
    a, b = User("a"), User("b")
    for u in (a, b):
        fkeys.append(u.ssh_setup(port, host_pub))
    os.makedirs(f"{forge.home}/.ssh", exist_ok=True)

    def forge_admit():
        with open(f"{forge.home}/.ssh/authorized_keys", "w") as f:
            f.writelines(fkeys)
        run(["chown", "-R", f"{forge.uid}:{forge.gid}", f"{forge.home}/.ssh"])
        os.chmod(f"{forge.home}/.ssh", 0o700)

    forge_admit()
    addr = lambda u: f"ssh://{u.name}@127.0.0.1:{port}"
    a.fk("init", "--name", "a", "--remote", url, "--address", addr(a))

    def join(new, member):
        out = new.fk("enroll", new.machine, "--remote", url, "--address", addr(new))
        code = re.search(r"enrollment code: (\S+)", out).group(1)
        member.fk("approve", new.machine, "--code", code)
        new.fk("sync")

    join(b, a)
    for _ in range(2):
        a.fk("sync"), b.fk("sync")
    a.write(".zshrc", "v0\n")
    os.makedirs(f"{a.home}/.config/burst", exist_ok=True)
    a.write(".config/burst/seed", "seed\n")
    for d in (f"{a.home}/.config", f"{a.home}/.config/burst"):
        os.chown(d, a.uid, a.gid)
    a.fk("track", f"{a.home}/.zshrc", f"{a.home}/.config/burst/")
    b.fk("sync")

    def set_poll(poll):
        clone = f"{a.home}/.local/share/fleetkey/fleet"
        path = f"{clone}/fleet.toml"
        text = re.sub(r'(?m)^poll = .*$', f'poll = "{poll}"', open(path).read())
        open(path, "w").write(text)
        for args in (["add", "-A"], ["commit", "-qm", f"bench: poll {poll}"]):
            p = a.popen(["git", "-C", clone, "-c", "gpg.format=ssh", "-c", "commit.gpgsign=true",
                         "-c", f"user.signingkey={a.home}/.config/fleetkey/signing_key",
                         "-c", "user.name=b", "-c", "user.email=b@b", *args])
            p.wait()
        a.fk("sync"), b.fk("sync"), a.fk("sync")

    results = []

    def propagation(label, edits, phase):
        wa, wb = a.watch(), b.watch()
        lat = []
        try:
            for i in range(edits):
                token = f"edit {i} {random.random()}\n"
                a.write(".zshrc", token)
                t0 = time.monotonic()
                while b.read(".zshrc") != token:
                    if time.monotonic() - t0 > 180:
                        raise SystemExit(f"{label}: B never got an edit")
                    time.sleep(0.01)
                lat.append(time.monotonic() - t0)
                time.sleep(random.uniform(0.5, phase))
        finally:
            stop(wa), stop(wb)
        results.append(f"{label:<34} p50 {pct(lat, .5):6.2f} s  p95 {pct(lat, .95):6.2f} s  max {max(lat):6.2f} s  ({edits} edits)")
        print(results[-1], flush=True)

    propagation("propagation defaults, B poked", EDITS, 3.0)
    a.fk("config", "set", "quiet", "2s")
    b.fk("sync")
    propagation("propagation quiet 2 s, B poked", EDITS, 3.0)
    a.fk("config", "set", "quiet", "150ms")
    b.fk("sync")

    def burst(label, count):
        clone = f"{a.home}/.local/share/fleetkey/fleet"
        git = lambda *args: subprocess.run(["git", "-C", clone, *args], env=a.env(), user=a.uid, group=a.gid,
                                           extra_groups=[], check=True, capture_output=True, text=True).stdout
        head = lambda: git("rev-parse", "HEAD").strip()
        wa, wb = a.watch(), b.watch()
        try:
            before = head()
            t0 = time.monotonic()
            for i in range(count):
                path = f"{a.home}/.config/burst/f{i:04}"
                with open(path, "w") as f:
                    f.write(f"file {i}\n")
                os.chown(path, a.uid, a.gid)
            wrote = time.monotonic() - t0
            while not all(os.path.exists(f"{b.home}/.config/burst/f{i:04}") for i in (0, count - 1)) \
                    or len(os.listdir(f"{b.home}/.config/burst")) < count + 1:
                if time.monotonic() - t0 > 180:
                    raise SystemExit(f"{label}: B never got every file")
                time.sleep(0.02)
            took = time.monotonic() - t0
        finally:
            stop(wa), stop(wb)
        subjects = git("log", "--format=%s", f"{before}..HEAD").splitlines()
        mine = [x for x in subjects if x.startswith("a: sync")]
        results.append(f"{label:<34} {len(mine)} commit(s) from A for {count} files written in "
                       f"{wrote:.2f} s; all on B after {took:.2f} s")
        print(results[-1], flush=True)

    burst("burst of 1,000 files, B poked", 1000)
    b.fk("address", "clear")
    a.fk("sync")
    propagation("propagation defaults, poll only", EDITS_POLL, 15.0)
    a.fk("address", "clear")
    b.fk("sync")
    set_poll("60s")
    propagation("propagation old (poll 60 s)", EDITS_OLD, 60.0)

    def spam_loop(stop_event):
        """An unsigned commit on the forge's branch every 0.5 s, by the forge's own user (a
        leaked forge credential): each on top of whatever the branch holds."""
        bare = f"{forge.home}/fleet.git"
        while not stop_event.is_set():
            as_forge = ["runuser", "-u", forge.name, "--", "git", "-C", bare]
            branch = subprocess.run(as_forge + ["symbolic-ref", "HEAD"], capture_output=True, text=True).stdout.strip()
            tip = subprocess.run(as_forge + ["rev-parse", "-q", "--verify", branch], capture_output=True, text=True).stdout.strip()
            if tip:
                tree = subprocess.run(as_forge + ["rev-parse", f"{tip}^{{tree}}"], capture_output=True, text=True).stdout.strip()
                env = dict(os.environ, GIT_AUTHOR_NAME="x", GIT_AUTHOR_EMAIL="x@x",
                           GIT_COMMITTER_NAME="x", GIT_COMMITTER_EMAIL="x@x")
                junk = subprocess.run(as_forge + ["commit-tree", tree, "-p", tip, "-m", "junk"],
                                      capture_output=True, text=True, env=env).stdout.strip()
                if junk:
                    subprocess.run(as_forge + ["update-ref", branch, junk, tip], capture_output=True)
            stop_event.wait(0.5)

    def revocations(label, count, poked, spam=False):
        wb = b.watch()
        lat = []
        try:
            for i in range(count):
                c = User(f"c{i}{'o' if not poked else ''}{'s' if spam else ''}")
                fkeys.append(c.ssh_setup(port, host_pub))
                forge_admit()
                join(c, a)
                a.fk("sync")
                key = open(f"{c.home}/.ssh/id_ed25519.pub").read().split()[1]
                deadline = time.monotonic() + 120
                while key not in b.read(".ssh/authorized_keys"):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{label}: B never admitted {c.machine}")
                    time.sleep(0.05)
                stop_spam, spammer = threading.Event(), None
                if spam:
                    spammer = threading.Thread(target=spam_loop, args=(stop_spam,), daemon=True)
                    spammer.start()
                    time.sleep(1.2)
                # With the forge spammed, revoke's own push is refused (exit 3): what counts
                # is the peer, reached by the poke's bundle.
                a.popen([BIN, "revoke", c.machine, "--yes"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait()
                t0 = time.monotonic()
                while key in b.read(".ssh/authorized_keys"):
                    if time.monotonic() - t0 > 180:
                        raise SystemExit(f"{label}: B kept {c.machine}'s key")
                    time.sleep(0.01)
                lat.append(time.monotonic() - t0)
                if spammer:
                    stop_spam.set()
                    spammer.join()
                    # Bring the forge back to the fleet's state for the next round (a person's
                    # `forge repair`; a fleetkey that heals the forge does it on its own).
                    a.popen([BIN, "forge", "repair", "--yes"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).wait()
                    a.fk("sync"), b.fk("sync")
        finally:
            stop(wb)
        results.append(f"{label:<34} p50 {pct(lat, .5):6.2f} s  p95 {pct(lat, .95):6.2f} s  max {max(lat):6.2f} s  ({count} revokes)")
        print(results[-1], flush=True)

    revocations("revocation old (poll 60 s)", REVOKES_OLD, False)
    set_poll("15s")
    b.fk("address", "set", addr(b))
    a.fk("sync")
    revocations("revocation defaults, B poked", REVOKES, True)
    revocations("revocation, B poked, forge spammed", REVOKES, True, spam=True)

    def idle(label, extra_env):
        w = a.watch(extra_env)
        tck = os.sysconf("SC_CLK_TCK")

        def cpu():
            f = open(f"/proc/{w.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / tck

        accepted = lambda: open(f"{work}/sshd.log").read().count(f"Accepted publickey for {forge.name}")
        c0, h0, t0 = cpu(), accepted(), time.monotonic()
        time.sleep(IDLE)
        c1, h1, el = cpu(), accepted(), time.monotonic() - t0
        rss = next(int(l.split()[1]) for l in open(f"/proc/{w.pid}/status") if l.startswith("VmRSS")) / 1024
        stop(w)
        results.append(f"{label:<34} CPU {100 * (c1 - c0) / el:.3f} % (with git/ssh children)  RSS {rss:5.1f} MiB  "
                       f"{h1 - h0} SSH handshakes in {IDLE} s")
        print(results[-1], flush=True)

    b_watch = None
    idle("idle watcher, defaults (mux)", None)
    set_poll("60s")
    idle("idle watcher old (poll 60, no mux)", {"GIT_SSH_COMMAND": "ssh -o BatchMode=yes"})
    print("\n".join(["", "propagation summary:"] + results))


try:
    if os.geteuid() != 0:
        raise SystemExit("the propagation bench creates local users and runs sshd: run it as root")
    main()
finally:
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
            p.wait()
    for u in USERS:
        subprocess.run(["userdel", "-r", "-f", u], capture_output=True)
