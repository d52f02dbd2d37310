"""test_fleet_config.py: the fleet's shipped files, without running a fleet (suite unit).

- systemd/mpcd@.service (as built: $MPCD_TEMPLATE_UNIT): `systemd-analyze verify` on an
  instance of it, its exposure rating no worse than mpcd.service's (the same sandbox), a
  stop that drains (KillSignal=SIGTERM) and lasts long enough for the default drain plus
  shutdown, Restart=on-failure, one config per instance.
- systemd/haproxy-fleet.cfg.example: `haproxy -c` accepts it as shipped and as tools/fleet
  renders it (no warnings), and it has the settings the fleet depends on: TCP mode,
  leastconn, /readyz health checks on the status port, fast checks, redispatch and
  retries, long timeouts, and no `on-marked-down shutdown-sessions`.
- tools/fleet: --help, and render-haproxy with N servers.

Skips what needs systemd-analyze or haproxy when they are missing.
"""
import os
import pwd
import re
import shutil
import subprocess
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FLEET = os.path.join(REPO, "tools", "fleet")
EXAMPLE = os.path.join(REPO, "systemd", "haproxy-fleet.cfg.example")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin",
                               "/sbin"])
HAPROXY = shutil.which("haproxy", path=SEARCH_PATH)
ANALYZE = shutil.which("systemd-analyze")
PYTHON = "/usr/bin/python3"
DEFAULT_DRAIN_GRACE_S = 2
DEFAULT_SHUTDOWN_TIMEOUT_S = 10


def unit_path(var, name):
    path = os.environ.get(var) or os.path.join(os.environ.get("MESON_BUILD_ROOT", ""),
                                               "systemd", name)
    if not os.path.isfile(path):
        pytest.skip("%s is not built (%s)" % (name, path))
    return path


