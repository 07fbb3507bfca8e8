"""The heterogeneous label model of the synthetic data (``SyntheticConfig.kind: heterogeneous``).

In the spirit of the MMoE paper's synthetic protocol (Ma et al., KDD 2018, section 3.1): each task's label is a
noisy function ``f = a + sum_i sin(alpha_i a + beta_i)`` of a projection ``a = w . x`` of a latent input ``x``, and
task relatedness is the cosine between the tasks' weight vectors ``w``. Here (``|alpha_i| <= 0.45`` with two sines,
so ``f`` is nonlinear but increasing and the sign of a task correlation survives it):

- ``x`` is a latent user-video interaction, ``(user_vec P) * (video_vec Q)`` (elementwise, ``LATENT_DIM`` wide):
  a bilinear form of the hidden user and video factors, learnable from the id (and profile) embeddings.
- Tasks come in two groups, watch-time (``is_click``, ``long_view``) and interaction (the other six). Each group
  has a base direction; the two bases have cosine ``relatedness``. A task's weight vector is
  ``WITHIN_GROUP * base + sqrt(1 - WITHIN_GROUP^2) * own`` with its own orthogonal direction, so tasks of one group
  have cosine ``WITHIN_GROUP^2`` and tasks of different groups ``WITHIN_GROUP^2 * relatedness``.
- ``S`` latent segments each turn every task's weight vector by the angle ``segment_shift * pi / 2`` towards a
  random direction of their own, so the label function differs by segment. An impression's segment is
  ``(user segment + video segment) mod S``; both are observable features (a user's ``onehot_feat2`` bucket and a
  video's first tag, each mod S), so a model can learn which function applies.

Legend: n impressions, T tasks, S segments, L = ``LATENT_DIM``, K the hidden factor size.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GROUPS", "LATENT_DIM", "VERSION", "WITHIN_GROUP", "HeterogeneousLabels", "task_weight_vectors"]

# Bump when the label model changes: it is part of the cache key of generated data.
VERSION = 1
LATENT_DIM = 16
WITHIN_GROUP = 0.8
NUM_SINES = 2
SIGNAL = 2.0  # standard deviation of a task's label logit before the intercept
USER_BIAS = 0.3  # weight of the per-user, per-task propensity (what GAUC cannot see)
# Task name -> group: 0 watch-time, 1 interaction.
GROUPS = {"is_click": 0, "long_view": 0, "is_like": 1, "is_profile_enter": 1, "is_comment": 1, "is_follow": 1,
          "is_forward": 1, "is_hate": 1}


def task_weight_vectors(rng: np.random.Generator, groups: list[int], relatedness: float, num_segments: int,
                        segment_shift: float) -> np.ndarray:
    """Unit weight vectors per segment and task.

    Args:
        rng: The random stream.
        groups: The group (0 or 1) of each task.
        relatedness: Cosine between the two groups' base directions.
        num_segments: S.
        segment_shift: The fraction of a right angle each segment turns a task's vector by.

    Returns:
        ``w_STL``, unit vectors.
    """
    t = len(groups)
    if t + 2 > LATENT_DIM:
        raise ValueError(f"{t} tasks need a latent dimension of at least {t + 2}, have {LATENT_DIM}")
    basis_LL, _ = np.linalg.qr(rng.normal(size=(LATENT_DIM, LATENT_DIM)))
    bases = (basis_LL[:, 0], relatedness * basis_LL[:, 0] + np.sqrt(1 - relatedness**2) * basis_LL[:, 1])
    own = np.sqrt(1 - WITHIN_GROUP**2)
    w_TL = np.stack([WITHIN_GROUP * bases[g] + own * basis_LL[:, 2 + i] for i, g in enumerate(groups)])
    angle = segment_shift * np.pi / 2
    r_STL = rng.normal(size=(num_segments, t, LATENT_DIM))
    r_STL -= np.einsum("stl,tl->st", r_STL, w_TL)[..., None] * w_TL  # orthogonal to the task's shared vector
    r_STL /= np.linalg.norm(r_STL, axis=-1, keepdims=True)
    return np.cos(angle) * w_TL[None] + np.sin(angle) * r_STL


class HeterogeneousLabels:
    """Label logits (without intercepts) of the heterogeneous kind.

    Args:
        rng: The random stream (its own, so the rest of the world does not change with the kind).
        task_names: The tasks, in label order (every name must be in ``GROUPS``).
        user_vec_UK: Hidden user factors.
        item_vec_IK: Hidden video factors.
        user_segment_U: Each user's segment in ``[0, S)``.
        item_segment_I: Each video's segment in ``[0, S)``.
        relatedness: Cosine between the groups' base directions.
        num_segments: S.
        segment_shift: How far segments turn the task vectors (0: not at all, 1: a right angle).
    """

    def __init__(self, rng: np.random.Generator, task_names: tuple[str, ...], user_vec_UK: np.ndarray,
                 item_vec_IK: np.ndarray, user_segment_U: np.ndarray, item_segment_I: np.ndarray,
                 relatedness: float, num_segments: int, segment_shift: float) -> None:
        k = user_vec_UK.shape[1]
        p_KL, q_KL = rng.normal(size=(k, LATENT_DIM)), rng.normal(size=(k, LATENT_DIM))
        # Each latent coordinate of x has about unit variance.
        self.user_lat_UL = user_vec_UK @ p_KL / np.sqrt((user_vec_UK @ p_KL).var())
        self.item_lat_IL = item_vec_IK @ q_KL / np.sqrt((item_vec_IK @ q_KL).var())
        self.w_STL = task_weight_vectors(rng, [GROUPS[t] for t in task_names], relatedness, num_segments,
                                         segment_shift)
        # sum |alpha| < 1 keeps f increasing in a, so the sign of a task correlation carries over to the labels.
        self.alpha_M = rng.uniform(0.3, 0.45, NUM_SINES) * rng.choice([-1.0, 1.0], NUM_SINES)
        self.beta_M = rng.uniform(-np.pi, np.pi, NUM_SINES)
        self.user_segment_U, self.item_segment_I = user_segment_U, item_segment_I
        self.num_segments = num_segments
        self.shift_T = np.zeros(len(task_names))
        self.scale_T = np.ones(len(task_names))

    def interaction(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """``x_nL``, the latent user-video interaction of each impression."""
        return self.user_lat_UL[user] * self.item_lat_IL[item]

    def segment(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Each impression's segment in ``[0, S)``."""
        return (self.user_segment_U[user] + self.item_segment_I[item]) % self.num_segments

    def raw(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """``f_Tn``, the MMoE-style task functions before standardisation."""
        a_nT = np.einsum("nl,ntl->nt", self.interaction(user, item), self.w_STL[self.segment(user, item)])
        f_nT = a_nT + np.sin(a_nT[..., None] * self.alpha_M + self.beta_M).sum(-1)
        return f_nT.T

    def standardize_on(self, user: np.ndarray, item: np.ndarray) -> None:
        """Fixes each task's shift and scale so its logit has mean 0 and std ``SIGNAL`` on this sample."""
        f_Tn = self.raw(user, item)
        self.shift_T, self.scale_T = f_Tn.mean(1), SIGNAL / f_Tn.std(1)

    def logits(self, user: np.ndarray, item: np.ndarray, user_bias_UT: np.ndarray) -> np.ndarray:
        """``[T, n]`` label logits without intercepts."""
        f_Tn = (self.raw(user, item) - self.shift_T[:, None]) * self.scale_T[:, None]
        return f_Tn + USER_BIAS * user_bias_UT[user].T / 0.4  # user_bias has std 0.4
