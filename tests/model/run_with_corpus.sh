#!/bin/sh
# run_with_corpus.sh PYTHON MAKE_BAD_FILES.PY DIR COMMAND [ARGS...]
# Writes the bad-file corpus into DIR (fresh), then runs COMMAND [ARGS...] DIR.
set -eu
python=$1 script=$2 dir=$3
shift 3
rm -rf "$dir"
"$python" "$script" "$dir"
exec "$@" "$dir"
