#!/usr/bin/env python3
"""The chaos test's driver (stdlib only); tests/sync_chaos.sh starts
radosgw and runs it, scripts/chaos runs that for longer.

    chaos_driver.py run OPTIONS        the whole test (see main_run)
    chaos_driver.py writer OPTIONS     one replica's random writer

Three mounts (a, b, c) of one ledger replicate through one radosgw bucket;
c reaches radosgw through tests/faultproxy.py. One writer per mount saves
random documents -- its own ("own-a-3": only writer a ever touches them),
shared ones (all writers; rarely deleted) -- in place (O_TRUNC, write, close) or as a temp
file renamed over the document, and deletes its own. Every operation is
logged to a JSON-lines file when it begins and when it ends, with its
result: an operation is acknowledged when every system call of it returned
0 (for a save: the close, and the rename on the rename path). Meanwhile a
fault loop stops radosgw (SIGSTOP/SIGCONT), stalls or resets the proxy,
SIGKILLs a daemon and mounts it again, and runs `ledgerfs sync` on a
mount's own home beside it (a second process sharing its ledger and state
files; SIGKILLed halfway now and then); with --meta (mounts hearing
of each other through Redis) it also stops Redis (SIGSTOP) and kills it,
starting it again empty. Then faults stop, every daemon
is up, the writers finish, and the test checks (each check named, all run,
every failure listed):

  wait        .ledgerfs/wait prints "pushed" on every mount
  heads       .ledgerfs/heads is identical on all three
  tree        diff -r of the three trees (.snapshots, .ledgerfs excluded)
  own         every single-writer document is, on every replica, the last
              acknowledged state its writer gave it (value, or absence after
              a delete) -- or the state of an operation of that writer that
              failed ambiguously afterwards (a close or rename that failed
              when the daemon was killed may or may not have committed)
  local       while running, a writer's own reads and deletes agree with
              what it last did (close = visible, and survives a daemon kill)
  shared      a shared document (all write it, now and then one deletes
              it) is one of the values written to it, or absent only if
              never written or some delete of it was acknowledged
  conflicts   .ledgerfs/conflicts lists no single-writer document
  daemons     no daemon died unless killed; each exits 0 on unmount
  writers     no writer hangs
  fsck        ledgerfs fsck is clean on every home
  bucket      no object in the bucket holds the plaintext marker, a
              document id, or the ledger key (raw bytes, hex, share string)

Randomness (the operations, values, fault schedule) all comes from one
seed; timing does not, so a replay repeats the same choices, not the same
interleaving. No check depends on timing: every wait is a poll against a
generous deadline, and a deadline passing is reported as what it is.
"""
import argparse
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos_s3  # noqa: E402

LEDGER = "chaos"
REPLICAS = ("a", "b", "c")
ABSENT = None
# Errors that mean "this mount's daemon is gone": reopen the directory.
DEAD = (errno.ENOTCONN, errno.ECONNABORTED, errno.ENODEV, errno.ESTALE)


def ename(e):
    return errno.errorcode.get(e, str(e))


def now():
    return time.time()


def doc_file(doc):
    return doc + ".json"


def own_docs(w, n):
    return ["own-%s-%d" % (w, i) for i in range(n)]


def shared_docs(n):
    return ["shared-%d" % i for i in range(n)]


# ---------------------------------------------------------------------------
# The model of one writer's single-writer documents, shared by the writer
# (online checks) and the checker (final checks), so both apply exactly the
# same rules to the same log.

class Model:
    """For each own document, the set of states it may be in on its
    writer's replica: ABSENT, or the seq of the save that wrote it."""

    def __init__(self, docs):
        self.poss = {d: {ABSENT} for d in docs}
        self.last_ack = {d: ("initial", ABSENT) for d in docs}

    def end(self, rec):
        """Apply an 'end' record; return a violation text or None."""
        d = rec["doc"]
        if d not in self.poss:
            return None
        op = rec["op"]
        if op == "read":
            if "observed" not in rec:
                return None
            obs = rec["observed"]
            bad = None
            if obs not in self.poss[d]:
                bad = ("read %s: got %s, expected %s (last acknowledged: %s)"
                       % (d, show_state(obs), show_states(self.poss[d]),
                          show_ack(self.last_ack[d])))
            self.poss[d] = {obs}
            return bad
        state = ABSENT if op == "unlink" else rec["seq"]
        if rec["ok"]:
            self.poss[d] = {state}
            self.last_ack[d] = (op, state, rec["seq"])
            return None
        if op == "unlink" and rec.get("err") == "ENOENT" and not rec.get("ambiguous"):
            bad = None
            if ABSENT not in self.poss[d]:
                bad = ("unlink %s: ENOENT, but it should exist as %s "
                       "(last acknowledged: %s)"
                       % (d, show_states(self.poss[d]), show_ack(self.last_ack[d])))
            self.poss[d] = {ABSENT}
            return bad
        if rec.get("ambiguous"):
            self.poss[d].add(state)
        return None


def show_state(s):
    if s is ABSENT:
        return "absent"
    if isinstance(s, int):
        return "seq %d" % s
    return str(s)


def show_states(ss):
    return "{" + ", ".join(sorted(show_state(s) for s in ss)) + "}"


def show_ack(a):
    if a[0] == "initial":
        return "none (never written)"
    op, state, seq = a
    if op == "unlink":
        return "delete (seq %d)" % seq
    return "%s of seq %d" % (op, seq)


def read_log(path):
    recs = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a kill
    except FileNotFoundError:
        pass
    return recs


# ---------------------------------------------------------------------------
# The writer

def content(rng, w, seq, doc, marker):
    n = rng.choice((0, 16, 200, 1500, 6000))
    if rng.random() < 0.02:
        n = 40000  # several 16 KiB envelope chunks
    pad = ("%0*x" % (n, rng.getrandbits(4 * n))) if n else ""
    obj = {"writer": w, "seq": seq, "doc": doc,
           "mark": "%s-%s-%d" % (marker, w, seq), "pad": pad}
    if rng.random() < 0.3:
        obj["_id"] = doc
    if rng.random() < 0.5:
        return (json.dumps(obj, indent=2) + "\n").encode()
    return json.dumps(obj).encode()


