"""Episode data for the trainer: loading common/EPISODES.md files and sampling chunks.

An episode file holds o_0..o_T, a_0..a_{T-1}, r_0..r_{T-1}. The model sees (a_{t-1}, o_t)
at step t and predicts r_{t-1} there (PlaNet's pairing), so a chunk of length L starting at
observation index s is:
    obs[i]         = o_{s+i}
    prev_action[i] = a_{s+i-1}   (zeros for i = 0 when s = 0: the episode start)
    reward[i]      = r_{s+i-1}   (masked out where there is no previous action)
Chunks are sampled uniformly over (episode, start) pairs: each valid start is equally
likely, so long and short episodes contribute by their length.

With images=True the buffer also holds each episode's camera images (the optional `image`
array, uint8 [T+1, H, W, C]) and chunks carry them as image [L, B, H, W, C]: pixel models
train on them, and distillation pairs them with the state observations of the same moment.
Pixel-only episodes (observation [T+1, 0], from `mpcd --record` of a pixel session) are
accepted only then.
"""
import glob
import os

import numpy as np
import torch


class EpisodeError(ValueError):
    """A file that is not a valid episode (names the file and the problem)."""


def load_episode(path, images=False):
    """Returns dict(observation [T+1,O], action [T,A], reward [T]) as float32 arrays, and
    with images=True also image [T+1,H,W,C] uint8."""
    names = ("observation", "action", "reward") + (("image",) if images else ())
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in names if k not in f.files]
            if missing:
                raise EpisodeError(f"{path}: missing array '{missing[0]}'"
                                   + (" (recorded without --obs pixels or both)"
                                      if missing == ["image"] else ""))
            ep = {k: np.asarray(f[k], dtype=np.float32) for k in names[:3]}
            image = np.asarray(f["image"]) if images else None
    except EpisodeError:
        raise
    except (OSError, ValueError) as e:
        raise EpisodeError(f"{path}: not a readable .npz episode ({e})") from None
    obs, act, rew = ep["observation"], ep["action"], ep["reward"]
    if obs.ndim != 2 or act.ndim != 2 or rew.ndim != 1:
        raise EpisodeError(f"{path}: expected observation [T+1,O], action [T,A], reward [T]")
    if not (obs.shape[0] == act.shape[0] + 1 == rew.shape[0] + 1):
        raise EpisodeError(f"{path}: inconsistent lengths observation {obs.shape[0]}, "
                           f"action {act.shape[0]}, reward {rew.shape[0]}")
    if act.shape[0] < 1:
        raise EpisodeError(f"{path}: empty episode")
    if obs.shape[1] == 0 and not images:
        raise EpisodeError(f"{path}: a pixel episode (observation [T+1, 0], its observations "
                           f"are the 'image' array; common/EPISODES.md): train a pixel model "
                           f"on it (mpc-train --obs pixels)")
    for k, v in ep.items():
        if not np.all(np.isfinite(v)):
            raise EpisodeError(f"{path}: non-finite values in {k}")
    if images:
        if image.dtype != np.uint8 or image.ndim != 4 or image.shape[0] != obs.shape[0] \
                or image.shape[3] not in (1, 3):
            raise EpisodeError(f"{path}: 'image' is {image.dtype} {list(image.shape)}; "
                               f"expected uint8 [T+1={obs.shape[0]}, H, W, C=1 or 3]")
        ep["image"] = image
    return ep


def episode_files(directory):
    return sorted(glob.glob(os.path.join(directory, "*.npz")))


