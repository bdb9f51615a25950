r"""Gradient-norm clipping: what it changes in training, threshold by threshold.

``optax.clip_by_global_norm(c)`` rescales the whole gradient ``g`` to
``g * min(1, c / ||g||)`` (Pascanu, Mikolov & Bengio 2013), so the clipped
gradient has global norm at most ``c``; with plain SGD at learning rate ``lr`` the
applied update then has norm at most ``lr * c``. (Adam and RMSprop divide by a
running gradient scale, so there the bound applies to what they are fed, not to
their update.)

:func:`clipping_study` trains the same model (one recurrent initializer, the same
seeds and batches) once per threshold, all in one compiled loop, and returns a
:class:`gradscope.training.TrainingRun` whose settings are the thresholds:
``record.grad_norm`` holds the raw gradient norms (their distribution),
``record.loss`` the training curves, ``clipped_fraction()`` how often each
threshold fired.
"""

from __future__ import annotations

from gradscope.analysis import metrics
from gradscope.training.experiments import TrainConfig, TrainingRun, train_settings

__all__ = ["clip_label", "clipping_study"]


def clip_label(clip_norm: float | None) -> str:
    """The label of a threshold: ``"no clipping"`` or ``"clip 1"``."""
    return "no clipping" if clip_norm is None else f"clip {clip_norm:g}"


def clipping_study(cell, task, clip_norms=(None, 10.0, 1.0, 0.1), *, recurrent_init="orthogonal", seeds=1,
                   config: TrainConfig = TrainConfig(), key=None, input_init="lecun_normal", bias_init="zeros",
                   thresholds: metrics.Thresholds = metrics.Thresholds(),
                   progress: bool | None = None) -> TrainingRun:
    """Train ``cell`` on ``task`` once per clipping threshold, everything else equal.

    Args:
        cell: a gradscope cell or adapter with ``input_size == task.input_size``.
        task: a task from :mod:`gradscope.training`.
        clip_norms: global-norm thresholds; ``None`` trains without clipping.
        recurrent_init: the one recurrent initializer used for every threshold.
        seeds: a count or explicit ints.
        config: :class:`~gradscope.training.TrainConfig` (its ``clip_norm`` is ignored).
        key: the PRNG key (default ``jax.random.key(0)``).
        input_init: fixed initializers of the input kernel and biases.
        bias_init: fixed initializers of the input kernel and biases.
        thresholds: thresholds of the spectra summaries.
        progress: show a progress bar (default: only on a terminal).

    Returns:
        :class:`~gradscope.training.TrainingRun` with one setting per threshold,
        labelled by :func:`clip_label`.

    Raises:
        ValueError: a threshold that is not positive, or repeated thresholds.
    """
    clip_norms = tuple(None if c is None else float(c) for c in clip_norms)
    if any(c is not None and not c > 0 for c in clip_norms):
        raise ValueError(f"clipping thresholds must be > 0 (or None for no clipping), got {clip_norms}")
    labels = [clip_label(c) for c in clip_norms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"expected distinct clipping thresholds, got {clip_norms}")
    return train_settings(cell, task, labels, [recurrent_init] * len(labels), clip_norms, seeds=seeds,
                          config=config, key=key, input_init=input_init, bias_init=bias_init,
                          thresholds=thresholds, progress=progress)
