#!/usr/bin/python3
"""test-summary.py: one verdict over several meson builds, for .ci/run.

Usage: test-summary.py [--failed LABEL:REASON]... [BUILDDIR]...

For every BUILDDIR, reads BUILDDIR/meson-logs/testlog.json (one JSON object per test, as
`meson test` writes it) and prints one line per build, listing the tests that failed.
OK and EXPECTEDFAIL count as passed; FAIL, TIMEOUT, UNEXPECTEDPASS and ERROR as failed;
SKIP as neither. A build without a test log counts as 1 failed. Each --failed LABEL:REASON
is a step that failed before any test could run (a build that did not configure or
compile, a failed package install) and counts as 1 failed.

The last line is always `N passed, N failed`. Exit status: 0 when nothing failed, else 1.
"""
import json
import os
import sys

PASSED = {"OK", "EXPECTEDFAIL"}
FAILED = {"FAIL", "TIMEOUT", "UNEXPECTEDPASS", "ERROR"}
SKIPPED = {"SKIP"}


def read_testlog(builddir):
    """(passed, failed names, skipped) for one build, or None when it has no test log."""
    path = os.path.join(builddir, "meson-logs", "testlog.json")
    if not os.path.exists(path):
        return None
    passed, failed, skipped = 0, [], 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
                result, name = entry["result"], entry["name"]
            except (ValueError, KeyError) as exc:
                failed.append("%s line %d unreadable (%s)" % (path, lineno, exc))
                continue
            if result in PASSED:
                passed += 1
            elif result in SKIPPED:
                skipped += 1
            elif result in FAILED:
                failed.append("%s %s" % (result, name))
            else:
                failed.append("%s %s (unknown result)" % (result, name))
    return passed, failed, skipped


def main(argv):
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    total_passed = total_failed = 0
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--failed":
            if i + 1 >= len(argv):
                print("test-summary.py: --failed needs LABEL:REASON", file=sys.stderr)
                return 2
            label, _, reason = argv[i + 1].partition(":")
            print("%s: FAILED (%s)" % (label, reason or "failed"))
            total_failed += 1
            i += 2
            continue
        counts = read_testlog(arg)
        if counts is None:
            print("%s: FAILED (no meson-logs/testlog.json: tests did not run)" % arg)
            total_failed += 1
        else:
            passed, failed, skipped = counts
            print("%s: %d passed, %d failed, %d skipped" % (arg, passed, len(failed), skipped))
            for name in failed:
                print("    %s" % name)
            total_passed += passed
            total_failed += len(failed)
        i += 1
    print("%d passed, %d failed" % (total_passed, total_failed))
    return 0 if total_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