class Writer:
    def __init__(self, a):
        self.a = a
        self.w = a.replica
        self.rng = random.Random("%s/writer/%s" % (a.seed, self.w))
        self.own = own_docs(self.w, a.own)
        self.shared = shared_docs(a.shared)
        self.model = Model(self.own)
        self.log = open(a.log, "a", buffering=1)
        self.dirfd = None
        self.ledger_dir = os.path.join(a.mnt, LEDGER)

    def rec(self, **kw):
        kw["t"] = round(now(), 3)
        self.log.write(json.dumps(kw, sort_keys=True) + "\n")

    def ensure_dir(self):
        if self.dirfd is not None:
            return True
        try:
            self.dirfd = os.open(self.ledger_dir, os.O_RDONLY | os.O_DIRECTORY)
            return True
        except OSError:
            return False

    def drop_dir(self):
        if self.dirfd is not None:
            try:
                os.close(self.dirfd)
            except OSError:
                pass
            self.dirfd = None

    def write_fd(self, fd, data):
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:off + (1 << 20)])

    def save_inplace(self, doc, data, sync):
        """open(O_TRUNC), write, [fsync], close. Returns (step, errno)
        of the first failure, or None."""
        try:
            fd = os.open(doc_file(doc), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o644, dir_fd=self.dirfd)
        except OSError as e:
            return ("open", e.errno)
        fail = None
        try:
            self.write_fd(fd, data)
            if sync:
                os.fsync(fd)
        except OSError as e:
            fail = ("write", e.errno)
        try:
            os.close(fd)
        except OSError as e:
            fail = fail or ("close", e.errno)
        return fail

    def save_rename(self, doc, data, sync, tmp):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644,
                         dir_fd=self.dirfd)
        except OSError as e:
            return ("temp", e.errno)
        fail = None
        try:
            self.write_fd(fd, data)
            if sync:
                os.fsync(fd)
        except OSError as e:
            fail = ("temp", e.errno)
        try:
            os.close(fd)
        except OSError as e:
            fail = fail or ("temp", e.errno)
        if fail:
            try:
                os.unlink(tmp, dir_fd=self.dirfd)
            except OSError:
                pass
            return fail
        try:
            os.rename(tmp, doc_file(doc), src_dir_fd=self.dirfd,
                      dst_dir_fd=self.dirfd)
        except OSError as e:
            return ("rename", e.errno)
        return None

    def read_doc(self, doc):
        """Returns ("state", S) or ("bad", text) or ("err", errno)."""
        try:
            fd = os.open(doc_file(doc), os.O_RDONLY, dir_fd=self.dirfd)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return ("state", ABSENT)
            return ("err", e.errno)
        chunks = []
        try:
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        except OSError as e:
            os.close(fd)
            return ("err", e.errno)
        os.close(fd)
        return parse_doc(b"".join(chunks), doc)

    def run(self):
        a = self.a
        seq = 0
        burst = 0
        while not os.path.exists(a.stop):
            # Mostly a pause between operations; now and then a burst
            # without any (more commits in flight when a daemon is killed).
            if burst:
                burst -= 1
            elif self.rng.random() < 0.03:
                burst = self.rng.randint(5, 30)
            else:
                time.sleep(self.rng.uniform(0.0, a.pace))
            if not self.ensure_dir():
                time.sleep(0.2)  # the mount is being remade
                continue
            seq += 1
            # The operation and its value come from (seed, writer, seq)
            # alone, so a replay makes the same choices even when its
            # timing (remount gaps, pauses) differs.
            rng = random.Random("%s/op/%s/%d" % (a.seed, self.w, seq))
            r = rng.random()
            deletable = [d for d in self.own if self.model.poss[d] != {ABSENT}]
            if r < 0.30:
                op, doc = "write", rng.choice(self.own)
            elif r < 0.50:
                op, doc = "rename", rng.choice(self.own)
            elif r < 0.60 and deletable:
                op, doc = "unlink", rng.choice(deletable)
            elif r < 0.60:
                op, doc = "write", rng.choice(self.own)
            elif r < 0.72:
                op, doc = "write", rng.choice(self.shared)
            elif r < 0.82:
                op, doc = "rename", rng.choice(self.shared)
            elif r < 0.94:
                op, doc = "read", rng.choice(self.own)
            elif r < 0.97:
                op, doc = "unlink", rng.choice(self.shared)
            else:
                op, doc = "read", rng.choice(self.shared)
            sync = rng.random() < 0.2
            data = None
            if op in ("write", "rename"):
                data = content(rng, self.w, seq, doc, a.marker)
            tmp = ".tmp-%s-%d" % (self.w, seq)
            self.rec(ev="begin", w=self.w, seq=seq, op=op, doc=doc,
                     tmp=tmp if op == "rename" else None, fsync=sync)
            t0 = now()
            end = {"ev": "end", "w": self.w, "seq": seq, "op": op, "doc": doc}
            fail = None
            if op == "write":
                fail = self.save_inplace(doc, data, sync)
                # Failing after the open succeeded: the close may have
                # committed before the daemon died.
                amb = fail is not None and fail[0] != "open"
            elif op == "rename":
                fail = self.save_rename(doc, data, sync, tmp)
                amb = fail is not None and fail[0] == "rename"
            elif op == "unlink":
                try:
                    os.unlink(doc_file(doc), dir_fd=self.dirfd)
                except OSError as e:
                    fail = ("unlink", e.errno)
                amb = fail is not None and fail[1] != errno.ENOENT
            else:
                amb = False
                kind, v = self.read_doc(doc)
                if kind == "err":
                    fail = ("read", v)
                elif kind == "bad":
                    end["violation"] = "read %s: %s" % (doc, v)
                elif doc in self.model.poss:
                    if isinstance(v, tuple) and v[0] != self.w:
                        end["violation"] = ("read %s: holds writer %s's seq %d"
                                            % (doc, v[0], v[1]))
                    else:
                        end["observed"] = v if v is ABSENT else v[1]
                else:
                    end["observed_shared"] = v if v is ABSENT else list(v)
            end["ok"] = fail is None
            if fail:
                end["step"], end["err"] = fail[0], ename(fail[1])
                end["ambiguous"] = amb
            end["t"] = round(now(), 3)
            end["dt"] = round(end["t"] - t0, 3)
            v = self.model.end(end)
            if v and "violation" not in end:
                end["violation"] = v
            self.log.write(json.dumps(end, sort_keys=True) + "\n")
            if fail and fail[1] in DEAD:
                self.drop_dir()
        self.rec(ev="stopped", w=self.w, seq=seq)


def parse_doc(text, doc):
    try:
        obj = json.loads(text)
    except ValueError as e:
        return ("bad", "not JSON (%s): %r" % (e, text[:200]))
    if not isinstance(obj, dict):
        return ("bad", "not a JSON object: %r" % (text[:200],))
    if "_id" not in obj and obj.get("doc") == doc:
        return ("bad", "read back the bytes as saved, not the document as "
                "committed (no \"_id\"; a stale page cache after close?): %r"
                % (text[:120],))
    if obj.get("_id") != doc or obj.get("doc") != doc:
        return ("bad", "wrong _id/doc: %r" % (text[:200],))
    w, seq = obj.get("writer"), obj.get("seq")
    if not isinstance(w, str) or not isinstance(seq, int):
        return ("bad", "no writer/seq: %r" % (text[:200],))
    return ("state", (w, seq))


