#!/bin/bash
# run_fuzz.sh: runs one libFuzzer target for a bounded time from a fresh copy of its seeds.
#
# Usage: run_fuzz.sh FUZZER SECONDS WORKDIR [SEED_FILE_OR_DIR | -LIBFUZZER_FLAG]...
#
# Copies the seeds into WORKDIR/corpus (libFuzzer adds what it finds there, so the source
# tree is never written), runs FUZZER for SECONDS, and leaves any crashing input in
# WORKDIR/artifacts/. Arguments starting with '-' go to libFuzzer and override the
# defaults below (e.g. -max_len=65536 for a target with larger inputs, -dict=FILE).
# Exit status: 0 when nothing was found, 1 on a crash, leak, timeout or sanitizer report.
# MPCD_FUZZ_SECONDS, when set, overrides SECONDS (longer local runs:
# MPCD_FUZZ_SECONDS=600 meson test -C build-fuzz --suite fuzz --timeout-multiplier 0).
set -eu
if [ "$#" -lt 3 ]; then
    sed -n '2,13p' "$0" >&2
    exit 2
fi
fuzzer=$1
seconds=${MPCD_FUZZ_SECONDS:-$2}
work=$3
shift 3

rm -rf "$work/corpus"
mkdir -p "$work/corpus" "$work/artifacts"
flags=()
for arg in "$@"; do
    if [[ $arg == -* ]]; then
        flags+=("$arg")
    elif [ -d "$arg" ]; then
        cp "$arg"/* "$work/corpus/" 2>/dev/null || true
    else
        cp "$arg" "$work/corpus/"
    fi
done

# -error_exitcode: libFuzzer's default (77) would read as "skipped" to meson test.
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -error_exitcode=1 -timeout_exitcode=1 \
    -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "${flags[@]}" "$work/corpus"
