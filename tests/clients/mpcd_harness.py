#!/usr/bin/python3
"""mpcd_harness.py: start and stop a real mpcd on loopback for tests (shared helper).

Library use (pytest, any test directory: put tests/clients on sys.path):

    from mpcd_harness import Mpcd, make_model, find_binary
    model = make_model(tmp_path / "m.safetensors", obs_dim=3, action_dim=1)
    with Mpcd(model) as d:          # skips the pytest when mpcd is not built
        subprocess.run([mpcctl, "--connect", d.address, "status"])
        # Reload needs the admin role: Hello with d.admin_token first (d.admin_token_file
        # for mpcctl --token-file), or Mpcd(..., admin_token=False) for a daemon without.
        print(d.log_text())

Command-line use (meson tests in any language; {addr} in the command becomes the daemon's
address, {status} its HTTP status host:port, {model} the model file):

    mpcd_harness.py [--mpcd PATH] [--model FILE | --obs-dim N --action-dim A]
                    [--daemon-arg ARG ...] -- COMMAND ARGS...

exits with COMMAND's status, 77 (meson's "skipped") when mpcd is not built, and prints the
daemon's log when COMMAND fails.

mpcd is found through $MPCD, else daemon/mpcd under $MESON_BUILD_ROOT or build*/ of this
tree. The daemon listens on free loopback ports picked here; start() waits until it
accepts connections (or fails with its log when it exits first).
"""

import argparse
import glob
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PYTHON = "/usr/bin/python3"
SKIP = 77


class HarnessError(Exception):
    pass


def build_roots():
    root = os.environ.get("MESON_BUILD_ROOT")
    if root:
        return [root]
    return sorted(glob.glob(os.path.join(REPO, "build*")))


def find_binary(name, env_var=None, subdir=None):
    """Path of a built program: $env_var, else <build>/<subdir>/<name>; None if missing."""
    explicit = os.environ.get(env_var) if env_var else None
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for root in build_roots():
        path = os.path.join(root, subdir, name) if subdir else os.path.join(root, name)
        if os.access(path, os.X_OK):
            return path
    return None


def find_mpcd():
    return find_binary("mpcd", "MPCD", "daemon")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(path, obs_dim=3, action_dim=1, seed=0, extra=()):
    """Writes a small random model with model/train/make_model.py; returns its path."""
    path = str(path)
    cmd = [PYTHON, os.path.join(REPO, "model", "train", "make_model.py"),
           "--obs-dim", str(obs_dim), "--action-dim", str(action_dim),
           "--deter", "32", "--stoch", "8", "--hidden", "32", "--embed", "32",
           "--seed", str(seed), "--out", path] + list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise HarnessError("make_model.py failed (%d): %s" % (r.returncode, r.stderr))
    return path


def _skip(reason):
    """pytest.skip when running under pytest, else HarnessError."""
    if "pytest" in sys.modules:
        import pytest
        pytest.skip(reason)
    raise HarnessError(reason)