def directives(text):
    """{key: [values]} of a unit file's [Service] section."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def seconds(value):
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    assert m, value
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def install_for_analyze(src, name, workdir):
    """A copy of the built unit named `name` whose ExecStart binary exists here (verify
    checks it): the built mpcd when there is one, else /bin/true."""
    text = open(src).read()
    m = re.search(r"^ExecStart=(\S+)", text, re.M)
    assert m, "no ExecStart in %s" % src
    mpcd = os.environ.get("MPCD")
    stand_in = mpcd if mpcd and os.access(mpcd, os.X_OK) else "/bin/true"
    text = text.replace(m.group(0), "ExecStart=" + stand_in)
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def exposure(unit, name):
    r = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", unit],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for %s: (\d+(?:\.\d+)?)" % re.escape(name),
                  r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


def test_template_unit_settings():
    text = open(unit_path("MPCD_TEMPLATE_UNIT", "mpcd@.service")).read()
    d = directives(text)
    assert re.search(r"--config \S+/mpcd/%i\.conf$", d["ExecStart"][0]), d["ExecStart"]
    assert d["KillSignal"] == ["SIGTERM"]
    assert d["Restart"] == ["on-failure"]
    assert d["Type"] == ["notify"]
    stop = seconds(d["TimeoutStopSec"][0])
    assert stop > DEFAULT_DRAIN_GRACE_S + DEFAULT_SHUTDOWN_TIMEOUT_S + 1, stop
    # the same sandbox as mpcd.service: every hardening line of it is in the template
    service = directives(open(unit_path("MPCD_SERVICE_UNIT", "mpcd.service")).read())
    for key, values in service.items():
        if key.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability",
                           "NoNewPrivileges", "LockPersonality", "MemoryDeny",
                           "DynamicUser", "KeyringMode", "ProcSubset", "DevicePolicy",
                           "RemoveIPC", "UMask", "AmbientCapabilities")):
            assert d.get(key) == values, "%s: %s in mpcd.service, %s in mpcd@.service" % (
                key, values, d.get(key))


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_template_unit_verifies_and_is_as_sandboxed(tmp_path):
    template = unit_path("MPCD_TEMPLATE_UNIT", "mpcd@.service")
    service = unit_path("MPCD_SERVICE_UNIT", "mpcd.service")
    inst = install_for_analyze(template, "mpcd@a.service", str(tmp_path))
    r = subprocess.run([ANALYZE, "verify", "--man=no", inst], capture_output=True,
                       text=True, timeout=120)
    problems = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    assert r.returncode == 0 and not problems, "\n".join(problems)
    plain = install_for_analyze(service, "mpcd.service", str(tmp_path))
    assert exposure(inst, "mpcd@a.service") <= exposure(plain, "mpcd.service")


def example_settings():
    lines = []
    for line in open(EXAMPLE):
        body = line.split("#", 1)[0].strip()
        if body:
            lines.append(re.sub(r"\s+", " ", body))
    return lines


def test_example_has_the_fleet_settings():
    s = example_settings()
    assert "mode tcp" in s
    assert "balance leastconn" in s
    assert "option httpchk GET /readyz" in s
    assert "http-check expect status 200" in s
    assert "option redispatch 1" in s
    assert any(re.fullmatch(r"retries [1-9]", x) for x in s)
    assert "default-server inter 500ms fall 1 rise 2" in s
    servers = [x for x in s if x.startswith("server ") and " backup" not in x]
    assert len(servers) == 3
    assert all(re.search(r" check port \d+", x) for x in servers), servers
    # the same instances as unchecked backups, for when every one is DOWN (full)
    backups = [x for x in s if x.startswith("server ") and x.endswith(" backup maxconn 256")]
    assert [b.split()[2] for b in backups] == [x.split()[2] for x in servers], backups
    assert "option allbackups" in s
    # long-lived robot sessions: every inactivity timeout far above a control period (and
    # above mpcd's idle-timeout-s, 300 s)
    for key in ("client", "server", "tunnel"):
        (value,) = [x.split()[2] for x in s if x.startswith("timeout %s " % key)]
        assert value.endswith("m") and int(value[:-1]) * 60 > 300, (key, value)
    # a drain must let its sessions finish: DOWN never cuts them
    assert not any("shutdown-sessions" in x for x in s)


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_example_is_valid_as_shipped_and_rendered(tmp_path):
    try:
        pwd.getpwnam("haproxy")  # the shipped file names Debian's haproxy user
        r = subprocess.run([HAPROXY, "-c", "-f", EXAMPLE], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
    except KeyError:
        pass
    servers = ["--server", "mpcd1=127.0.0.1:17071,19465", "--server",
               "mpcd2=127.0.0.1:17072,19466", "--server", "mpcd3=127.0.0.1:17073,19467",
               "--server", "mpcd4=127.0.0.1:17074,19468"]
    too_long = "/" + "d" * 90 + "/admin.sock"
    r = subprocess.run([PYTHON, FLEET, "render-haproxy", "--bind", "127.0.0.1:17070",
                        "--stats-socket", too_long] + servers,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "at most 97 bytes" in r.stderr, r.stderr
    # a Unix socket path must be short: a CI checkout's tmp_path may not be
    sockdir = tempfile.mkdtemp(prefix="mpcd-cfg-")
    try:
        check_rendered(tmp_path, servers, os.path.join(sockdir, "admin.sock"))
    finally:
        shutil.rmtree(sockdir)


def check_rendered(tmp_path, servers, stats_sock):
    r = subprocess.run([PYTHON, FLEET, "render-haproxy", "--bind", "127.0.0.1:17070",
                        "--stats-socket", stats_sock] + servers,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(r.stdout)
    assert "bind 127.0.0.1:17070\n" in r.stdout
    assert len(re.findall(r"^\s*server mpcd\d 127\.0\.0\.1:1707\d check port 1946\d",
                          r.stdout, re.M)) == 4
    assert len(re.findall(r"^\s*server mpcd\d-backup 127\.0\.0\.1:1707\d backup ",
                          r.stdout, re.M)) == 4
    assert not re.search(r"^\s*(chroot|user|group)\b", r.stdout, re.M)
    r = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[WARNING]" not in r.stdout + r.stderr and "[ALERT]" not in r.stdout + r.stderr


def test_fleet_tool_help():
    r = subprocess.run([PYTHON, FLEET, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for command in ("up", "robots", "roll", "down", "demo", "status", "drain", "kill"):
        assert re.search(r"^\s+%s\b" % command, r.stdout, re.M), command
    assert os.access(FLEET, os.X_OK)
    r = subprocess.run([PYTHON, FLEET], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
