#!/bin/bash
# A pixel model of cartpole-swingup: distil the shipped cartpole state model into a 64x64
# pixel model (model/train/README.md, "Pixel models"). Resumable: run it
# again with the same RUN directory after an interruption and it goes on where it stopped
# (each finished stage leaves a marker; mpc-train resumes from its checkpoint).
#
#   model/train/recipes/cartpole-swingup-pixels.sh RUN [ROUNDS]
#
# Needs build/daemon/mpcd and build/clients/sim/mpc-sim (with rendering). Stages:
#   teacher   90 episodes with states and images while the state model drives (mpcd with
#             its conf): 40 with exploration noise 0.3, 20 without, 20 with 1.0, and 10
#             random (mpc-sim --obs both)
#   phase1    4000 steps: the encoder learns the teacher's embedding of each state
#   phase2    1000 steps: the posterior too, the state read back from the pixel model's
#             own belief (--distill-tune posterior --distill-recon 1, lr 3e-4)
#   round K   DAgger: 20 episodes driven by the pixel model (noise 0.3; the states are
#             recorded beside the images), then 1000 more steps on all the episodes
# After each stage RUN/model.safetensors is the current pixel model and RUN/evals.txt gets
# the returns of 3 episodes without noise.
set -euo pipefail
RUN=$(realpath -m "${1:?usage: $0 RUN [ROUNDS]}")
ROUNDS=${2:-6}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
MPCD=${MPCD:-$REPO/build/daemon/mpcd}
SIM=${SIM:-$REPO/build/clients/sim/mpc-sim}
TEACHER=$REPO/model/zoo/cartpole-swingup.safetensors
PIXCONF=$REPO/model/train/recipes/cartpole-swingup-pixels.conf
mkdir -p "$RUN"
cd "$REPO"

DPID=
serve() { # serve MODEL CONF: mpcd on a free loopback port, once it is ready; sets PORT
  PORT=$((20000 + RANDOM % 20000))
  local log="$RUN/mpcd.log" lines
  touch "$log"
  lines=$(wc -l < "$log")
  "$MPCD" --config "$2" --model "$1" --listen tcp://127.0.0.1:$PORT --no-status-listen \
    --min-iterations=0 >> "$log" 2>&1 &
  DPID=$!
  for _ in $(seq 100); do
    tail -n +$((lines + 1)) "$log" | grep "ready: serving" > /dev/null && return 0
    kill -0 $DPID 2>/dev/null || break
    sleep 0.1
  done
  echo "mpcd did not start (see $log)" >&2
  return 1
}
stop() { # stop the mpcd that serve started
  [ -n "$DPID" ] || return 0
  kill $DPID 2>/dev/null || true
  wait $DPID 2>/dev/null || true
  DPID=
}
trap stop EXIT
sim() { "$SIM" --task cartpole-swingup --connect tcp://127.0.0.1:$PORT --quiet "$@"; }
train() { # train ARGS...: mpc-train on every episode directory of the run
  local data=()
  for d in "$RUN"/episodes-*; do data+=(--data "$d"); done
  /usr/bin/python3 model/train/mpc-train "${data[@]}" --checkpoint "$RUN/ckpt.pt" \
    --checkpoint-every 500 --threads 2 --no-progress --task cartpole-swingup \
    --out "$RUN/model.safetensors" --plot "$RUN/loss.png" --json "$@" \
    >> "$RUN/train.log" 2>&1
}
evaluate() { # evaluate STAGE: 3 episodes of the current pixel model
  local out
  serve "$RUN/model.safetensors" "$PIXCONF"
  out=$(sim --policy mpcd --obs pixels --episodes 3 --seed 11 | grep 'policy mpcd')
  stop
  echo "$1 $out" | tee -a "$RUN/evals.txt"
}
done_() { [ -e "$RUN/$1.done" ]; }
mark() { touch "$RUN/$1.done"; }
step() { # the checkpoint's step (0 before the first)
  [ -e "$RUN/ckpt.pt" ] || { echo 0; return; }
  /usr/bin/python3 -c 'import sys, torch; print(torch.load(sys.argv[1])["step"])' \
    "$RUN/ckpt.pt"
}
train_to() { # train_to STEP ARGS...: train (or resume) until the checkpoint is at STEP;
  # resuming at STEP already only exports it again (a sitting may have ended before)
  local now; now=$(step)
  if [ "$now" -eq 0 ]; then
    train --distill-from "$TEACHER" --conv-depth 16 --batch 16 --length 16 \
      --steps "$1" "${@:2}"
  else
    train --resume --steps $(($1 > now ? $1 - now : 0)) "${@:2}"
  fi
}
PHASE2=(--distill-tune posterior --distill-recon 1 --lr 3e-4)

if ! done_ teacher; then
  rm -rf "$RUN"/episodes-teacher
  serve "$TEACHER" model/zoo/cartpole-swingup.conf
  E="$RUN/episodes-teacher"
  sim --policy mpcd --obs both --record "$E" --episodes 40 --explore 0.3 --seed 1
  sim --policy mpcd --obs both --record "$E" --episodes 20 --seed 2
  sim --policy mpcd --obs both --record "$E" --episodes 20 --explore 1.0 --seed 3
  sim --policy random --obs both --record "$E" --episodes 10 --seed 4
  stop
  mark teacher
fi
if ! done_ phase1; then
  train_to 4000 --distill-tune encoder
  evaluate phase1
  mark phase1
fi
if ! done_ phase2; then
  train_to 5000 "${PHASE2[@]}"
  evaluate phase2
  mark phase2
fi
for k in $(seq 1 "$ROUNDS"); do
  done_ "round$k" && continue
  E="$RUN/episodes-round$k"
  if ! done_ "collect$k"; then
    rm -rf "$E"
    serve "$RUN/model.safetensors" "$PIXCONF"
    sim --policy mpcd --obs pixels --record "$E" --episodes 20 --explore 0.3 \
      --seed $((100 + k))
    stop
    mark "collect$k"
  fi
  train_to $((5000 + 1000 * k)) "${PHASE2[@]}"
  cp "$RUN/model.safetensors" "$RUN/model-round$k.safetensors"
  evaluate "round$k"
  mark "round$k"
done
