"""The paper's mixture density network: embedding -> P(z|X), trained on the CRPS.

A 4-layer densely connected network maps an input vector ``X`` (an image embedding,
catalogue features, or both) to the 200 weights of the fixed truncated-Gaussian mixture
of :mod:`photozsom.pdf` (centres evenly spaced on [0, 1.6], sigma 0.0037). "4-layer" is
read as four ``Linear`` layers: three hidden layers (ReLU; widths ``hidden``, default
256 each) and the 200-wide output layer, whose softmax gives the mixture weights.

It is trained to minimise the mean continuous ranked probability score (Matheson &
Winkler 1976) of the training redshifts, which :func:`crps_mixture` computes in closed form
and differentiably:

.. math::

    \\mathrm{CRPS}(F, y) = \\int (F(z) - 1\\{z \\ge y\\})^2\\,dz
                        = \\sum_k w_k\\, E|X_k - y| - \\tfrac12\\, w^\\top D\\, w,

where ``E|X_k - y|`` is a closed form for each truncated component and
``D_jk = E|X_j - X_k'|`` depends only on the fixed centres and width, so it is computed
once per process (:attr:`photozsom.pdf.MixtureGrid.pair_matrix`). The truncation is
included exactly, not approximated.

Training: inputs standardised with :class:`photozsom.features.Standardizer` (kept with the
model), AdamW on shuffled mini-batches. The learning rate follows a one-cycle schedule over
``max_epochs`` (15% of the steps warming up from ``lr / 10`` to ``lr``, then a cosine decay
to ``lr / 1000``); ``lr`` defaults to ``2.5e-3 * batch_size / 256`` (linear scaling with the
batch, which the warm-up keeps stable). By default (``batch_size=None, max_epochs=None``) the
schedule follows the number of training galaxies ``N`` (:func:`auto_schedule`): the batch is
the power of two nearest ``N / 40`` within [256, 1024], and the schedule lasts at least 1,000
optimiser steps and 24 epochs. From ~50,000 galaxies up that is batch 1024 over 24 epochs
(the fast schedule chosen with ``benchmarks/mdn.py`` on the default sky); a small sample gets
smaller batches and more epochs: a fixed 24 epochs of batch 1024 makes only ~200 steps on
8,000 galaxies and was 4-11% worse in test CRPS there than the earlier plateau schedule.
``benchmarks/sizes.py`` compares the defaults with both earlier schedules from 5,000
galaxies to the full samples. Training stops early once the validation CRPS has not improved
by ``min_improvement`` (relative) for ``patience`` epochs and has risen 2% above its best
(overfitting) after the rate has decayed to half its peak; rises at the peak rate are the
noise of large steps, which the decay removes. Otherwise the schedule runs to its end. The
best epoch's weights are restored. ``schedule="plateau"`` instead halves the rate when the
validation CRPS stalls and stops after ``patience`` epochs without improvement (no fixed
length); ``"cosine"`` decays from ``lr`` without warm-up. The output bias starts at the log
of the training redshift distribution, so epoch 0 already predicts n(z).

Precision: ``precision="float32"`` (the default) trains and predicts in float32 on every
device and trains with a fixed number of torch threads (``threads``, default 2: torch's
gradient sums depend on the thread count), so the same seed gives the same model on any CPU
whatever its cores. ``precision="bf16"`` runs the
network under bfloat16 autocast (the softmax and the loss stay float32): on CUDA for training
and inference, on the CPU for the training steps only (validation and predictions stay
float32). It is ~1.6x faster per epoch on CPUs with native bfloat16 (AVX512-BF16 / AMX,
:func:`cpu_has_native_bf16`), slower where bfloat16 is emulated, and gives a slightly
different model on each kind of CPU.

The model is saved as a ``photozsom.mdn`` artifact directory (:mod:`photozsom.artifacts`:
``meta.json`` + ``arrays.npz``, no pickle). :func:`cross_val_predict` gives out-of-fold
predictions for every row, on folds of equal size independent of the split.

:func:`train_val_test_split` makes the paper's 80/10/10 split, by seed, either of ``n``
rows or, stably when rows are added, of an array of object IDs.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photozsom.artifacts import arrays_to_state, load_artifact, save_artifact, state_to_arrays
from photozsom.device import TRAIN_THREADS, default_device, trains_with_fixed_threads
from photozsom.features import Standardizer, check_matrix
from photozsom.pdf import MixtureGrid, MixturePDF, check_redshifts, default_grid, get_grid

__all__ = ["MDN", "PRECISIONS", "assign_folds", "assign_group_folds", "auto_schedule",
           "cpu_has_native_bf16", "cross_val_predict", "crps_mixture", "train_val_test_split"]

_KIND = "mdn"
_SCHEDULES = ("onecycle", "cosine", "plateau")
#: ``MDN(precision=...)``: float32 everywhere (the default), or bfloat16 training steps.
PRECISIONS = ("float32", "bf16")
#: :func:`auto_schedule`: the batch follows ``n_train / AUTO_BATCH_DIVISOR`` within these bounds.
AUTO_BATCH_DIVISOR = 40
AUTO_BATCH_MIN, AUTO_BATCH_MAX = 256, 1024
#: :func:`auto_schedule`: fewest optimiser steps and epochs of a default schedule.
AUTO_MIN_STEPS = 1000
AUTO_MIN_EPOCHS = 24
#: Learning rate at the reference batch size; ``lr=None`` scales it linearly with the batch.
_BASE_LR = 2.5e-3
_BASE_BATCH = 256
#: Fraction of the one-cycle schedule spent warming up.
_WARMUP = 0.15
#: Relative rise of the validation CRPS above its best that ends a fixed schedule early.
_OVERFIT = 0.02
#: ... once the learning rate has decayed below this fraction of its peak.
_DECAYED = 0.5
_SQRT2PI = math.sqrt(2.0 * math.pi)
_CONSTS: dict[tuple, dict[str, Any]] = {}


# --------------------------------------------------------------------------------------------
# closed-form CRPS in torch
# --------------------------------------------------------------------------------------------
def _torch_consts(grid: MixtureGrid, device, dtype) -> dict[str, Any]:
    import torch

    key = (grid.key(), str(device), dtype)
    if key not in _CONSTS:
        def t(a):
            return torch.tensor(np.array(a, dtype=np.float64), device=device).to(dtype)

        _CONSTS[key] = {
            "mu": t(grid.centres), "tmean": t(grid.tmean), "g_lo": t(grid.g_lo),
            "q_hi": t(grid.q_hi), "inv_norm": t(1.0 / grid.norm), "psi_alpha": t(grid.psi_alpha),
            "psi_mbeta": t(grid.psi_mbeta), "D": t(grid.pair_matrix),
            "window": torch.arange(grid.window, device=device),
        }
    return _CONSTS[key]


def _check_weight_rows(weights) -> None:
    """Raise ValueError unless ``weights`` (N, K) is finite, >= 0, with rows summing to 1."""
    import torch

    w = weights.detach()
    finite = torch.isfinite(w).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        raise ValueError(f"weights has non-finite values in {bad.numel()} row(s) (first "
                         f"{bad[:5].tolist()}); mixture weights must be finite probabilities")
    neg = (w < 0).any(dim=1)
    if bool(neg.any()):
        bad = torch.nonzero(neg).flatten()
        raise ValueError(f"weights must be >= 0; {bad.numel()} row(s) have negative entries "
                         f"(first {bad[:5].tolist()}); pass softmax(logits), not the logits")
    tol = max(1e-6, w.shape[1] * torch.finfo(w.dtype).eps) if w.dtype.is_floating_point else 1e-6
    s = w.sum(dim=1, dtype=torch.float64)
    off = (s - 1.0).abs() > tol
    if bool(off.any()):
        bad = torch.nonzero(off).flatten()
        raise ValueError(
            f"weights rows must sum to 1 (relative tolerance {tol:.1e}); {bad.numel()} row(s) "
            f"do not (first {bad[:5].tolist()}, sums {s[bad[:3]].tolist()}); normalise with "
            "w / w.sum(dim=1, keepdim=True) or use a softmax")


def crps_mixture(weights, y, *, grid: MixtureGrid | None = None, validate: bool = True):
    """Exact CRPS of truncated Gaussian mixtures on the fixed grid, differentiable in torch.

    ``CRPS = sum_k w_k E|X_k - y| - 0.5 w^T D w`` with, for component ``k`` truncated to
    ``[a, b]`` (``u = (y - mu_k)/sigma``, ``Psi(u) = u Phi(u) + phi(u)``),

    ``E|X_k - y| = [sigma (Psi(u) - Psi(alpha_k)) - (y - a) Phi(alpha_k)
    + sigma (Psi(-u) - Psi(-beta_k)) - (b - y) Phi(-beta_k)] / Z_k``,

    and the pair matrix ``D_jk = E|X_j - X_k'|`` precomputed once per grid, device and dtype.
    A component more than 10 sigma from ``y`` lies entirely on one side of it, so its
    ``E|X_k - y|`` is exactly ``|mean_k - y|`` (to ``Phi(-10) ~ 1e-23``); the closed form is
    evaluated only for the ~11 components near ``y`` (gathered per galaxy), which makes the
    loss about 3x cheaper than evaluating all 200.

    Parameters
    ----------
    weights : torch.Tensor, shape (N, K)
        Mixture weights (rows summing to 1, e.g. a softmax), float32 or float64.
    y : torch.Tensor, shape (N,)
        True redshifts, inside the support [0, 1.6].
    grid : MixtureGrid, optional
        Components; default :func:`photozsom.pdf.default_grid`.
    validate : bool
        Check shapes, the redshift range and the weights: finite, >= 0, each row summing to 1
        within ``max(1e-6, K * eps)`` relative (``eps`` of the weights' dtype: 2.4e-5 for
        float32, 1e-6 for float64). The closed form holds only for a probability mixture: rows
        summing to 2 give a negative "CRPS". Costs a device sync; the training loop turns it
        off, its softmax weights being valid by construction.

    Raises
    ------
    ValueError
        With ``validate=True``: wrong shapes, ``y`` outside the support or non-finite, or
        weights that are negative, non-finite or whose rows do not sum to 1.

    Returns
    -------
    torch.Tensor, shape (N,)
        CRPS per galaxy, redshift units, in the dtype of ``weights``; differentiable with
        respect to ``weights`` and ``y``.
    """
    import torch

    g = grid or default_grid()
    if validate:
        if weights.ndim != 2 or weights.shape[1] != g.K:
            raise ValueError(f"weights must have shape (N, {g.K}), got {tuple(weights.shape)}")
        if y.ndim != 1 or y.shape[0] != weights.shape[0]:
            raise ValueError(f"y must have shape ({weights.shape[0]},) (one redshift per row of "
                             f"weights), got {tuple(y.shape)}")
        bad = ~torch.isfinite(y) | (y < g.lo) | (y > g.hi)
        if bool(bad.any()):
            raise ValueError(f"y has {int(bad.sum())} value(s) outside the support "
                             f"[{g.lo:g}, {g.hi:g}] or non-finite; drop those galaxies")
        _check_weight_rows(weights)
    c = _torch_consts(g, weights.device, weights.dtype)
    s = g.sigma
    y = y.to(weights.dtype)
    yc = y[:, None]
    # the components within 10 sigma of y (a window of fixed width, kept inside the grid)
    start = torch.searchsorted(c["mu"], (y.detach() - g.cut).contiguous())
    idx = start.clamp_(max=g.K - g.window)[:, None] + c["window"]
    u = (yc - c["mu"][idx]) / s
    pu = torch.exp(-0.5 * u * u) / _SQRT2PI
    below = s * (u * torch.special.ndtr(u) + pu - c["psi_alpha"][idx]) - (yc - g.lo) * c["g_lo"][idx]
    above = s * (pu - u * torch.special.ndtr(-u) - c["psi_mbeta"][idx]) - (g.hi - yc) * c["q_hi"][idx]
    near = (below + above) * c["inv_norm"][idx] - (c["tmean"][idx] - yc).abs()
    e_abs = (torch.einsum("nk,nk->n", weights, (c["tmean"] - yc).abs())
             + (weights.gather(1, idx) * near).sum(dim=1))
    e_pair = torch.einsum("nk,nk->n", weights @ c["D"], weights)
    return e_abs - 0.5 * e_pair


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX).

    Where it does, ``MDN(precision="bf16")`` trains about 1.6x faster per epoch on the CPU;
    elsewhere bfloat16 is emulated (slower than float32).
    """
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def auto_schedule(n_train: int, batch_size: int | None = None,
                  max_epochs: int | None = None) -> tuple[int, int]:
    """Batch size and schedule length for ``n_train`` training galaxies (the defaults).

    The batch is the power of two nearest ``n_train / AUTO_BATCH_DIVISOR``, kept in
    [``AUTO_BATCH_MIN``, ``AUTO_BATCH_MAX``] = [256, 1024]; the schedule is long enough for
    at least ``AUTO_MIN_STEPS`` optimiser steps and ``AUTO_MIN_EPOCHS`` epochs. A large
    sample (>= ~50,000 galaxies) therefore trains exactly as before (batch 1024, 24
    epochs); a small one takes smaller batches and more epochs, so that the one-cycle
    schedule still makes enough steps to converge. Given values are kept.

    Parameters
    ----------
    n_train : int
        Training galaxies.
    batch_size, max_epochs : int, optional
        User settings (returned unchanged when given).

    Returns
    -------
    batch_size, max_epochs : int

    Examples
    --------
    >>> auto_schedule(5_000), auto_schedule(500_000)
    ((256, 50), (1024, 24))
    """
    n = max(int(n_train), 1)
    if batch_size is None:
        e = round(math.log2(max(n / AUTO_BATCH_DIVISOR, 1.0)))
        batch_size = int(min(max(2**e, AUTO_BATCH_MIN), AUTO_BATCH_MAX))
    if max_epochs is None:
        steps = math.ceil(n / batch_size)
        max_epochs = max(AUTO_MIN_EPOCHS, math.ceil(AUTO_MIN_STEPS / steps))
    return int(batch_size), int(max_epochs)


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _check_X(X, name: str, n_inputs: int) -> np.ndarray:
    return check_matrix(X, name, n_inputs, what="the model was built for n_inputs={n}",
                        nonfinite_hint="the network cannot score them: drop those galaxies "
                                       "(features.catalog_features returns a `valid` mask) or "
                                       "fill the missing features explicitly")


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------
class MDN:
    """Mixture density network: ``X`` (N, D) -> :class:`~photozsom.pdf.MixturePDF` (N, 200).

    Parameters
    ----------
    n_inputs : int
        Input features per galaxy (embedding dimension and/or catalogue features).
    hidden : sequence of int
        Widths of the hidden layers; the default three give the paper's 4 dense layers
        (3 hidden + the output layer of K = 200 logits).
    seed : int
        Seeds the weight initialisation and the mini-batch order: same seed, same model.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ...; default :func:`photozsom.device.default_device`.
    lr : float, optional
        Peak AdamW learning rate; default ``2.5e-3 * batch_size / 256`` (set at fit).
    weight_decay : float
        AdamW (decoupled) weight decay.
    batch_size : int, optional
        Galaxies per training step; default (None) set from the training size at fit
        (:func:`auto_schedule`).
    max_epochs : int, optional
        Passes over the training set: the length of the ``"onecycle"`` and ``"cosine"``
        schedules, and an upper limit for ``"plateau"``; default (None) set from the
        training size at fit (:func:`auto_schedule`).
    patience : int
        Stop after this many epochs without a validation CRPS lower by a relative
        ``min_improvement`` than the last such improvement (the best epoch's weights are
        kept either way); with ``"onecycle"`` or ``"cosine"`` only when the validation CRPS
        is also 2% above its best (overfitting), else the schedule runs to its end. With
        ``"plateau"`` the learning rate is halved after ``max(1, patience // 3)`` epochs
        without a lower validation CRPS.
    schedule : {"onecycle", "cosine", "plateau"}
        Learning-rate schedule (see the module docstring).
    min_improvement : float
        Relative decrease of the validation CRPS that counts as progress for ``patience``
        (0: any decrease).
    dropout : float
        Dropout probability after each hidden layer (0 disables it).
    precision : {"float32", "bf16"}
        ``"float32"`` (default): the same model from the same seed on any CPU. ``"bf16"``:
        bfloat16 autocast of the network, on CUDA for training and inference, on the CPU for
        the training steps only (about 1.6x faster per epoch on a CPU with native bfloat16),
        while validation and :meth:`predict` stay float32 there.
    threads : int or None
        Torch threads while training on the CPU (default
        :data:`photozsom.device.TRAIN_THREADS` = 2): torch splits the gradient sums by
        thread count, so a fixed count trains the same model from the same seed whatever
        the machine's cores. None uses torch's own count (faster on many cores, a
        different model on a machine with another core count). Prediction on the CPU runs
        in numpy and does not depend on it.
    grid : MixtureGrid, optional
        Mixture components; default the paper's grid.

    Attributes
    ----------
    network : torch.nn.Sequential
    standardizer : photozsom.features.Standardizer
        Fitted on the first call of :meth:`fit`; applied in :meth:`predict`.
    history_ : pandas.DataFrame
        ``epoch, train_crps, val_crps, lr, seconds`` of the last :meth:`fit`.
    best_epoch_ : int
        Epoch whose weights were kept.
    batch_size_, max_epochs_, lr_ : int, int, float
        The batch size, schedule length and peak learning rate the last :meth:`fit` used.

    Examples
    --------
    >>> model = MDN(n_inputs=8, seed=0, max_epochs=50)             # doctest: +SKIP
    >>> history = model.fit(X_train, z_train, X_val, z_val)          # doctest: +SKIP
    >>> pdf = model.predict(X_test); pdf.mean(), pdf.interval(0.9)   # doctest: +SKIP
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int] = (256, 256, 256), *, seed: int = 0,
                 device: str | None = None, lr: float | None = None, weight_decay: float = 1e-4,
                 batch_size: int | None = None, max_epochs: int | None = None,
                 patience: int = 4, schedule: str = "onecycle", min_improvement: float = 1e-3,
                 dropout: float = 0.0, precision: str = "float32",
                 threads: int | None = TRAIN_THREADS, grid: MixtureGrid | None = None) -> None:
        if int(n_inputs) < 1:
            raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be >= 1, got {hidden}")
        for name, v in (("batch_size", batch_size), ("max_epochs", max_epochs),
                        ("patience", patience)):
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be >= 1 (or None: set from the training size), "
                                 f"got {v}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}; "
                             "'float32' gives the same model on every CPU")
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1 (or None: torch's own count), got {threads}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {schedule!r}")
        if lr is not None and not float(lr) > 0:
            raise ValueError(f"lr must be > 0 (or None for the batch-size rule), got {lr}")
        if not 0.0 <= float(min_improvement) < 1.0:
            raise ValueError(f"min_improvement must be in [0, 1), got {min_improvement}")
        self.n_inputs = int(n_inputs)
        self.hidden = hidden
        self.seed = int(seed)
        self.device = default_device(device)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.max_epochs = None if max_epochs is None else int(max_epochs)
        self.lr = None if lr is None else float(lr)
        self.weight_decay = float(weight_decay)
        self.schedule, self.min_improvement = schedule, float(min_improvement)
        self.patience, self.dropout = int(patience), float(dropout)
        self.precision = precision
        self.amp = precision == "bf16"
        self.threads = None if threads is None else int(threads)
        # the settings the last fit used (None until fit; see auto_schedule)
        self.batch_size_: int | None = None
        self.max_epochs_: int | None = None
        self.lr_: float | None = None
        self.grid = grid or default_grid()
        # the torch network is built (seeded) on first use: a model loaded to predict on the
        # CPU runs its forward pass in numpy and never imports torch (see predict_weights)
        self._network = None
        self._state: dict[str, np.ndarray] | None = None     # weights read by load()
        self.standardizer: Standardizer | None = None
        self.history_ = pd.DataFrame(columns=["epoch", "train_crps", "val_crps", "lr", "seconds"])
        self.best_epoch_: int | None = None

    @property
    def network(self):
        """The torch network (``torch.nn.Sequential``: ``Linear``/``ReLU`` blocks, then a
        ``Linear`` to the K logits), built on first use from ``seed`` (without touching the
        caller's random state), holding the loaded weights after :meth:`load`."""
        if self._network is None:
            import torch

            cuda = ([torch.device(self.device).index or 0] if self.device.startswith("cuda")
                    else [])
            with torch.random.fork_rng(devices=cuda):   # seeded, caller's RNG untouched
                torch.manual_seed(self.seed)
                net = self._build()
            if self._state is not None:
                net.load_state_dict(arrays_to_state(self._state))
                net.eval()
            self._network = net.to(self.device)
        return self._network

    def _layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight (out, in), bias (out,)) of each ``Linear``, float32 numpy, in order: the
        loaded arrays, or the current weights of the torch network once it exists."""
        if self._network is None and self._state is not None:
            st = self._state
        else:
            st = state_to_arrays(self.network.state_dict())
        n = len("state/")
        idx = sorted({int(k[n:].split(".")[0]) for k in st if k.endswith(".weight")})
        return [(np.asarray(st[f"state/{i}.weight"], dtype=np.float32),
                 np.asarray(st[f"state/{i}.bias"], dtype=np.float32)) for i in idx]

    def _build(self):
        from torch import nn

        layers: list[nn.Module] = []
        width = self.n_inputs
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            width = h
        layers.append(nn.Linear(width, self.grid.K))
        return nn.Sequential(*layers)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (for :meth:`save`)."""
        return {"n_inputs": self.n_inputs, "hidden": list(self.hidden), "seed": self.seed,
                "lr": self.lr, "weight_decay": self.weight_decay, "batch_size": self.batch_size,
                "max_epochs": self.max_epochs, "patience": self.patience,
                "schedule": self.schedule, "min_improvement": self.min_improvement,
                "dropout": self.dropout, "precision": self.precision, "threads": self.threads}

    def __repr__(self) -> str:
        return (f"MDN(n_inputs={self.n_inputs}, hidden={self.hidden}, K={self.grid.K}, "
                f"device={self.device!r}, fitted={self.standardizer is not None})")

    # -- helpers -------------------------------------------------------------------------------
    def _tensor(self, a: np.ndarray, dtype=None):
        import torch

        a = np.asarray(a)
        if not a.flags.writeable:  # torch refuses to share read-only memory (and warns)
            a = a.copy()
        return torch.as_tensor(a, dtype=dtype or torch.float32).to(self.device)

    def _logits(self, xb, *, train: bool = False):
        """Network output; bfloat16 autocast when ``amp`` (on the CPU only while training)."""
        import torch

        cuda = self.device.startswith("cuda")
        if self.amp and (cuda or train):
            with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16):
                out = self.network(xb)
            return out.float()
        return self.network(xb)

    def _init_output_bias(self, z: np.ndarray) -> None:
        """Start the output layer at the training n(z) (linear binning onto the centres)."""
        import torch

        g = self.grid
        k = np.clip(np.searchsorted(g.centres, z, side="right") - 1, 0, g.K - 2)
        f = np.clip((z - g.centres[k]) / (g.centres[k + 1] - g.centres[k]), 0.0, 1.0)
        counts = (np.bincount(k, 1.0 - f, minlength=g.K)
                  + np.bincount(k + 1, f, minlength=g.K))
        logp = np.log((counts + 0.5) / (counts.sum() + 0.5 * g.K))
        last = self.network[-1]
        with torch.no_grad():
            last.bias.copy_(torch.as_tensor(logp - logp.mean(), dtype=last.bias.dtype))
            last.weight.mul_(0.1)

    def _mean_crps(self, Xs, z, batch_size: int = 8192) -> float:
        import torch

        total = 0.0
        self.network.eval()
        with torch.inference_mode():
            for s in range(0, Xs.shape[0], batch_size):
                w = torch.softmax(self._logits(Xs[s:s + batch_size]), dim=1)
                total += float(crps_mixture(w, z[s:s + batch_size], grid=self.grid,
                                            validate=False).sum())
        return total / Xs.shape[0]

    def _scheduler(self, opt, steps_per_epoch: int):
        """(per-step scheduler, per-epoch plateau scheduler) for ``self.schedule``."""
        import torch

        total = self.max_epochs_ * steps_per_epoch
        if self.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=self.lr_, total_steps=total, pct_start=_WARMUP, anneal_strategy="cos",
                cycle_momentum=False, div_factor=10.0, final_div_factor=100.0), None
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=total, eta_min=self.lr_ / 1000.0), None
        return None, torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=0.5, patience=max(1, self.patience // 3))

    # -- training ------------------------------------------------------------------------------
    @trains_with_fixed_threads
    def fit(self, X_train: np.ndarray, z_train: np.ndarray, X_val: np.ndarray | None = None,
            z_val: np.ndarray | None = None, *, progress: bool = True) -> pd.DataFrame:
        """Train on the CRPS with early stopping on the validation CRPS.

        Parameters
        ----------
        X_train : ndarray, shape (N, D)
            Training inputs (finite; D = ``n_inputs``).
        z_train : ndarray, shape (N,)
            Training redshifts in [0, 1.6].
        X_val, z_val : ndarray, optional
            Validation set (the paper's 10%) for early stopping and the learning-rate
            schedule. Without it all ``max_epochs`` run and the last weights are kept.
        progress : bool
            Show a tqdm bar with the running train and validation CRPS (quiet when the
            output is not a terminal).

        Returns
        -------
        pandas.DataFrame
            One row per epoch: ``epoch`` (1-based), ``train_crps`` (mean over the epoch's
            mini-batches), ``val_crps`` (after the epoch; NaN without validation data),
            ``lr`` and ``seconds``. Also stored as ``history_``.
        """
        import torch
        from tqdm.auto import tqdm

        Xt = _check_X(X_train, "X_train", self.n_inputs)
        zt = check_redshifts(z_train, "z_train", len(Xt), self.grid)
        has_val = X_val is not None or z_val is not None
        if has_val:
            if X_val is None or z_val is None:
                raise ValueError("pass both X_val and z_val (or neither)")
            Xv = _check_X(X_val, "X_val", self.n_inputs)
            zv = check_redshifts(z_val, "z_val", len(Xv), self.grid)
        if self.standardizer is None:
            self.standardizer = Standardizer().fit(Xt)
            self._init_output_bias(zt)
        Xs = self._tensor(self.standardizer.transform(Xt))
        ys = self._tensor(zt)
        if has_val:
            Xvs, yvs = self._tensor(self.standardizer.transform(Xv)), self._tensor(zv)

        net = self.network
        n = Xs.shape[0]
        self.batch_size_, self.max_epochs_ = auto_schedule(n, self.batch_size, self.max_epochs)
        self.lr_ = self.lr if self.lr is not None else _BASE_LR * self.batch_size_ / _BASE_BATCH
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr_, weight_decay=self.weight_decay)
        bs = self.batch_size_
        steps = math.ceil(n / bs)
        step_sched, epoch_sched = self._scheduler(opt, steps)
        plateau = epoch_sched is not None
        gen = torch.Generator().manual_seed(self.seed)
        rows: list[dict[str, float]] = []
        best, best_state, best_epoch, stale, ref = math.inf, None, 0, 0, math.inf
        bar = tqdm(range(1, self.max_epochs_ + 1), desc="MDN", unit="epoch",
                   disable=None if progress else True)
        cuda = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed + 1)   # dropout masks; the caller's RNG state is kept
            for epoch in bar:
                t0 = time.perf_counter()
                net.train()
                lr_now = opt.param_groups[0]["lr"]
                order = torch.randperm(n, generator=gen).to(self.device)
                total = torch.zeros((), device=self.device)
                for s in range(0, n, bs):
                    idx = order[s:s + bs]
                    w = torch.softmax(self._logits(Xs[idx], train=True), dim=1)
                    loss_vec = crps_mixture(w, ys[idx], grid=self.grid, validate=False)
                    loss = loss_vec.mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if step_sched is not None:
                        step_sched.step()
                    total += loss_vec.detach().sum()
                train_crps = float(total) / n
                if not math.isfinite(train_crps):
                    raise RuntimeError(f"training diverged at epoch {epoch} (non-finite CRPS); "
                                       "lower lr or check the inputs")
                val_crps = self._mean_crps(Xvs, yvs) if has_val else float("nan")
                rows.append({"epoch": epoch, "train_crps": train_crps, "val_crps": val_crps,
                             "lr": lr_now, "seconds": time.perf_counter() - t0})
                bar.set_postfix(train=f"{train_crps:.5f}", val=f"{val_crps:.5f}")
                if not has_val:
                    best_epoch = epoch
                    continue
                if epoch_sched is not None:
                    epoch_sched.step(val_crps)
                if val_crps < best:
                    best, best_epoch = val_crps, epoch
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                # patience counts epochs without a relative gain of min_improvement; a fixed
                # schedule stops early only when the validation CRPS has also risen clearly
                # above its best (overfitting) after the rate has decayed to half its peak:
                # before that, rises are the noise of large steps, which the decay removes
                if val_crps < ref * (1.0 - self.min_improvement):
                    ref, stale = val_crps, 0
                else:
                    stale += 1
                    rising = (val_crps > best * (1.0 + _OVERFIT)
                              and opt.param_groups[0]["lr"] <= _DECAYED * self.lr_)
                    if stale >= self.patience and (plateau or rising):
                        break
        bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.best_epoch_ = best_epoch
        self.history_ = pd.DataFrame(rows, columns=["epoch", "train_crps", "val_crps", "lr",
                                                    "seconds"])
        return self.history_

    # -- inference -----------------------------------------------------------------------------
    def _check_state(self) -> None:
        """The loaded weights have the shapes the configuration implies (else ValueError)."""
        widths = [self.n_inputs, *self.hidden, self.grid.K]
        try:
            layers = self._layers()
        except KeyError as err:
            raise ValueError(f"the MDN's weights lack {err}") from None
        shapes = [(W.shape, b.shape) for W, b in layers]
        want = [((o, i), (o,)) for i, o in itertools.pairwise(widths)]
        if shapes != want:
            raise ValueError(f"the MDN's weights have shapes {shapes}, its configuration "
                             f"(n_inputs {self.n_inputs}, hidden {list(self.hidden)}, "
                             f"K {self.grid.K}) needs {want}")

    def predict_weights(self, X: np.ndarray, batch_size: int = 16384) -> np.ndarray:
        """Mixture weights, shape (N, K), float32 (rows sum to 1).

        On the CPU the forward pass runs in numpy (float32 ``Linear``/``ReLU`` layers and a
        softmax, the network's own operations): the same weights as torch's to ~1e-5
        (relative; the two libraries sum the products in different orders), and a model
        loaded from disk predicts without importing torch. On CUDA it runs in torch.
        """
        if self.standardizer is None:
            raise RuntimeError("the MDN is not trained: call fit(...) or MDN.load(path) first")
        X = _check_X(X, "X", self.n_inputs)
        out = np.empty((X.shape[0], self.grid.K), dtype=np.float32)
        if not self.device.startswith("cuda"):
            layers = self._layers()
            for s in range(0, X.shape[0], int(batch_size)):
                h = self.standardizer.transform(X[s:s + batch_size]).astype(np.float32)
                for i, (W, b) in enumerate(layers):
                    h = h @ W.T
                    h += b
                    if i < len(layers) - 1:
                        np.maximum(h, 0.0, out=h)
                h -= h.max(axis=1, keepdims=True)
                np.exp(h, out=h)
                h /= h.sum(axis=1, keepdims=True)
                out[s:s + batch_size] = h
            return out
        import torch

        self.network.eval()
        with torch.inference_mode():
            for s in range(0, X.shape[0], int(batch_size)):
                xb = self._tensor(self.standardizer.transform(X[s:s + batch_size]))
                w = torch.softmax(self._logits(xb).float(), dim=1)
                out[s:s + batch_size] = w.cpu().numpy()
        return out

    def predict(self, X: np.ndarray, batch_size: int = 16384) -> MixturePDF:
        """P(z|X) for every row of ``X``.

        Parameters
        ----------
        X : ndarray, shape (N, D)
            Inputs in the training feature order (finite).
        batch_size : int
            Galaxies per forward pass.

        Returns
        -------
        MixturePDF
            N PDFs on the model's grid (weights stored as float32).
        """
        g = self.grid
        return MixturePDF(self.predict_weights(X, batch_size), centres=g.centres, sigma=g.sigma,
                          bounds=(g.lo, g.hi))

    # -- files -----------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model as a ``photozsom.mdn`` artifact directory (atomically).

        ``meta.json`` holds the constructor arguments, the grid's width and bounds, the
        feature names, the best epoch and the format version; ``arrays.npz`` holds the network
        weights (``state/<parameter>``), the standardisation (``standardizer/mean``,
        ``standardizer/std``), the grid centres and the training history
        (``history/<column>``). Nothing is pickled (:mod:`photozsom.artifacts`).

        Parameters
        ----------
        directory : path
            The artifact directory; an existing one is replaced only once the new one is
            complete.

        Returns
        -------
        pathlib.Path
        """

        if self.standardizer is None:
            raise RuntimeError("nothing to save: the MDN is not trained")
        g = self.grid
        arrays = state_to_arrays(self.network.state_dict())
        arrays["standardizer/mean"] = np.asarray(self.standardizer.mean, dtype=np.float64)
        arrays["standardizer/std"] = np.asarray(self.standardizer.std, dtype=np.float64)
        arrays["grid/centres"] = np.asarray(g.centres)
        for col in self.history_.columns:
            arrays[f"history/{col}"] = self.history_[col].to_numpy(dtype=np.float64)
        meta = {"config": self.config(), "grid": {"sigma": g.sigma, "bounds": [g.lo, g.hi]},
                "feature_names": list(self.standardizer.names), "best_epoch": self.best_epoch_,
                "fitted": {"batch_size": self.batch_size_, "max_epochs": self.max_epochs_,
                           "lr": self.lr_},
                "history_columns": list(self.history_.columns)}
        return save_artifact(directory, _KIND, arrays, meta, version=1)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> MDN:
        """Read a model written by :meth:`save`, onto ``device`` (default: CUDA if present).

        Raises
        ------
        photozsom.artifacts.ArtifactError
            (a ValueError) when ``directory`` is not a ``photozsom.mdn`` artifact of a
            supported version.
        """

        arrays, meta = load_artifact(directory, _KIND, versions=(1,))
        gd = meta["grid"]
        grid = get_grid(arrays["grid/centres"], gd["sigma"], tuple(gd["bounds"]))
        cfg = dict(meta["config"])
        cfg["hidden"] = tuple(cfg["hidden"])
        model = cls(**cfg, device=device, grid=grid)
        model._state = {k: v for k, v in arrays.items() if k.startswith("state/")}
        if not model.device.startswith("cuda"):
            model._check_state()        # a damaged file fails here, not at the first predict
        else:
            model.network.eval()
        model.standardizer = Standardizer(arrays["standardizer/mean"], arrays["standardizer/std"],
                                          list(meta.get("feature_names", [])))
        cols = meta.get("history_columns", [])
        hist = pd.DataFrame({c: arrays[f"history/{c}"] for c in cols}, columns=cols)
        if "epoch" in hist:
            hist["epoch"] = hist["epoch"].astype(np.int64)
        model.history_ = hist
        model.best_epoch_ = meta.get("best_epoch")
        fitted = meta.get("fitted", {})
        model.batch_size_ = fitted.get("batch_size", model.batch_size)
        model.max_epochs_ = fitted.get("max_epochs", model.max_epochs)
        model.lr_ = fitted.get("lr", model.lr)
        return model


# --------------------------------------------------------------------------------------------
# the 80/10/10 split
# --------------------------------------------------------------------------------------------
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014), elementwise on uint64 (wrapping)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


#: Salts that give the out-of-fold assignment its own hash streams, independent of the split's.
_FOLD_SALT = 0x6B8B4567F01D5EED
_FOLD_VAL_SALT = 0x327B23C6A11CE5ED


def _hash_uniform(ids: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """A number in [0, 1) per ID, fixed by (ID, seed, salt) alone (salt 0: the split's)."""
    if ids.dtype.kind in "iu":
        h = ids.astype(np.int64, copy=False).view(np.uint64) if ids.dtype.kind == "i" \
            else ids.astype(np.uint64)
    elif ids.dtype.kind in "USO" or isinstance(ids.dtype, pd.StringDtype):
        h = pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False)
    else:
        raise ValueError(f"object IDs must be integers or strings, got dtype {ids.dtype}")
    s = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    if salt:
        s = _splitmix64(s ^ np.uint64(salt))
    x = _splitmix64(h ^ s[0])
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def train_val_test_split(n_or_ids: int | np.ndarray, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint train / validation / test row indices (the paper's 80/10/10).

    Parameters
    ----------
    n_or_ids : int or array_like, shape (N,)
        Either the number of rows — a seeded random permutation is cut into parts of exactly
        ``round(fraction * n)`` rows — or one object ID per row (integers or strings, e.g.
        ``OBJID``): each ID goes to a part by a seeded hash of the ID alone, so a galaxy keeps
        its part when rows are added, removed or reordered (part sizes then follow the
        fractions up to binomial noise; repeated IDs share a part).
    fractions : (float, float, float)
        Train, validation and test fractions (>= 0, summing to 1).
    seed : int
        Same seed, same split.

    Returns
    -------
    idx_train, idx_val, idx_test : ndarray of int64
        Sorted row indices; together they cover ``range(N)`` exactly once.

    Examples
    --------
    >>> tr, va, te = train_val_test_split(10, seed=0)
    >>> len(tr), len(va), len(te)
    (8, 1, 1)
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0, atol=1e-9):
        raise ValueError(f"fractions must be three numbers >= 0 summing to 1, got {fractions}")
    seed = int(seed)
    if np.ndim(n_or_ids) == 0:
        n = int(n_or_ids)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        n_val, n_test = round(fr[1] * n), round(fr[2] * n)
        n_train = n - n_val - n_test
        if n_train < 0:
            raise ValueError(f"fractions {tuple(fr)} leave no room for {n} rows")
        perm = np.random.default_rng(seed).permutation(n)
        parts = (perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:])
        return tuple(np.sort(p).astype(np.int64) for p in parts)  # type: ignore[return-value]
    ids = np.asarray(n_or_ids) if not isinstance(n_or_ids, pd.Series) else n_or_ids.to_numpy()
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"IDs must be a non-empty 1-D array, got shape {ids.shape}")
    u = _hash_uniform(ids, seed)
    edges = np.cumsum(fr)
    part = np.searchsorted(edges[:2], u, side="right")
    out = tuple(np.flatnonzero(part == i).astype(np.int64) for i in range(3))
    for name, f, p in zip(("train", "validation", "test"), fr, out):
        if f > 0 and p.size == 0:
            raise ValueError(f"the hash split of {ids.size} IDs left the {name} part empty; use "
                             "more rows or pass the row count n for an exact split")
    return out  # type: ignore[return-value]


