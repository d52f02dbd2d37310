#!/usr/bin/python3
"""Checks the systemd units as installed: `systemd-analyze verify` on mpcd.service and
mpcd.socket, `systemd-analyze security --offline=true` rating mpcd.service at 2.0 or better
(lower is more secure), and `mpcd --check-config` accepting the example configuration.

    check_units.py BUILT_SERVICE SOCKET CONF_EXAMPLE [MPCD] WORKDIR

The service's ExecStart binary must exist for verify: the built mpcd is put in its place
(or /bin/true while mpcd is not built). Exits 77 (skipped) without systemd-analyze.
"""
import os
import re
import shutil
import subprocess
import sys

MAX_EXPOSURE = 2.0


def main(argv):
    if len(argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    service, socket, conf = argv[:3]
    mpcd = argv[3] if len(argv) == 5 else None
    workdir = argv[-1]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("systemd-analyze not installed: skipped")
        return 77

    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    text = open(service).read()
    m = re.search(r"^ExecStart=(\S+)", text, re.M)
    if m is None:
        print("mpcd.service has no ExecStart", file=sys.stderr)
        return 1
    stand_in = os.path.abspath(mpcd) if mpcd and os.access(mpcd, os.X_OK) else "/bin/true"
    text = text.replace(m.group(0), "ExecStart=" + stand_in)
    unit = os.path.join(workdir, "mpcd.service")
    with open(unit, "w") as f:
        f.write(text)
    shutil.copy(socket, os.path.join(workdir, "mpcd.socket"))
    sock_unit = os.path.join(workdir, "mpcd.socket")

    failed = False
    r = subprocess.run([analyze, "verify", "--man=no", unit, sock_unit],
                       capture_output=True, text=True, timeout=120)
    # verify prints problems on stderr even when it exits 0 (e.g. unknown settings)
    problems = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    if r.returncode != 0 or problems:
        print("systemd-analyze verify: status %d\n%s" % (r.returncode, "\n".join(problems)))
        failed = True
    else:
        print("systemd-analyze verify: ok")

    r = subprocess.run([analyze, "security", "--offline=true", "--no-pager", unit],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    m = re.search(r"Overall exposure level for mpcd\.service: (\d+(?:\.\d+)?)", out)
    if m is None:
        print("systemd-analyze security: no rating in its output:\n" + out)
        failed = True
    else:
        rating = float(m.group(1))
        print("systemd-analyze security: exposure %.1f (must be <= %.1f)" % (rating, MAX_EXPOSURE))
        if rating > MAX_EXPOSURE:
            print("\n".join(l for l in out.splitlines() if "\u2717" in l))
            failed = True

    if mpcd and os.access(mpcd, os.X_OK):
        # the example names /var/lib/mpcd/model.safetensors, absent here: no model
        r = subprocess.run([mpcd, "--check-config", "--config", conf, "--model", "none"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            print("mpcd --check-config on %s: status %d\n%s%s" % (conf, r.returncode, r.stdout,
                                                                  r.stderr))
            failed = True
        else:
            print("mpcd --check-config accepts %s" % os.path.basename(conf))
    else:
        print("mpcd not built: example configuration not checked")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