class Mpcd:
    """One mpcd process on free loopback ports; a context manager."""

    def __init__(self, model, mpcd=None, deadline_ms=50, extra_args=(), log_path=None,
                 admin_token=True, admission=False):
        self.mpcd = mpcd or find_mpcd()
        self.model = str(model) if model else None
        self.deadline_ms = deadline_ms
        self.extra_args = list(extra_args)
        self.log_path = log_path
        # An admin token (in a 0600 file, as an operator would keep it) so tests can Reload
        # over TCP: Hello with d.admin_token first. admin_token=False: none configured.
        self.admin_token = secrets.token_hex(16) if admin_token else None
        # Admission control sizes capacity from the measured plan cost, which an ASan build
        # makes ~10x larger: tests of everything else run with it off (--min-iterations
        # 0); tests/daemon/test_scheduler.py turns it on (admission=True).
        self.admission = admission
        self.admin_token_file = None
        self.proc = None
        self.port = None
        self.status_port = None
        self._own_log = False
        self._final_log = None

    @property
    def address(self):
        return "tcp://127.0.0.1:%d" % self.port

    @property
    def status_address(self):
        return "127.0.0.1:%d" % self.status_port

    def command(self):
        cmd = [self.mpcd, "--listen", self.address,
               "--status-listen", self.status_address,
               "--deadline-ms", str(self.deadline_ms)]
        if self.model:
            cmd += ["--model", self.model]
        if self.admin_token_file:
            cmd += ["--admin-token-file", self.admin_token_file]
        if not self.admission:
            cmd += ["--min-iterations", "0"]
        return cmd + self.extra_args

    def start(self, timeout=30.0):
        if not self.mpcd:
            _skip("mpcd is not built (set MPCD or build daemon/mpcd)")
        self.port, self.status_port = free_port(), free_port()
        if self.admin_token and not self.admin_token_file:
            fd, self.admin_token_file = tempfile.mkstemp(prefix="mpcd-admin-", suffix=".token")
            os.write(fd, (self.admin_token + "\n").encode())
            os.close(fd)
        if self.log_path is None:
            fd, self.log_path = tempfile.mkstemp(prefix="mpcd-", suffix=".log")
            os.close(fd)
            self._own_log = True
        self._log = open(self.log_path, "w")
        self._log.write("$ %s\n" % " ".join(self.command()))
        self._log.flush()
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError("mpcd exited with status %d before accepting connections:"
                                   "\n%s" % (self.proc.returncode, self.log_text()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                for path in self._unix_listens():  # opened after the TCP one, maybe
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as u:
                        u.settimeout(0.5)
                        u.connect(path)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise HarnessError("mpcd did not accept connections on %s within %g s:\n%s"
                           % (self.address, timeout, self.log_text()))

    def _unix_listens(self):
        """The Unix socket paths of the extra --listen arguments."""
        args, out = self.extra_args, []
        for i, a in enumerate(args):
            value = args[i + 1] if a == "--listen" and i + 1 < len(args) else \
                a[len("--listen="):] if a.startswith("--listen=") else ""
            if value.startswith("unix:"):
                out.append(value[len("unix:"):])
        return out

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        """SIGTERM, wait (SIGKILL after timeout); returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self.admin_token_file:
            os.unlink(self.admin_token_file)
            self.admin_token_file = None
        if self._own_log:
            self._final_log = self.log_text()
            os.unlink(self.log_path)
            self._own_log = False
        return self.proc.returncode

    def log_text(self):
        if self._final_log is not None:
            return self._final_log
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main():
    p = argparse.ArgumentParser(description="Run COMMAND against a fresh mpcd on loopback.",
                                usage="%(prog)s [options] -- COMMAND ARGS...")
    p.add_argument("--mpcd", help="mpcd binary (default: $MPCD or build*/daemon/mpcd)")
    p.add_argument("--model", help="model file (default: a random one from make_model.py)")
    p.add_argument("--obs-dim", type=int, default=3)
    p.add_argument("--action-dim", type=int, default=1)
    p.add_argument("--deadline-ms", type=int, default=50)
    p.add_argument("--daemon-arg", action="append", default=[],
                   help="extra mpcd argument (repeat for several)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("missing COMMAND after --")
    mpcd = args.mpcd or find_mpcd()
    if not mpcd:
        print("mpcd_harness: mpcd is not built; skipping", file=sys.stderr)
        return SKIP
    with tempfile.TemporaryDirectory(prefix="mpcd-harness-") as tmp:
        model = args.model or make_model(os.path.join(tmp, "model.safetensors"),
                                         args.obs_dim, args.action_dim)
        daemon = Mpcd(model, mpcd, args.deadline_ms, args.daemon_arg,
                      os.path.join(tmp, "mpcd.log"))
        daemon.start()
        try:
            cmd = [a.replace("{addr}", daemon.address).replace("{status}",
                   daemon.status_address).replace("{model}", model) for a in cmd]
            rc = subprocess.call(cmd)
        finally:
            daemon.stop()
        if rc != 0:
            sys.stderr.write("mpcd_harness: %s exited %d; daemon log:\n%s"
                             % (cmd[0], rc, daemon.log_text()))
        return rc


if __name__ == "__main__":
    sys.exit(main())