def assign_folds(ids: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cut rows into ``n_folds`` folds of equal size (to one row), by a seeded hash of the IDs.

    The rows are ranked by a hash of (ID, ``seed``) drawn from a stream of its own, so the
    folds are independent of :func:`train_val_test_split` with any seed (the same seed
    included), and the ranking is cut into ``n_folds`` consecutive blocks. A row's fold
    depends only on the set of IDs, not on their order; adding rows may move others to a
    neighbouring fold to keep the sizes equal.

    Parameters
    ----------
    ids : array_like, shape (N,)
        Object IDs (integers or strings); repeated IDs may land in different folds.
    n_folds : int
        Number of folds, 2 <= n_folds <= N.
    seed : int
        Same seed and IDs, same folds.

    Returns
    -------
    ndarray of int64, shape (N,)
        Fold of each row, 0 .. n_folds - 1; every fold has ``N // n_folds`` or one more rows.
    """
    ids = np.asarray(ids) if not isinstance(ids, pd.Series) else ids.to_numpy()
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"ids must be a non-empty 1-D array, got shape {ids.shape}")
    n_folds = int(n_folds)
    if not 2 <= n_folds <= ids.size:
        raise ValueError(f"n_folds must be >= 2 and at most the number of rows ({ids.size}), "
                         f"got {n_folds}")
    u = _hash_uniform(ids, int(seed), salt=_FOLD_SALT)
    # equal hashes (repeated IDs) keep their row order
    rank = np.empty(ids.size, dtype=np.int64)
    rank[np.argsort(u, kind="stable")] = np.arange(ids.size)
    return rank * n_folds // ids.size


def assign_group_folds(groups: np.ndarray, n_folds: int = 5) -> np.ndarray:
    """Folds that keep each group whole (e.g. a DESI rosette, a survey field, a sky patch).

    Galaxies of one field share its large-scale structure (redshift spikes), so a model
    validated on other galaxies of the fields it trained on looks better calibrated than it
    is on a new field. scikit-learn's :class:`~sklearn.model_selection.GroupKFold` puts whole
    groups in one fold, the largest first, each in the fold with the fewest rows so far
    (deterministic: it depends on the groups, not on the row order).

    Parameters
    ----------
    groups : array_like, shape (N,)
        Group label of each row (integers or strings).
    n_folds : int
        Number of folds, 2 <= n_folds <= the number of distinct groups.

    Returns
    -------
    ndarray of int64, shape (N,)
        Fold of each row, 0 .. n_folds - 1, every fold non-empty.
    """
    from sklearn.model_selection import GroupKFold  # here: keeps predict's start-up light

    groups = np.asarray(groups) if not isinstance(groups, pd.Series) else groups.to_numpy()
    if groups.ndim != 1 or groups.size == 0:
        raise ValueError(f"groups must be a non-empty 1-D array, got shape {groups.shape}")
    fold = np.empty(groups.size, dtype=np.int64)
    split = GroupKFold(n_splits=int(n_folds)).split(np.empty((groups.size, 0)), groups=groups)
    for k, (_, held) in enumerate(split):
        fold[held] = k
    return fold


def cross_val_predict(X: np.ndarray, z: np.ndarray, ids: np.ndarray, *, n_folds: int = 5,
                      val_fraction: float = 0.1, seed: int = 0, progress: bool = True,
                      groups: np.ndarray | None = None, **mdn_kwargs: Any) -> tuple[MixturePDF, np.ndarray]:
    """Out-of-fold P(z|X) for every galaxy: each row predicted by an MDN that never saw it.

    The rows are cut into ``n_folds`` folds of equal size by :func:`assign_folds` (a seeded
    hash of the IDs, independent of :func:`train_val_test_split`, not changed by reordering
    the rows). For each fold an MDN is trained on the other folds, with about
    ``val_fraction`` of them (chosen by a third independent hash of the IDs) held out for
    early stopping, and predicts the fold. The per-cell analysis then has a held-out
    prediction for *every* labelled galaxy instead of only the 10% test split, which matters
    when the sample is small (the book's simulated default has tens of thousands of galaxies,
    the paper twelve million).

    Parameters
    ----------
    X : ndarray, shape (N, D)
    z : ndarray, shape (N,)
        Spectroscopic redshifts in [0, 1.6].
    ids : ndarray, shape (N,)
        Object IDs (integers or strings).
    n_folds : int
        Number of folds (>= 2).
    val_fraction : float
        Fraction of each training part held out for early stopping.
    seed : int
        Seeds the folds and the networks.
    groups : array_like, shape (N,), optional
        Field of each row (e.g. ``ROSETTE``): whole fields go to one fold
        (:func:`assign_group_folds`), so each row is predicted by a model that saw no galaxy
        of its field, as a new field will be. Default: folds by object ID.
    **mdn_kwargs
        Passed to :class:`MDN` (``hidden``, ``max_epochs``, ...).

    Returns
    -------
    pdf : MixturePDF, N rows, in input order
    fold : ndarray of int, shape (N,)
        The fold of each row (its predicting model was trained without that fold).
    """
    from tqdm.auto import tqdm

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    X = np.asarray(X, dtype=np.float32)
    z = np.asarray(z, dtype=np.float64)
    ids = np.asarray(ids)
    if not (len(X) == len(z) == len(ids)):
        raise ValueError(f"X ({len(X)}), z ({len(z)}) and ids ({len(ids)}) differ in length")
    if groups is None:
        fold = assign_folds(ids, n_folds, seed)
    else:
        if len(groups) != len(ids):
            raise ValueError(f"groups ({len(groups)}) and ids ({len(ids)}) differ in length")
        fold = assign_group_folds(groups, n_folds)
    is_val = _hash_uniform(ids, int(seed), salt=_FOLD_VAL_SALT) < val_fraction
    weights = None
    for k in tqdm(range(n_folds), desc="folds", unit="fold", disable=None if progress else True):
        held = fold == k
        if not held.any():
            continue
        tr, va = ~held & ~is_val, ~held & is_val
        model = MDN(n_inputs=X.shape[1], seed=seed + k, **mdn_kwargs)
        model.fit(X[tr], z[tr], X[va] if va.any() else None, z[va] if va.any() else None,
                  progress=False)
        w = model.predict_weights(X[held])
        if weights is None:
            weights = np.zeros((len(X), w.shape[1]), dtype=w.dtype)
        weights[held] = w
    return MixturePDF(weights), fold
