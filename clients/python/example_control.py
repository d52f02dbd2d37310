#!/usr/bin/python3
"""example_control.py: closed-loop control of a pure-Python pendulum by mpcd.

Drives a torque-limited pendulum (the classic swing-up: start hanging down, reward for being
upright) with the daemon's actions, the way mpc-sim does with MuJoCo: every control period
the observation [cos(theta), sin(theta), angular velocity] and the last reward go to mpcd in
a Step, the action that comes back is applied for `--action-repeat` physics steps, and the
episode's return and the reply latencies are printed at the end.

The model served by mpcd must take 3 observations and 1 action (for a quick try, a random
one: model/train/make_model.py --obs-dim 3 --action-dim 1 --out /tmp/pendulum.safetensors).

    example_control.py --connect tcp://127.0.0.1:7070 --steps 200
"""

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpc_client  # noqa: E402


class Pendulum:
    """theta = 0 is upright; semi-implicit Euler, torque clipped to +-max_torque."""

    def __init__(self, dt=0.01, gravity=9.81, length=1.0, mass=1.0, damping=0.1,
                 max_torque=2.0):
        self.dt, self.g, self.l, self.m = dt, gravity, length, mass
        self.damping, self.max_torque = damping, max_torque
        self.theta, self.omega = math.pi, 0.0

    def observation(self):
        return [math.cos(self.theta), math.sin(self.theta), self.omega]

    def reward(self):
        # dm_control style, bounded in [0, 1]: 1 within ~30 degrees of upright.
        return 1.0 if math.cos(self.theta) > math.cos(math.radians(30)) else \
            max(0.0, (math.cos(self.theta) + 1.0) / 2.0) * 0.1

    def step(self, torque):
        torque = max(-self.max_torque, min(self.max_torque, torque))
        alpha = (self.g / self.l) * math.sin(self.theta) - self.damping * self.omega \
            + torque / (self.m * self.l * self.l)
        self.omega += alpha * self.dt
        self.theta = math.atan2(math.sin(self.theta + self.omega * self.dt),
                                math.cos(self.theta + self.omega * self.dt))


def run(args):
    pendulum = Pendulum()
    latencies, total_return, reward = [], 0.0, 0.0
    with mpc_client.Client(args.connect, timeout=args.timeout, pb2_path=args.pb2) as client:
        welcome = client.hello("example_control/pendulum", args.token, 3, 1)
        print("session %d, model '%s' v%d, action bounds [%g, %g], deadline %d us"
              % (welcome.session_id, welcome.model_name, welcome.model_version,
                 welcome.action_low[0], welcome.action_high[0], welcome.default_deadline_us))
        for seq in range(args.steps):
            t0 = time.monotonic()
            action = client.step(pendulum.observation(), seq=seq, reward=reward,
                                 reset=(seq == 0), deadline_us=args.deadline_us,
                                 exploration_noise=args.explore)
            latencies.append((time.monotonic() - t0) * 1e3)
            low, high = welcome.action_low[0], welcome.action_high[0]
            if not low - 1e-6 <= action.action[0] <= high + 1e-6:
                raise SystemExit("action %g outside the bounds [%g, %g]"
                                 % (action.action[0], low, high))
            reward = 0.0
            for _ in range(args.action_repeat):
                pendulum.step(action.action[0])
                reward += pendulum.reward() / args.action_repeat
            total_return += reward
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, max(0, math.ceil(p / 100 * len(latencies)) - 1))]
    print("steps %d  return %.3f  final angle %.1f deg" % (args.steps, total_return,
                                                         math.degrees(pendulum.theta)))
    print("latency ms  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f"
          % (pct(50), pct(90), pct(99), latencies[-1]))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="exit status: 0 done, 1 the daemon refused or was "
                                       "unreachable, 2 bad arguments")
    p.add_argument("--connect", default=mpc_client.DEFAULT_ADDRESS,
                   help="tcp://HOST:PORT or unix:PATH (default %(default)s)")
    p.add_argument("--steps", type=int, default=200, help="control steps (200)")
    p.add_argument("--action-repeat", type=int, default=5,
                   help="physics steps of 10 ms per control step (5)")
    p.add_argument("--deadline-us", type=int, default=0,
                   help="per-step deadline; 0 = the daemon's default")
    p.add_argument("--explore", type=float, default=0.0, help="exploration noise (0)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-call timeout, s (5)")
    p.add_argument("--token", default="", help="auth token, if the daemon wants one")
    p.add_argument("--pb2", default=None, help="directory of the generated mpc_pb2.py "
                   "(default: $MPC_PB2_DIR or build*/proto)")
    args = p.parse_args()
    if args.steps < 1 or args.action_repeat < 1:
        p.error("--steps and --action-repeat must be at least 1")
    try:
        return run(args)
    except (mpc_client.MpcError, ImportError) as e:
        print("example_control.py: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
