"""What the trainer needs to know about a task that the episode files do not say.

Values follow the DeepMind Control Suite tasks that mpc-sim reproduces in MuJoCo, with
PlaNet's action repeats. Every value can be overridden on the command line.
"""

TASKS = {
    # physics timestep 0.01 s, action repeat 8 -> 0.08 s per control step, 125 steps
    "cartpole-swingup": {"action_repeat": 8, "control_period_s": 0.08,
                         "action_low": [-1.0], "action_high": [1.0]},
    "cartpole-balance": {"action_repeat": 8, "control_period_s": 0.08,
                         "action_low": [-1.0], "action_high": [1.0]},
    # physics timestep 0.02 s, action repeat 2 (Dreamer)
    "pendulum-swingup": {"action_repeat": 2, "control_period_s": 0.04,
                         "action_low": [-1.0], "action_high": [1.0]},
    # physics timestep 0.02 s, action repeat 4 (PlaNet)
    "reacher-easy": {"action_repeat": 4, "control_period_s": 0.08,
                     "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]},
    # physics timestep 0.01 s, action repeat 4 (PlaNet): 6 joint torques
    "cheetah-run": {"action_repeat": 4, "control_period_s": 0.04,
                    "action_low": [-1.0] * 6, "action_high": [1.0] * 6},
}


def task_info(task, action_dim=None):
    """Known values for a task, or neutral defaults ([-1, 1] bounds) for an unknown one."""
    if task in TASKS:
        return dict(TASKS[task])
    n = action_dim or 1
    return {"action_repeat": 1, "control_period_s": 0.0, "action_low": [-1.0] * n,
            "action_high": [1.0] * n}