def main_writer(argv):
    p = argparse.ArgumentParser(prog="chaos_driver.py writer")
    p.add_argument("--replica", required=True)
    p.add_argument("--mnt", required=True)
    p.add_argument("--seed", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--stop", required=True)
    p.add_argument("--marker", required=True)
    p.add_argument("--own", type=int, default=5)
    p.add_argument("--shared", type=int, default=3)
    p.add_argument("--pace", type=float, default=0.3)
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Writer(a).run()


# ---------------------------------------------------------------------------
# The run

class Failed(Exception):
    pass


class Run:
    def __init__(self, a):
        self.a = a
        self.seed = a.seed
        self.rng = random.Random("%s/faults" % a.seed)
        self.base = a.base
        self.L = a.ledgerfs
        self.failures = []  # (check, text)
        self.notes = []
        self.daemons = {}  # replica -> Popen
        self.killed = set()  # pids we killed on purpose
        self.writers = {}
        self.proxy = None
        self.rgw_pid = None
        self.rgw_stopped = False
        self.t0 = now()
        self.marker = "LFSCHAOSMARK%08x" % random.Random("%s/marker" % a.seed).getrandbits(32)
        self.stats = {"store_stop": 0, "proxy_stall": 0, "proxy_reset": 0,
                      "kill": 0, "quiet": 0}
        self.mount_count = {r: 0 for r in REPLICAS}
        self.kills_by_aim = {}
        self.diff_text = ""
        self.pidfile = os.path.join(self.base, "pids")
        self.own_n, self.shared_n = a.own, a.shared

    # -- output
    def say(self, msg):
        print("chaos: [%6.1fs] %s" % (now() - self.t0, msg), flush=True)

    def fail(self, check, text):
        self.failures.append((check, text))
        self.say("FAILED %s: %s" % (check, text.splitlines()[0] if text else ""))

    # -- paths
    def home(self, r):
        return os.path.join(self.base, "home-" + r)

    def mnt(self, r):
        return os.path.join(self.base, "mnt-" + r)

    def dlog(self, r):
        return os.path.join(self.base, "daemon-%s.log" % r)

    def wlog(self, r):
        return os.path.join(self.base, "acks-%s.jsonl" % r)

    def env(self, r):
        e = dict(os.environ)
        h = self.home(r)
        e.update(LEDGERFS_HOME=h, HOME=os.path.join(h, "user"),
                 XDG_DATA_HOME=os.path.join(h, "xdg-data"),
                 XDG_CONFIG_HOME=os.path.join(h, "xdg-config"),
                 XDG_CACHE_HOME=os.path.join(h, "xdg-cache"),
                 XDG_STATE_HOME=os.path.join(h, "xdg-state"))
        e.pop("LEDGERFS_REMOTE", None)
        return e

    def url(self, r):
        ep = self.a.proxy_endpoint if r == "c" else self.a.endpoint
        return "s3://%s/replicas?endpoint=%s" % (self.a.bucket, ep)

    def record_pid(self, pid):
        with open(self.pidfile, "a") as f:
            f.write("%d\n" % pid)

    def cli(self, r, *args, timeout=120, stdin=None):
        try:
            p = subprocess.run([self.L] + list(args), env=self.env(r),
                               input=stdin, capture_output=True, text=True,
                               timeout=timeout)
            return p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired:
            return 124, "", "timed out after %d s" % timeout

    def cat(self, path, timeout=30):
        """Read a file through a child process, so a hung FUSE request
        cannot hang the driver."""
        try:
            p = subprocess.run(["cat", path], capture_output=True,
                               timeout=timeout)
            if p.returncode:
                return None, p.stderr.decode(errors="replace").strip()
            return p.stdout, None
        except subprocess.TimeoutExpired:
            return None, "timed out after %d s" % timeout

    # -- mounts
    def mounted(self, path):
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    if line.split()[4] == path:
                        return True
        except OSError:
            pass
        return False

    def mount(self, r, deadline_s=60):
        m = self.mnt(r)
        if self.mounted(m):
            raise Failed("mount %s: %s is still mounted" % (r, m))
        self.mount_count[r] += 1
        with open(self.dlog(r), "a") as lf:
            lf.write("==== %s mount #%d (chaos +%.1fs)\n"
                     % (time.strftime("%H:%M:%S"), self.mount_count[r], now() - self.t0))
            lf.flush()
            p = subprocess.Popen(
                [self.L, "mount", "--home", self.home(r), "-f", "--remote",
                 self.url(r), "--poll-ms", str(self.a.poll_ms),
                 "--log-level", "info"]
                + (["--meta", self.a.meta] if self.a.meta else []) + [m],
                env=self.env(r), stdin=subprocess.DEVNULL, stdout=lf,
                stderr=subprocess.STDOUT)
        self.record_pid(p.pid)
        self.daemons[r] = p
        end = now() + deadline_s
        while not self.mounted(m):
            if p.poll() is not None:
                raise Failed("mount %s: the daemon exited with status %s before "
                             "mounting" % (r, p.returncode))
            if now() > end:
                raise Failed("mount %s: not mounted %d s after starting the daemon"
                             % (r, deadline_s))
            time.sleep(0.05)
        out, err = self.cat(os.path.join(m, LEDGER, ".ledgerfs", "heads"), 60)
        if out is None:
            raise Failed("mount %s: cannot read .ledgerfs/heads right after "
                         "mounting: %s" % (r, err))

    def unmount_lazy(self, r):
        m = self.mnt(r)
        for cmd in (["fusermount3", "-u", "-z", m], ["umount", "-l", m]):
            if not self.mounted(m):
                return
            subprocess.run(cmd, capture_output=True, timeout=30)
        if self.mounted(m):
            raise Failed("cannot unmount %s" % m)

    def aim(self, r, how):
        """Wait (at most 3 s) for the moment to kill r's daemon: right
        after its writer's next acknowledged save or delete (which must
        then survive the kill), or right after its writer began one
        (which the kill may cut short). Only the interleaving depends on
        this; no check does."""
        path = self.wlog(r)
        try:
            off = os.path.getsize(path)
        except OSError:
            return
        end = now() + 3
        buf = b""
        with open(path, "rb") as f:
            f.seek(off)
            while now() < end:
                buf += f.read()
                lines = buf.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    try:
                        x = json.loads(line)
                    except ValueError:
                        continue
                    if x.get("op") == "read":
                        continue
                    if how == "after-ack" and x.get("ev") == "end" and x.get("ok"):
                        return
                    if how == "in-op" and x.get("ev") == "begin":
                        return
                time.sleep(0.002)

    def kill_and_remount(self, r):
        self.check_daemons()  # a crash is reported, not taken for our kill
        p = self.daemons[r]
        how = self.rng.choice(("any", "after-ack", "in-op"))
        if how != "any" and r in self.writers:
            self.aim(r, how)
        self.kills_by_aim[how] = self.kills_by_aim.get(how, 0) + 1
        if p.poll() is None:
            self.killed.add(p.pid)
            p.kill()
        p.wait(timeout=60)
        time.sleep(self.rng.uniform(0, 1.5))
        self.unmount_lazy(r)
        self.mount(r)

    def check_daemons(self):
        """A daemon that died without being killed is a crash: record it,
        then mount again so the run goes on."""
        for r in REPLICAS:
            p = self.daemons.get(r)
            if p is None or p.poll() is None or p.pid in self.killed:
                continue
            self.fail("daemons", "the daemon of %s (pid %d) died by itself with "
                      "status %s (see its log below)" % (r, p.pid, p.returncode))
            self.killed.add(p.pid)
            self.unmount_lazy(r)
            self.mount(r)

    # -- radosgw and the proxy
    def rgw(self, sig):
        if self.rgw_pid:
            try:
                os.kill(self.rgw_pid, sig)
            except ProcessLookupError:
                pass
        self.rgw_stopped = sig == signal.SIGSTOP

    # The Redis endpoint (--meta; scripts/redis runs it in a.redis_dir).
    def redis_pid(self):
        try:
            with open(os.path.join(self.a.redis_dir, "redis.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 0

    def redis(self, sig):
        pid = self.redis_pid()
        if pid:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def redis_up(self):
        """SIGCONT it, or start it again (empty) when it is gone."""
        self.redis(signal.SIGCONT)
        pid = self.redis_pid()
        alive = False
        if pid:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                pass
        if not alive:
            try:
                os.unlink(os.path.join(self.a.redis_dir, "redis.pid"))
            except OSError:
                pass
            with open(os.path.join(self.a.redis_dir, "port")) as f:
                port = f.read().strip()
            r = subprocess.run([os.path.join(self.a.srcdir, "scripts", "redis"),
                                "start", self.a.redis_dir],
                               env=dict(os.environ, REDIS_PORT=port),
                               capture_output=True, text=True, timeout=120)
            if r.returncode:
                raise Failed("cannot start Redis again: %s" % r.stderr.strip())

    def proxy_mode(self, m):
        tmp = os.path.join(self.base, "proxy-mode.tmp")
        with open(tmp, "w") as f:
            f.write(m + "\n")
        os.rename(tmp, os.path.join(self.base, "proxy-mode"))

    def start_proxy(self):
        pf = os.path.join(self.base, "proxy-port")
        self.proxy_mode("pass")
        lifetime = self.a.seconds + 3600
        self.proxy = subprocess.Popen(
            [sys.executable, os.path.join(self.a.srcdir, "tests", "faultproxy.py"),
             "0", str(self.a.rgw_port), os.path.join(self.base, "proxy-mode"),
             str(lifetime), pf], stdin=subprocess.DEVNULL)
        self.record_pid(self.proxy.pid)
        end = now() + 30
        while not os.path.exists(pf):
            if self.proxy.poll() is not None or now() > end:
                raise Failed("the fault proxy did not start")
            time.sleep(0.05)
        with open(pf) as f:
            port = int(f.read())
        self.a.proxy_endpoint = "http://127.0.0.1:%d" % port

    # -- writers
    def start_writers(self):
        for r in REPLICAS:
            p = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "writer",
                 "--replica", r, "--mnt", self.mnt(r), "--seed", str(self.seed),
                 "--log", self.wlog(r), "--stop", os.path.join(self.base, "stop"),
                 "--marker", self.marker, "--own", str(self.own_n),
                 "--shared", str(self.shared_n), "--pace", str(self.a.pace)],
                stdin=subprocess.DEVNULL)
            self.record_pid(p.pid)
            self.writers[r] = p

    def check_writers(self):
        for r, p in self.writers.items():
            if p.poll() is not None:
                raise Failed("writer %s exited early with status %s (a harness "
                             "bug)" % (r, p.returncode))

    def stop_writers(self, timeout_s):
        open(os.path.join(self.base, "stop"), "w").close()
        end = now() + timeout_s
        for r, p in self.writers.items():
            try:
                p.wait(timeout=max(1, end - now()))
            except subprocess.TimeoutExpired:
                recs = read_log(self.wlog(r))
                last = recs[-1] if recs else None
                self.fail("writers", "writer %s did not stop within %d s of being "
                          "asked: an operation hangs; its last log record: %s"
                          % (r, timeout_s, json.dumps(last)))
                p.kill()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            if p.returncode not in (0, None, -9):
                self.fail("writers", "writer %s exited with status %s (a harness "
                          "bug)" % (r, p.returncode))

    # -- phases
    def setup(self):
        self.say("seed %s, %d s of chaos, poll %d ms, marker %s, base %s"
                 % (self.seed, self.a.seconds, self.a.poll_ms, self.marker, self.base))
        for r in REPLICAS:
            os.makedirs(self.mnt(r))
            os.makedirs(self.home(r), mode=0o700)
            for sub in ("user", "xdg-data", "xdg-config", "xdg-cache", "xdg-state"):
                os.makedirs(os.path.join(self.home(r), sub))
        rc, out, err = self.cli("a", "init", LEDGER)
        if rc:
            raise Failed("ledgerfs init: %s" % err)
        rc, out, err = self.cli("a", "key", "export", LEDGER)
        if rc or not out.startswith("lfskey1:"):
            raise Failed("ledgerfs key export: %s" % err)
        self.share = out.strip()
        self.key = bytes.fromhex(self.share[len("lfskey1:"):])
        if len(self.key) != 32:
            raise Failed("the exported key is not 32 bytes: %r" % self.share)
        for r in ("b", "c"):
            rc, out, err = self.cli(r, "key", "import", LEDGER, stdin=self.share + "\n")
            if rc:
                raise Failed("ledgerfs key import on %s: %s" % (r, err))
        with open(os.path.join(self.home("a"), "keys", LEDGER + ".key")) as f:
            keyfile = f.read().strip()
        if bytes.fromhex(keyfile) != self.key:
            raise Failed("the key file of home a does not match the export")
        self.rgw_pid = self.a.rgw_pid
        self.start_proxy()
        for r in REPLICAS:
            self.mount(r)
        self.say("mounted a, b and c%s (c through the proxy %s)"
                 % ("", self.a.proxy_endpoint))
        # One full round each before any fault: the setup works.
        for r in REPLICAS:
            ok, why = self.wait_pushed(r, now() + 120)
            if not ok:
                raise Failed("before any fault, %s's .ledgerfs/wait failed: %s" % (r, why))

    def chaos(self):
        self.start_writers()
        end = now() + self.a.seconds
        self.say("writers started; faults for %d s" % self.a.seconds)
        allk = {"store_stop": 3, "proxy_stall": 3, "proxy_reset": 3, "kill": 4,
                "cli_sync": 3, "redis_stop": 2, "redis_kill": 2, "quiet": 1}
        kinds = [k for k in allk if k in self.a.faults or k == "quiet"]
        weights = [allk[k] for k in kinds]
        overlap_kill = "kill" in self.a.faults
        while now() < end:
            self.check_daemons()
            self.check_writers()
            kind = self.rng.choices(kinds, weights)[0]
            dur = self.rng.uniform(0.5, 6.0)
            overlap = self.rng.random() < 0.3 and overlap_kill
            victim = self.rng.choice(REPLICAS)
            dur = max(0.2, min(dur, end - now()))
            self.stats[kind] = self.stats.get(kind, 0) + 1
            if kind == "store_stop":
                self.say("fault: radosgw SIGSTOP for %.1f s%s"
                         % (dur, ", killing %s meanwhile" % victim if overlap else ""))
                self.rgw(signal.SIGSTOP)
                try:
                    if overlap:
                        self.stats["kill"] += 1
                        self.kill_and_remount(victim)
                    time.sleep(dur)
                finally:
                    self.rgw(signal.SIGCONT)
            elif kind in ("proxy_stall", "proxy_reset"):
                m = kind.split("_")[1]
                self.say("fault: proxy %s for %.1f s%s"
                         % (m, dur, ", killing %s meanwhile" % victim if overlap else ""))
                self.proxy_mode(m)
                try:
                    if overlap:
                        self.stats["kill"] += 1
                        self.kill_and_remount(victim)
                    time.sleep(dur)
                finally:
                    self.proxy_mode("pass")
            elif kind == "redis_stop":
                self.say("fault: Redis SIGSTOP for %.1f s" % dur)
                self.redis(signal.SIGSTOP)
                try:
                    time.sleep(dur)
                finally:
                    self.redis_up()
            elif kind == "redis_kill":
                self.say("fault: Redis SIGKILL, started again empty after %.1f s"
                         % dur)
                self.redis(signal.SIGKILL)
                time.sleep(dur)
                self.redis_up()
            elif kind == "kill":
                self.say("fault: SIGKILL the daemon of %s, mount again" % victim)
                self.kill_and_remount(victim)
            elif kind == "cli_sync":
                self.cli_sync(victim, dur)
            else:
                self.say("quiet for %.1f s" % dur)
                time.sleep(dur)
            time.sleep(self.rng.uniform(0.2, 2.5))
        self.rgw(signal.SIGCONT)
        self.proxy_mode("pass")
        if self.a.meta:
            self.redis_up()
        self.check_daemons()
        self.say("faults stopped (%s); stopping the writers"
                 % ", ".join("%s %d" % kv for kv in sorted(self.stats.items())))
        self.stop_writers(120)
        self.check_daemons()
        # Temp files of saves cut short by a kill are scratch files of that
        # replica (never synced): remove them before comparing trees.
        for r in REPLICAS:
            d = os.path.join(self.mnt(r), LEDGER)
            for n in os.listdir(d):
                if n.startswith(".tmp-"):
                    try:
                        os.unlink(os.path.join(d, n))
                    except OSError as e:
                        self.fail("tree", "cannot remove the leftover temp file "
                                  "%s on %s: %s" % (n, r, e))

    def cli_sync(self, r, dur):
        """A `ledgerfs sync` on r's home while r's daemon runs: two
        processes apply CARs to one ledger and share its state files
        (waiting, missing, pushed). Half the time it is SIGKILLed after a
        random part of dur, mid-round whatever it was doing."""
        kill_after = self.rng.uniform(0.05, dur) if self.rng.random() < 0.5 else None
        self.say("fault: `ledgerfs sync` on %s's home beside its mount%s"
                 % (r, ", SIGKILL after %.2f s" % kill_after if kill_after else ""))
        p = subprocess.Popen([self.L, "sync", "--remote", self.url(r), LEDGER],
                             env=self.env(r), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.record_pid(p.pid)
        try:
            rc = p.wait(timeout=kill_after if kill_after else 180)
            self.say("`ledgerfs sync` on %s's home exited %d" % (r, rc))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def plant_bugs(self):
        """--selftest: break the promises on purpose, as a buggy ledgerfs
        would, so the run shows each check catches it."""
        self.expect_fail = set()
        logs = {w: read_log(self.wlog(w)) for w in REPLICAS}
        acked = [x for x in logs["a"] if x.get("ev") == "end" and x.get("ok")
                 and x["op"] in ("write", "rename") and x["doc"].startswith("own-")]
        if len(acked) >= 2:
            d = acked[-1]["doc"]
            old = [x for x in acked if x["doc"] == d][0]
            body = json.dumps({"writer": "a", "seq": old["seq"], "doc": d, "mark": "",
                               "pad": ""})
            with open(os.path.join(self.mnt("b"), LEDGER, doc_file(d)), "w") as f:
                f.write(body)
            self.say("selftest: b rolled %s back to a's seq %d" % (d, old["seq"]))
            self.expect_fail.add("own")
        dels = [x for x in logs["b"] if x.get("ev") == "end" and x.get("ok")
                and x["op"] == "unlink"]
        m = Model(own_docs("b", self.own_n))
        for x in logs["b"]:
            if x.get("ev") == "end":
                m.end(x)
        gone = [d for d in m.poss if m.poss[d] == {ABSENT} and
                any(x["doc"] == d for x in dels)]
        if gone:
            body = json.dumps({"writer": "b", "seq": 1, "doc": gone[0], "mark": "",
                               "pad": ""})
            with open(os.path.join(self.mnt("c"), LEDGER, doc_file(gone[0])), "w") as f:
                f.write(body)
            self.say("selftest: c brought back b's deleted %s" % gone[0])
        with open(os.path.join(self.mnt("c"), LEDGER, "notes.txt"), "w") as f:
            f.write("a scratch file only c has\n")
        self.expect_fail.add("tree")
        s3 = chaos_s3.from_env(self.a.endpoint)
        s3.put(self.a.bucket, "replicas/selftest-plain",
               ("leak %s %s" % (self.marker, self.key.hex())).encode())
        self.say("selftest: planted the marker and the key in the bucket")
        self.expect_fail.add("bucket")

    def wait_pushed(self, r, deadline):
        path = os.path.join(self.mnt(r), LEDGER, ".ledgerfs", "wait")
        why = "deadline passed before the first try"
        tries = 0
        while now() < deadline:
            tries += 1
            out, err = self.cat(path, timeout=90)
            if out is not None and out.strip() == b"pushed":
                return True, None
            why = err if out is None else "printed %r" % out[:200]
            time.sleep(1)
        return False, "%s (%d tries)" % (why, tries)

    def sync_status(self, r):
        out, err = self.cat(os.path.join(self.mnt(r), LEDGER, ".ledgerfs", "status"))
        try:
            j = json.loads(out)
            return "%s events; %s" % (j.get("events"), json.dumps(j.get("sync"), sort_keys=True))
        except (TypeError, ValueError):
            return "(status unreadable: %s)" % err

    def heads(self, r):
        out, err = self.cat(os.path.join(self.mnt(r), LEDGER, ".ledgerfs", "heads"))
        if out is None:
            return None
        return tuple(sorted(out.decode().split()))

    def converge(self):
        t = now()
        deadline = t + self.a.converge_seconds
        res = {}

        def one(r):
            res[r] = self.wait_pushed(r, deadline)
        ths = [threading.Thread(target=one, args=(r,)) for r in REPLICAS]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        for r in REPLICAS:
            if not res[r][0]:
                self.fail("wait", "%s's .ledgerfs/wait never printed \"pushed\" "
                          "within %d s of the faults ending: %s"
                          % (r, self.a.converge_seconds, res[r][1]))
        self.say("wait: %s (%.1f s)" % (", ".join("%s %s" % (r, "pushed" if res[r][0] else "FAILED")
                                                    for r in REPLICAS), now() - t))
        last = None
        while True:
            hs = {r: self.heads(r) for r in REPLICAS}
            last = hs
            if None not in hs.values() and len(set(hs.values())) == 1:
                break
            if now() > deadline:
                self.fail("heads", "the heads differ %d s after the faults ended "
                          "(so the tree, own and shared failures may follow from "
                          "that alone):\n%s\n%s"
                          % (self.a.converge_seconds,
                             "\n".join("  %s: %s" % (r, " ".join(h) if h else "(unreadable)")
                                       for r, h in sorted(hs.items())),
                             "\n".join("  %s sync: %s" % (r, self.sync_status(r))
                                       for r in REPLICAS)))
                return False
            time.sleep(0.5)
        self.say("heads identical on a, b, c after %.1f s: %s"
                 % (now() - t, " ".join(last["a"])))
        self.heads_final = last["a"]
        return True

    def diff_trees(self, deadline):
        """diff -rq a b and a c, polled until equal or the deadline: a kernel
        cache may lag a remote change by its TTL. The full diff -r goes
        to the evidence (tree.diff)."""
        first = None
        ex = ["-x", ".snapshots", "-x", ".ledgerfs"]
        while True:
            outs = []
            for r in ("b", "c"):
                try:
                    p = subprocess.run(["diff", "-rq"] + ex + [self.mnt("a"), self.mnt(r)],
                                       capture_output=True, text=True, timeout=120)
                    if p.returncode:
                        outs.append(p.stdout + p.stderr)
                except subprocess.TimeoutExpired:
                    outs.append("diff -rq a %s timed out\n" % r)
            if not outs:
                if first:
                    self.notes.append("the trees differed at first and became "
                                      "identical %.1f s later" % (now() - first))
                return True
            first = first or now()
            if now() > deadline:
                full = []
                for r in ("b", "c"):
                    try:
                        full.append(subprocess.run(
                            ["diff", "-r"] + ex + [self.mnt("a"), self.mnt(r)],
                            capture_output=True, text=True, timeout=120).stdout)
                    except subprocess.TimeoutExpired:
                        full.append("diff -r a %s timed out\n" % r)
                self.diff_text = "".join(full)
                lines = "".join(outs).replace(self.base + "/", "").splitlines()
                self.fail("tree", "the trees differ (diff -rq: %d lines; first 40):\n  %s"
                          % (len(lines), "\n  ".join(lines[:40])))
                return False
            time.sleep(1)

    def read_tree(self, r):
        d = os.path.join(self.mnt(r), LEDGER)
        names = set(os.listdir(d))
        state = {}
        for n in sorted(names):
            if not n.endswith(".json"):
                continue
            doc = n[:-5]
            out, err = self.cat(os.path.join(d, n))
            if out is None:
                state[doc] = ("err", err)
                continue
            state[doc] = parse_doc(out, doc)
        return names, state

    def check_values(self):
        logs = {w: read_log(self.wlog(w)) for w in REPLICAS}
        own = {w: own_docs(w, self.own_n) for w in REPLICAS}
        shared = shared_docs(self.shared_n)
        known = set(shared).union(*own.values())
        models = {}
        self.stats_ops = {}
        for w in REPLICAS:
            m = Model(own[w])
            st = {"ops": 0, "acked": 0, "failed": 0, "ambiguous": 0,
                  "slow": 0, "max_dt": 0.0}
            begun = {}
            for rec in logs[w]:
                if rec.get("ev") == "begin":
                    begun[rec["seq"]] = rec
                if rec.get("ev") != "end":
                    continue
                begun.pop(rec["seq"], None)
                st["ops"] += 1
                st["acked" if rec["ok"] else "failed"] += 1
                st["ambiguous"] += bool(rec.get("ambiguous"))
                st["max_dt"] = max(st["max_dt"], rec.get("dt", 0))
                st["slow"] += rec.get("dt", 0) > 10
                v = m.end(rec)
                v = rec.get("violation") or v
                if v:
                    self.fail("local", "writer %s, op seq %d (at +%.1f s): %s"
                              % (w, rec["seq"], rec.get("t", self.t0) - self.t0, v))
            for seq, rec in begun.items():
                # Begun, never ended (the writer was killed): ambiguous.
                self.notes.append("writer %s: op %d (%s %s) never ended"
                                  % (w, seq, rec["op"], rec["doc"]))
                if rec["op"] != "read":
                    m.end(dict(rec, ev="end", ok=False, ambiguous=True, err="?"))
            models[w] = m
            self.stats_ops[w] = st
        # Shared: every value written, acknowledged or ambiguous.
        sh_ok = {d: set() for d in shared}
        sh_amb = {d: set() for d in shared}
        sh_del = {d: 0 for d in shared}  # deletes acknowledged or ambiguous
        for w in REPLICAS:
            begun = {}
            for rec in logs[w]:
                if rec.get("ev") == "begin":
                    begun[rec["seq"]] = rec
                if rec.get("ev") != "end" or rec["doc"] not in sh_ok:
                    continue
                begun.pop(rec["seq"], None)
                if rec["op"] == "unlink" and (rec["ok"] or rec.get("ambiguous")):
                    sh_del[rec["doc"]] += 1
                if rec["op"] not in ("write", "rename"):
                    continue
                if rec["ok"]:
                    sh_ok[rec["doc"]].add((w, rec["seq"]))
                elif rec.get("ambiguous"):
                    sh_amb[rec["doc"]].add((w, rec["seq"]))
            for seq, rec in begun.items():
                if rec["doc"] in sh_amb and rec["op"] in ("write", "rename"):
                    sh_amb[rec["doc"]].add((w, seq))
                elif rec["doc"] in sh_amb and rec["op"] == "unlink":
                    sh_del[rec["doc"]] += 1
        for r in REPLICAS:
            names, state = self.read_tree(r)
            for n in sorted(names - {".ledgerfs", ".snapshots"}):
                doc = n[:-5] if n.endswith(".json") else None
                if doc not in known:
                    self.fail("tree", "%s lists an unexpected file %r" % (r, n))
            for w in REPLICAS:
                m = models[w]
                for d in own[w]:
                    got = state.get(d, ("state", ABSENT))
                    if got[0] != "state":
                        self.fail("own", "%s: %s is unreadable or malformed: %s"
                                  % (r, d, got[1]))
                        continue
                    v = got[1]
                    if v is not ABSENT and v[0] != w:
                        self.fail("own", "%s: %s holds writer %s's seq %d; only %s "
                                  "writes it" % (r, d, v[0], v[1], w))
                        continue
                    s = v if v is ABSENT else v[1]
                    if s in m.poss[d]:
                        continue
                    ack = m.last_ack[d]
                    if s is ABSENT:
                        what = "acknowledged write LOST"
                    elif ack[0] == "unlink":
                        what = "acknowledged delete UNDONE"
                    elif ack[0] == "initial":
                        what = "a document that was never acknowledged appeared"
                    elif s < ack[2]:
                        what = "rolled back to an older write"
                    else:
                        what = "holds a write that was not the last"
                    self.fail("own", "%s: %s: %s: it is %s; its writer %s last "
                              "acknowledged %s (allowed: %s)"
                              % (r, d, what, show_state(s), w, show_ack(ack),
                                 show_states(m.poss[d])))
            for d in shared:
                got = state.get(d, ("state", ABSENT))
                if got[0] != "state":
                    self.fail("shared", "%s: %s is unreadable or malformed: %s"
                              % (r, d, got[1]))
                    continue
                v = got[1]
                if v is ABSENT:
                    if sh_ok[d] and not sh_del[d]:
                        self.fail("shared", "%s: %s is absent, but %d writes to it "
                                  "were acknowledged and no delete of it was"
                                  % (r, d, len(sh_ok[d])))
                elif v not in sh_ok[d] and v not in sh_amb[d]:
                    self.fail("shared", "%s: %s holds %s's seq %d, which was never "
                              "written to it" % (r, d, v[0], v[1]))
        self.models = models

    def check_conflicts(self):
        owned = set()
        for w in REPLICAS:
            owned.update(own_docs(w, self.own_n))
        for r in REPLICAS:
            out, err = self.cat(os.path.join(self.mnt(r), LEDGER, ".ledgerfs", "conflicts"), 60)
            if out is None:
                self.fail("conflicts", "cannot read %s's .ledgerfs/conflicts: %s" % (r, err))
                continue
            try:
                entries = json.loads(out)
            except ValueError as e:
                self.fail("conflicts", "%s's .ledgerfs/conflicts is not JSON: %s" % (r, e))
                continue
            nshared = 0
            for e in entries:
                if e.get("id") not in owned:
                    nshared += 1
                    continue
                losers = []
                for c in e.get("conflicts", []):
                    doc = c.get("document") or {}
                    losers.append("%s seq %s (writer id %s, %s)"
                                  % (doc.get("writer", "?"), doc.get("seq", "?"),
                                     c.get("writer", "?")[:12], c.get("time")))
                self.fail("conflicts", "%s: single-writer document %s has %d conflict "
                          "entr%s: current %s; losers: %s"
                          % (r, e.get("id"), len(losers), "y" if len(losers) == 1 else "ies",
                             json.dumps(e.get("current")), "; ".join(losers)))
            if r == "a":
                self.notes.append("shared documents with conflict entries: %d" % nshared)

    def status_summary(self):
        out, _ = self.cat(os.path.join(self.mnt("a"), LEDGER, ".ledgerfs", "status"))
        try:
            j = json.loads(out)
            return "%s events, %s documents" % (j.get("events"), j.get("documents"))
        except (TypeError, ValueError):
            return "(status unreadable)"

    def save_control_files(self):
        for r in REPLICAS:
            for f in ("status", "heads", "conflicts", "changes", "errors"):
                out, err = self.cat(os.path.join(self.mnt(r), LEDGER, ".ledgerfs", f), 60)
                with open(os.path.join(self.base, "ctl-%s-%s.log" % (r, f)), "wb") as o:
                    o.write(out if out is not None else ("unreadable: %s\n" % err).encode())

    def unmount_all(self):
        for r in REPLICAS:
            m = self.mnt(r)
            p = self.daemons[r]
            end = now() + 60
            err = ""
            while self.mounted(m) and now() < end:
                q = subprocess.run(["fusermount3", "-u", m], capture_output=True,
                                   text=True, timeout=60)
                err = q.stderr.strip()
                if self.mounted(m):
                    time.sleep(0.5)
            if self.mounted(m):
                self.fail("daemons", "cannot unmount %s within 60 s: %s" % (r, err))
                self.unmount_lazy(r)
            try:
                rc = p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.fail("daemons", "the daemon of %s did not exit within 120 s of "
                          "unmounting" % r)
                self.killed.add(p.pid)
                p.kill()
                p.wait(timeout=30)
                continue
            if rc != 0 and p.pid not in self.killed:
                self.fail("daemons", "the daemon of %s exited with status %s after "
                          "unmounting (expected 0)" % (r, rc))
            self.killed.add(p.pid)

    def check_fsck(self):
        for r in REPLICAS:
            rc, out, err = self.cli(r, "fsck", LEDGER, timeout=300)
            if rc != 0 or out.strip() != "ok":
                self.fail("fsck", "ledgerfs fsck %s on home %s: exit %d\n%s%s"
                          % (LEDGER, r, rc, out[-3000:], err[-2000:]))
        ids = {}
        for r in REPLICAS:
            rc, out, err = self.cli(r, "ls", LEDGER)
            ids[r] = sorted(out.split()) if rc == 0 else "exit %d: %s" % (rc, err)
        if not (ids["a"] == ids["b"] == ids["c"]):
            self.fail("tree", "after unmounting, `ledgerfs ls %s` differs between "
                      "the homes: %s" % (LEDGER, json.dumps(ids)))

    def scan_bucket(self):
        s3 = chaos_s3.from_env(self.a.endpoint)
        keys = s3.list_keys(self.a.bucket)
        if not keys:
            self.fail("bucket", "the bucket holds no objects at all")
            return
        needles = [(self.marker.encode(), "the plaintext marker"),
                   (self.key, "the raw key bytes"),
                   (self.key.hex().encode(), "the key in hex"),
                   (self.key.hex().upper().encode(), "the key in upper-case hex"),
                   (self.share.encode(), "the key share string"),
                   (b"own-a-", "a document id (own-a-*)"),
                   (b"shared-0", "a document id (shared-0)"),
                   (b'"writer"', "a field name (\"writer\")")]
        size = 0
        for k in keys:
            for n, what in needles[:1] + needles[5:]:
                if n in k.encode():
                    self.fail("bucket", "object name %r holds %s" % (k, what))
            body = s3.get(self.a.bucket, k)
            size += len(body)
            for n, what in needles:
                if n in body:
                    self.fail("bucket", "object %r holds %s" % (k, what))
        self.say("bucket: %d objects, %d bytes scanned" % (len(keys), size))

    # -- evidence
    def evidence(self):
        print("=" * 72, file=sys.stderr)
        for r in REPLICAS:
            lines = []
            try:
                with open(self.dlog(r), errors="replace") as f:
                    lines = f.readlines()
            except OSError:
                pass
            errs = [l for l in lines if " error" in l or " warn" in l]
            print("---- daemon %s: %d log lines, %d warnings/errors; last 25 of those, "
                  "then the last 15 lines (%s) ----"
                  % (r, len(lines), len(errs), self.dlog(r)), file=sys.stderr)
            sys.stderr.writelines(errs[-25:])
            print("  ...", file=sys.stderr)
            sys.stderr.writelines(lines[-15:])
        for r in REPLICAS:
            recs = [x for x in read_log(self.wlog(r)) if x.get("ev") == "end" and x.get("ok")
                    and x["op"] != "read"]
            print("---- writer %s: the last 8 acknowledged operations (%s) ----"
                  % (r, self.wlog(r)), file=sys.stderr)
            for x in recs[-8:]:
                print("  %s seq %d %s +%.3f" % (x["op"], x["seq"], x["doc"], x["t"] - self.t0),
                      file=sys.stderr)
        if self.diff_text:
            with open(os.path.join(self.base, "tree.diff"), "w") as f:
                f.write(self.diff_text)
        with open(os.path.join(self.base, "failures.txt"), "w") as f:
            f.write("seed %s; replay: %s\n" % (self.seed, self.a.replay))
            for c, t in self.failures:
                f.write("FAIL [%s] %s\n" % (c, t))
        if self.a.evidence:
            try:
                os.makedirs(self.a.evidence, exist_ok=True)
                for n in os.listdir(self.base):
                    p = os.path.join(self.base, n)
                    if os.path.isfile(p) and (n.endswith(".log") or n.endswith(".jsonl")
                                              or n.endswith(".diff") or n.endswith(".txt")):
                        shutil.copy(p, self.a.evidence)
                print("evidence (daemon logs, operation logs, diff) copied to %s"
                      % self.a.evidence, file=sys.stderr)
            except OSError as e:
                print("could not copy the evidence: %s" % e, file=sys.stderr)

    def cleanup(self):
        try:
            open(os.path.join(self.base, "stop"), "w").close()
        except OSError:
            pass
        self.rgw(signal.SIGCONT)
        if self.a.meta:
            self.redis(signal.SIGCONT)
        for p in self.writers.values():
            if p.poll() is None:
                p.kill()
        for r, p in self.daemons.items():
            if p.poll() is None:
                p.terminate()
        for r in REPLICAS:
            try:
                if self.mounted(self.mnt(r)):
                    subprocess.run(["fusermount3", "-u", "-z", self.mnt(r)],
                                   capture_output=True, timeout=30)
                if self.mounted(self.mnt(r)):
                    subprocess.run(["umount", "-l", self.mnt(r)], capture_output=True,
                                   timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for p in list(self.daemons.values()) + list(self.writers.values()):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
        if self.proxy and self.proxy.poll() is None:
            self.proxy.kill()
            self.proxy.wait()

    def run(self):
        fatal = None
        try:
            self.setup()
            self.chaos()
            if self.a.selftest:
                self.plant_bugs()
            ok = self.converge()
            self.diff_trees(now() + (120 if ok else 10))
            self.check_values()
            self.check_conflicts()
            self.say("state: %s" % self.status_summary())
            self.save_control_files()
            self.unmount_all()
            self.check_fsck()
            self.scan_bucket()
        except Failed as e:
            fatal = str(e)
            self.fail("interrupted" if fatal.startswith("interrupted") else
                      "harness" if "harness" in fatal else "run", fatal)
        except Exception as e:  # a bug of the harness: say so
            import traceback
            traceback.print_exc()
            fatal = "%s: %s" % (type(e).__name__, e)
            self.fail("harness", "the driver crashed: " + fatal)
        finally:
            self.cleanup()
        for w, st in sorted(getattr(self, "stats_ops", {}).items()):
            self.say("writer %s: %d operations, %d acknowledged, %d failed (%d "
                     "ambiguous), slowest %.2f s, %d over 10 s"
                     % (w, st["ops"], st["acked"], st["failed"], st["ambiguous"],
                        st["max_dt"], st["slow"]))
        self.say("mounts: %s; kills: %s"
                 % (", ".join("%s %d" % (r, self.mount_count[r]) for r in REPLICAS),
                    ", ".join("%s %d" % kv for kv in sorted(self.kills_by_aim.items())) or "none"))
        for n in self.notes:
            self.say("note: " + n)
        if self.a.selftest:
            got = set(c for c, _ in self.failures)
            for c, t in self.failures:
                print("selftest: FAIL [%s] %s" % (c, t.splitlines()[0]), file=sys.stderr)
            missed = getattr(self, "expect_fail", {"own", "tree", "bucket"}) - got
            if missed:
                self.say("SELFTEST FAILED: the planted bugs went unnoticed by: %s"
                         % ", ".join(sorted(missed)))
                return 1
            self.say("selftest passed: every planted bug was caught (%s)"
                     % ", ".join(sorted(got)))
            return 0
        if not self.failures:
            self.say("PASS (seed %s)" % self.seed)
            return 0
        self.evidence()
        checks = sorted(set(c for c, _ in self.failures))
        print("=" * 72, file=sys.stderr)
        print("chaos: FAIL, seed %s -- failed checks: %s" % (self.seed, ", ".join(checks)),
              file=sys.stderr)
        shown = {}
        for c, t in self.failures:
            shown[c] = shown.get(c, 0) + 1
            if shown[c] <= 12:
                print("FAIL [%s] %s" % (c, t), file=sys.stderr)
        for c in checks:
            n = sum(1 for x, _ in self.failures if x == c)
            if n > 12:
                print("FAIL [%s] ... and %d more (all in failures.txt of the evidence)"
                      % (c, n - 12), file=sys.stderr)
        print("chaos: replay with: %s" % self.a.replay, file=sys.stderr)
        return 1


def main_run(argv):
    p = argparse.ArgumentParser(prog="chaos_driver.py run")
    p.add_argument("--ledgerfs", required=True)
    p.add_argument("--srcdir", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--endpoint", required=True, help="radosgw, http://127.0.0.1:PORT")
    p.add_argument("--rgw-pid", type=int, required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--seed", required=True)
    p.add_argument("--seconds", type=int, default=90)
    p.add_argument("--converge-seconds", type=int, default=300)
    p.add_argument("--poll-ms", type=int, default=400)
    p.add_argument("--pace", type=float, default=0.4,
                   help="a writer sleeps 0..PACE s between operations")
    p.add_argument("--own", type=int, default=5)
    p.add_argument("--shared", type=int, default=3)
    p.add_argument("--evidence", default="")
    p.add_argument("--selftest", action="store_true",
                   help="plant bugs after the faults; pass only if the checks catch them")
    p.add_argument("--faults",
                   default="store_stop,proxy_stall,proxy_reset,kill,cli_sync",
                   help="comma-separated fault kinds to inject (none: no faults)")
    p.add_argument("--replay", default="")
    p.add_argument("--meta", default="",
                   help="mount with --meta URL (a Redis that scripts/redis runs)")
    p.add_argument("--redis-dir", default="",
                   help="scripts/redis's directory, for the redis_* faults")
    a = p.parse_args(argv)
    a.rgw_port = int(a.endpoint.rsplit(":", 1)[1])
    a.faults = [f for f in a.faults.split(",") if f and f != "none"]
    for f in a.faults:
        if f not in ("store_stop", "proxy_stall", "proxy_reset", "kill",
                     "cli_sync", "redis_stop", "redis_kill"):
            p.error("unknown fault kind %r" % f)
        if f.startswith("redis_") and not a.redis_dir:
            p.error("fault %s needs --meta and --redis-dir" % f)
    a.proxy_endpoint = None
    run = Run(a)

    def term(sig, _frame):
        raise Failed("interrupted by signal %d (harness watchdog or user)" % sig)
    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, term)
    return run.run()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        main_writer(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "run":
        sys.exit(main_run(sys.argv[2:]))
    else:
        sys.exit(__doc__)
