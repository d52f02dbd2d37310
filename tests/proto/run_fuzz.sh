#!/bin/sh
# run_fuzz.sh: runs one libFuzzer target for a bounded time from a fresh copy of its seeds.
#
# Usage: run_fuzz.sh FUZZER SECONDS WORKDIR [SEED_FILE_OR_DIR...]
#
# Copies the seeds into WORKDIR/corpus (libFuzzer adds what it finds there, so the source
# tree is never written), runs FUZZER for SECONDS, and leaves any crashing input in
# WORKDIR/artifacts/. Exit status is the fuzzer's: 0 when nothing was found.
# MPCD_FUZZ_SECONDS, when set, overrides SECONDS (longer local runs:
# MPCD_FUZZ_SECONDS=600 meson test -C build-fuzz --suite fuzz --timeout-multiplier 0).
set -eu
if [ "$#" -lt 3 ]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
fuzzer=$1
seconds=${MPCD_FUZZ_SECONDS:-$2}
work=$3
shift 3

rm -rf "$work/corpus"
mkdir -p "$work/corpus" "$work/artifacts"
for seed in "$@"; do
    if [ -d "$seed" ]; then
        cp "$seed"/* "$work/corpus/" 2>/dev/null || true
    else
        cp "$seed" "$work/corpus/"
    fi
done

exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -error_exitcode=1 -timeout_exitcode=1 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus"
