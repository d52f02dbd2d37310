#!/usr/bin/python3
"""make_lq_model.py: write an RSSM model file whose planning problem has a known optimum.

The weights are set by hand so the imagined dynamics of the first deterministic unit p = h[0]
are p' = tanh(alpha * p + beta * a) (1-D action in [-1, 1]; the GRU's update gate is
closed, its reset gate open), the latent z is ignored everywhere, and the reward is
r(p) = -|p - target| (exact with ReLU units). From p0 the optimal sequence reaches target in
one step and stays there:
    a0* = (atanh(target) - alpha * p0) / beta,   a_t* = (atanh(target) - alpha * target) / beta.
The value head is v(p) = -value_scale * |p - value_target| (for the terminal-value test).
The constants are written into the metadata (lq_*), where the C test reads them.

usage: make_lq_model.py OUT.safetensors
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "model", "train"))

import torch  # noqa: E402

from mpc_rssm import RSSM, RSSMConfig, export_model  # noqa: E402

ALPHA, BETA, TARGET, VALUE_TARGET, VALUE_SCALE = 0.5, 1.0, 0.5, -0.5, 20.0
D, S, H = 8, 4, 8
BIG = 30.0  # sigmoid(30) == 1 and sigmoid(-30) == 0 to float precision


def build():
    torch.manual_seed(0)
    m = RSSM(RSSMConfig(obs_dim=2, action_dim=1, deter=D, stoch=S, hidden=H, embed=4,
                        has_value=True))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        # img_in: x0 = relu(a + 1) = a + 1 for a in [-1, 1]; input is [z, a]
        m.img_in.weight[0, S] = 1.0
        m.img_in.bias[0] = 1.0
        # GRU (gate order r, u, n): r = 1, u = 0, n = tanh(beta (x0 - 1) + r alpha p)
        m.gru.bias_ih[0:D] = BIG
        m.gru.bias_ih[D:2 * D] = -BIG
        m.gru.weight_ih[2 * D, 0] = BETA
        m.gru.bias_ih[2 * D] = -BETA
        m.gru.weight_hh[2 * D, 0] = ALPHA
        # reward and value: -(relu(p - c) + relu(c - p)) * scale, on [h, z]
        for head, c, scale in ((m.reward, TARGET, 1.0), (m.value, VALUE_TARGET, VALUE_SCALE)):
            head[0].weight[0, 0] = 1.0
            head[0].bias[0] = -c
            head[0].weight[1, 0] = -1.0
            head[0].bias[1] = c
            head[1].weight[0, 0] = 1.0
            head[1].weight[1, 1] = 1.0
            head[2].weight[0, 0] = -scale
            head[2].weight[0, 1] = -scale
        m.encoder[0].weight.normal_()  # the encoder is unused by the planner
    m.eval()
    return m


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    meta = {"task": "lq-test", "name": "lq-known-optimum", "discount": 0.9,
            "lq_alpha": ALPHA, "lq_beta": BETA, "lq_target": TARGET,
            "lq_value_target": VALUE_TARGET, "lq_value_scale": VALUE_SCALE,
            "trainer": "tests/planner/make_lq_model.py (hand-set weights)"}
    export_model(build(), argv[1], meta)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