class EpisodeBuffer:
    """All episodes of one or more directories, in memory, with uniform chunk sampling.

    refresh() picks up files written since the last call (the learning loop records new
    episodes into the same directory while training goes on).
    """

    def __init__(self, directories, images=False):
        if isinstance(directories, (str, os.PathLike)):
            directories = [directories]
        self.directories = [os.fspath(d) for d in directories]
        self.images = images
        self.paths = []
        self.episodes = []
        self.refresh()

    def refresh(self):
        known = set(self.paths)
        added = 0
        for d in self.directories:
            for p in episode_files(d):
                if p in known:
                    continue
                ep = load_episode(p, self.images)
                if self.episodes:
                    self._check_dims(p, ep)
                self.paths.append(p)
                self.episodes.append(ep)
                added += 1
        return added

    def _check_dims(self, path, ep):
        o, a = self.obs_dim, self.action_dim
        if ep["observation"].shape[1] != o or ep["action"].shape[1] != a:
            raise EpisodeError(f"{path}: dims (obs {ep['observation'].shape[1]}, action "
                               f"{ep['action'].shape[1]}) differ from the other episodes "
                               f"(obs {o}, action {a})")
        if self.images and ep["image"].shape[1:] != self.image_shape:
            raise EpisodeError(f"{path}: images {list(ep['image'].shape[1:])} differ from "
                               f"the other episodes' {list(self.image_shape)}")

    def __len__(self):
        return len(self.episodes)

    @property
    def obs_dim(self):
        return self.episodes[0]["observation"].shape[1]

    @property
    def action_dim(self):
        return self.episodes[0]["action"].shape[1]

    @property
    def image_shape(self):
        """(H, W, C) of the images (images=True only)."""
        return self.episodes[0]["image"].shape[1:]

    @property
    def num_steps(self):
        """Control steps (transitions) in the buffer."""
        return int(sum(ep["action"].shape[0] for ep in self.episodes))

    def returns(self):
        return [float(ep["reward"].sum()) for ep in self.episodes]

    def obs_stats(self, min_std=1e-2):
        """Per-dimension mean and std over every stored observation (std floored)."""
        allobs = np.concatenate([ep["observation"] for ep in self.episodes], 0)
        mean = allobs.mean(0)
        std = np.maximum(allobs.std(0), min_std)
        return mean.astype(np.float32), std.astype(np.float32)

    def sample(self, batch, length, rng):
        """Returns a dict of time-major tensors: obs [L,B,O], prev_action [L,B,A],
        reward [L,B], reward_mask [L,B], and with images image [L,B,H,W,C] uint8. rng is a
        numpy Generator (deterministic)."""
        if not self.episodes:
            raise EpisodeError("no episodes to sample from")
        # Number of valid starts per episode: obs index s with s + L <= T + 1.
        lens = np.array([ep["observation"].shape[0] for ep in self.episodes])
        if lens.max() < length:
            raise EpisodeError(f"chunk length {length} exceeds the longest episode "
                               f"({lens.max()} observations)")
        starts = np.maximum(lens - length + 1, 0)
        cum = np.cumsum(starts)
        flat = rng.integers(0, cum[-1], size=batch)
        idx = np.searchsorted(cum, flat, side="right")
        begin = flat - (cum[idx] - starts[idx])
        O, A = self.obs_dim, self.action_dim
        obs = np.empty((batch, length, O), np.float32)
        act = np.zeros((batch, length, A), np.float32)
        rew = np.zeros((batch, length), np.float32)
        mask = np.ones((batch, length), np.float32)
        img = np.empty((batch, length, *self.image_shape), np.uint8) if self.images else None
        for b, (e, s) in enumerate(zip(idx, begin)):
            ep = self.episodes[e]
            obs[b] = ep["observation"][s:s + length]
            if img is not None:
                img[b] = ep["image"][s:s + length]
            lo = max(s - 1, 0)
            n = s + length - 1 - lo
            off = length - n
            act[b, off:] = ep["action"][lo:lo + n]
            rew[b, off:] = ep["reward"][lo:lo + n]
            if s == 0:
                mask[b, 0] = 0.0
        tm = lambda x: torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1)))
        out = {"obs": tm(obs), "prev_action": tm(act), "reward": tm(rew),
               "reward_mask": tm(mask)}
        if img is not None:
            out["image"] = tm(img)
        return out


def write_episode(path, observation, action, reward):
    """Writes one episode file per common/EPISODES.md (used by tests and tools)."""
    np.savez(path, observation=np.asarray(observation, np.float32),
             action=np.asarray(action, np.float32), reward=np.asarray(reward, np.float32))
