"""The built-in image encoder: a compact CNN pretrained self-supervised on unlabelled cutouts.

AION-1 is a foundation model pretrained without labels on millions of survey objects; its
weights are gated and large. :class:`Encoder` is photozsom's stand-in that a laptop or a CI
machine trains in minutes on the (unlabelled) random-sample cutouts, the same way: it never
sees a redshift, yet its embedding carries redshift information, because what it learns to
keep is what distinguishes one galaxy from another (colour, brightness, size, profile).

Network
-------
Input: a ``size`` x ``size`` centre crop (default 48 px = 12.6 arcsec) of the four bands,
each stretched as ``asinh(flux / s_b)`` with ``s_b`` the median per-pixel sky noise of band
``b`` in the training data (noise stays linear, galaxy cores are compressed); a band the
mask marks absent is set to 0. Two branches feed one linear layer whose output is the
``dim``-vector embedding:

- a convolutional branch: a 4x4 stride-4 "patchify" stem (the band mask enters as a
  learned offset of its output, equivalent to four constant mask planes), then blocks of a
  stride-2 and a plain 3x3 convolution with batch norm and ReLU (``widths``), global
  average pooling;
- a photometric branch: the mean stretched surface brightness of every band in the
  centred annuli :data:`ANNULI` (a light profile, rotation invariant by construction),
  batch-normalised. A small CNN with global pooling trained for minutes cannot measure the
  central galaxy's colours to a few hundredths of a magnitude; this branch gives the
  embedding that precision, the CNN adds morphology, neighbours and blends.

``Encoder(image_only=True)`` leaves the photometric branch (and its reconstruction loss,
below) out: the embedding is then learned from the pixels alone, the ablation that tells how
much of the embedding's redshift information the hand-built profile supplies
(:func:`photozsom.workflow.ablation.encoder_ablation`).

Objective
---------
Self-supervised, with no redshift anywhere:

1. Contrastive (SimCLR, Chen et al. 2020): each cutout is augmented twice; NT-Xent
   (temperature ``temperature``) on a projection head of the embedding pulls the two
   views of a galaxy together and pushes the other galaxies of the batch away. A second
   NT-Xent on a projection of the convolutional branch alone makes that branch learn the
   invariances too instead of leaning on the (already invariant) profile.
2. Masked-band profile reconstruction (weight ``photometry_weight``): a small head must
   predict, from the embedding of an augmented view, the light profile of the
   *un-augmented* cutout in every band the object has, including bands dropped from the
   view. This keeps photometric information that contrastive learning alone discards
   (it only keeps what separates galaxies within a batch) and teaches the encoder to infer
   the i-band of northern-like views.

Augmentations (all on the raw fluxes, nanomaggies/pixel, before the stretch) are chosen
to be nuisances an astronomer would accept as "the same galaxy":

- the 8 flips and 90-degree rotations (dihedral group D4): galaxies have no preferred
  orientation on the sky;
- small shifts, up to ``max_shift`` pixels: centroiding errors;
- PSF jitter: a Gaussian blur of width drawn in [0, ``psf_jitter``] pixels per band;
  the seeing varies between exposures and bands;
- noise re-draws: extra Gaussian sky noise of standard deviation ``u * sigma`` with
  ``u ~ U(0, noise_scale)``, ``sigma`` the per-pixel sky noise from the store (or a robust
  estimate from the cutout border): a different realisation of the same sky at up to
  sqrt(2) times the noise;
- random band dropout: a band is removed (zeroed, mask False) with probability
  ``band_dropout`` per band (i-band 0.5 by default), so DR10-north objects (g, r, z) and
  DR10-south objects (g, r, i, z) share one encoder and one embedding space.

No flux scaling or colour jitter is applied: brightness and colour carry redshift.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.stats import mad_std

from photozsom.artifacts import arrays_to_state, load_artifact, save_artifact, state_to_arrays
from photozsom.device import TRAIN_THREADS, default_device, trains_with_fixed_threads
from photozsom.embed.base import usable_bands, validate_cutouts
from photozsom.embed.store import PIXSCALE, CutoutStore, check_pixscale

__all__ = ["CutoutSource", "Encoder", "estimate_sky_sigma", "stretch"]

#: Default per-pixel sky noise (nanomaggies/pixel) used as the asinh softening when the data
#: give none: typical DR10 values for g, r, i, z.
DEFAULT_SOFTENING: tuple[float, float, float, float] = (0.006, 0.01, 0.015, 0.025)


def estimate_sky_sigma(images: np.ndarray, border: int = 4) -> np.ndarray:
    """Robust per-pixel sky noise of each cutout and band from its border.

    Parameters
    ----------
    images : ndarray, shape (N, 4, H, W)
        Nanomaggies per pixel.
    border : int
        Width of the border ring used, pixels.

    Returns
    -------
    ndarray, shape (N, 4), float32
        ``astropy.stats.mad_std`` (1.4826 MAD) of the border pixels, nanomaggies/pixel (NaN for an all-NaN band).
    """
    images = np.asarray(images, dtype=np.float32)
    b = max(1, min(border, images.shape[-1] // 4, images.shape[-2] // 4))
    ring = np.concatenate(
        [
            images[..., :b, :].reshape(*images.shape[:2], -1),
            images[..., -b:, :].reshape(*images.shape[:2], -1),
            images[..., b:-b, :b].reshape(*images.shape[:2], -1),
            images[..., b:-b, -b:].reshape(*images.shape[:2], -1),
        ],
        axis=-1,
    )
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # the NaN-aware path is slow: take it only when a band holds NaN
        sig = mad_std(ring, axis=-1, ignore_nan=not np.isfinite(ring).all())
    return np.asarray(sig, dtype=np.float32)


def stretch(flux, mask, softening):
    """Network input from fluxes: ``asinh(flux / s_b)`` for present bands, 0 for absent ones.

    Parameters
    ----------
    flux : torch.Tensor, shape (B, 4, H, W)
        Nanomaggies per pixel; absent bands may hold anything, NaN included.
    mask : torch.Tensor, shape (B, 4), bool
        True where the band has imaging.
    softening : torch.Tensor, shape (4,)
        Softening per band, nanomaggies/pixel.

    Returns
    -------
    torch.Tensor, shape (B, 4, H, W)
    """
    import torch

    x = torch.where(
        mask[:, :, None, None], flux, torch.zeros((), dtype=flux.dtype, device=flux.device)
    )
    return torch.asinh(x / softening[None, :, None, None])


#: Edges of the annuli of the photometric branch, pixels from the cutout centre.
ANNULI: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)


def _build_network(
    dim: int,
    widths: tuple[int, ...],
    stem: int = 4,
    in_ch: int = 4,
    annuli: tuple[float, ...] = ANNULI,
    image_only: bool = False,
):
    import torch
    from torch import nn

    n_ann = len(annuli) - 1

    class _Net(nn.Module):
        """Two branches, one linear embedding; ``project`` and ``photometry`` are training heads."""

        def __init__(self):
            super().__init__()
            # Convolutional branch. Block 1 is a "patchify" stem: a stem x stem convolution
            # with stride stem, a learned downsampling stem**2 times cheaper than a
            # full-resolution convolution. The band mask enters as a learned per-channel
            # offset of the stem output, which is exactly what four constant 0/1 mask planes
            # would contribute to this unpadded convolution. Blocks 2.. halve the resolution
            # with a strided 3x3 convolution and add a 3x3 one; global average pooling.
            self.stem = nn.Conv2d(in_ch, widths[0], stem, stride=stem, bias=False)
            self.mask_offset = nn.Linear(in_ch, widths[0])
            layers = [nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
            c = widths[0]
            for w in widths[1:]:
                layers += [
                    nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(w, w, 3, padding=1, bias=False),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                ]
                c = w
            self.features = nn.Sequential(*layers)
            self.image_only = image_only
            if not image_only:
                # Photometric branch: the mean stretched surface brightness of every band in
                # centred annuli (a light profile; rotation invariant by construction), fixed
                # geometry, normalised by a batch norm. Convolutions with global pooling
                # cannot tell the central galaxy from the rest of the stamp precisely; this
                # branch can.
                self.profile_norm = nn.BatchNorm1d(in_ch * n_ann)
            # The embedding: one linear map of [pooled conv features, profile, band mask]
            # ([pooled conv features, band mask] for an image-only network).
            n_profile = 0 if image_only else in_ch * n_ann
            self.embed = nn.Linear(c + n_profile + in_ch, dim)
            # SimCLR projection head (used only by the contrastive loss).
            self.project = nn.Sequential(
                nn.Linear(dim, 2 * dim, bias=False),
                nn.BatchNorm1d(2 * dim),
                nn.ReLU(inplace=True),
                nn.Linear(2 * dim, dim),
            )
            # Projection head of the convolutional branch alone: a second contrastive loss makes
            # this branch learn the invariances itself rather than lean on the profile.
            self.project_conv = nn.Sequential(
                nn.Linear(c, 2 * dim, bias=False),
                nn.BatchNorm1d(2 * dim),
                nn.ReLU(inplace=True),
                nn.Linear(2 * dim, dim),
            )
            if not image_only:
                # Masked-band photometry head (used only by the auxiliary loss).
                self.photometry = nn.Sequential(
                    nn.Linear(dim, 2 * dim), nn.ReLU(inplace=True),
                    nn.Linear(2 * dim, in_ch * n_ann),
                )
            self._ann_cache = None

        def annulus_weights(self, side: int, device):
            if self._ann_cache is None or self._ann_cache[0] != (side, str(device)):
                yy, xx = np.mgrid[:side, :side] - (side - 1) / 2.0
                rad = np.hypot(xx, yy)
                w = np.stack(
                    [
                        ((rad >= lo) & (rad < hi)).astype(np.float32)
                        for lo, hi in itertools.pairwise(annuli)
                    ]
                )
                w /= np.maximum(w.sum(axis=(1, 2), keepdims=True), 1.0)
                self._ann_cache = ((side, str(device)), torch.as_tensor(w, device=device))
            return self._ann_cache[1]

        def conv_features(self, x, mask):
            """Pooled output of the convolutional branch, shape (B, widths[-1])."""
            m = mask.to(x.dtype)
            return self.features(self.stem(x) + self.mask_offset(m)[:, :, None, None]).mean(
                dim=(2, 3)
            )

        def raw_profile(self, x):
            """Band-wise annulus means of the stretched image, (B, 4 * n_annuli)."""
            w = self.annulus_weights(x.shape[-1], x.device)
            return torch.einsum("bchw,ahw->bca", x, w).flatten(1)

        def profile(self, x):
            """:meth:`raw_profile`, normalised: the photometric branch's features."""
            return self.profile_norm(self.raw_profile(x))

        def embed_input(self, x, mask):
            """What the ``embed`` layer reads: ``[conv, profile, mask]`` (image-only:
            ``[conv, mask]``), shape (B, ``embed.in_features``), and the conv features."""
            conv = self.conv_features(x, mask)
            parts = [conv] if self.image_only else [conv, self.profile(x)]
            return torch.cat([*parts, mask.to(x.dtype)], dim=1), conv

        def forward(self, x, mask, return_conv: bool = False):
            inp, conv = self.embed_input(x, mask)
            emb = self.embed(inp)
            return (emb, conv) if return_conv else emb

    return _Net()


def _nt_xent(z1, z2, temperature: float):
    """SimCLR NT-Xent loss of two views ``z1, z2`` [B, P]."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    b = len(z1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, target)


class CutoutSource:
    """The training data of :meth:`Encoder.fit`: rows of a cutout store or of arrays.

    One interface over both inputs: :attr:`rows` (the rows to train on, sorted),
    :attr:`side` (cutout side, pixels), :attr:`pixscale` (arcsec/pixel; ``None`` for
    arrays, which carry none) and :meth:`read`.

    Parameters
    ----------
    data : CutoutStore, str, Path or ndarray
        A cutout store (object or path; a path is opened here and closed by
        :meth:`close`), or cutouts ``[N, 4, H, W]`` in nanomaggies/pixel.
    objid : array_like of int, optional
        Only these objects of a store.
    rows : array_like of int, optional
        Only these rows.
    band_mask : ndarray, shape (N, 4), optional
        For arrays: True where the band has imaging (default: bands with every pixel finite).
    sigma : ndarray, shape (N, 4), optional
        For arrays: per-pixel sky noise, nanomaggies (default NaN: estimated later).
    """

    def __init__(self, data, *, objid=None, rows=None, band_mask=None, sigma=None):

        self._close = False
        if isinstance(data, (str, os.PathLike)):
            data = CutoutStore(data)
            self._close = True
        if isinstance(data, CutoutStore):
            self._store = data
            n_all = len(data)
            if objid is not None:
                rows = data.rows_of(np.asarray(objid))
            self.side = data.size
            self.pixscale: float | None = data.pixscale
        else:
            self._store = None
            arr = np.asarray(data)
            if arr.ndim != 4 or arr.shape[1] != 4:
                raise ValueError(
                    f"data must be a CutoutStore or cutouts [N, 4, H, W], got shape {arr.shape}"
                )
            if objid is not None:
                raise ValueError("objid selects rows of a CutoutStore; for arrays pass rows=")
            n_all = len(arr)
            if band_mask is None:
                band_mask = np.isfinite(arr).all(axis=(2, 3))
            band_mask = np.asarray(band_mask, bool)
            if band_mask.shape != (n_all, 4):
                raise ValueError(f"band_mask must have shape ({n_all}, 4), got {band_mask.shape}")
            sigma = np.full((n_all, 4), np.nan, np.float32) if sigma is None else sigma
            sigma = np.asarray(sigma, np.float32)
            if sigma.shape != (n_all, 4):
                raise ValueError(f"sigma must have shape ({n_all}, 4), got {sigma.shape}")
            self._arrays = (arr, band_mask, sigma)
            self.side = arr.shape[-1]
            self.pixscale = None
        self.rows = (
            np.arange(n_all) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        )
        if len(self.rows) == 0:
            self.close()
            raise ValueError("no cutouts to train on")
        if self.rows[0] < 0 or self.rows[-1] >= n_all:
            self.close()
            raise IndexError(f"rows must lie in [0, {n_all})")

    def read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(images [n, 4, H, W], band_mask [n, 4], sigma [n, 4])`` of rows ``idx``."""
        if self._store is not None:
            imgs, mask, _ = self._store.read(idx)
            return imgs, mask, self._store.sigma(idx)
        arr, mask, sigma = self._arrays
        return arr[idx], mask[idx], sigma[idx]

    def close(self) -> None:
        """Close the store if this source opened it."""
        if self._close:
            self._store.close()
            self._close = False

    def __enter__(self) -> CutoutSource:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Artifact kinds (photozsom.artifacts) of a saved encoder and of a training checkpoint.
ENCODER_KIND, CHECKPOINT_KIND = "encoder", "encoder_checkpoint"


def _optimizer_to_artifact(state: dict) -> tuple[dict[str, np.ndarray], dict]:
    """A torch optimizer ``state_dict`` as arrays (per-parameter tensors) + JSON (the rest)."""
    arrays, keys = {}, {}
    for pid, per in state["state"].items():
        keys[str(pid)] = sorted(per)
        for k, v in per.items():
            t = v.detach().cpu() if hasattr(v, "detach") else v
            arrays[f"opt/{pid}/{k}"] = np.asarray(t.numpy() if hasattr(t, "numpy") else t)
    return arrays, {"param_groups": state["param_groups"], "state_keys": keys}


def _optimizer_from_artifact(arrays: dict, meta: dict) -> dict:
    import torch

    state = {
        int(pid): {k: torch.from_numpy(np.array(arrays[f"opt/{pid}/{k}"])) for k in ks}
        for pid, ks in meta["state_keys"].items()
    }
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_checkpoint(path, enc, opt, sched, scaler, *, epoch: int, epochs: int,
                     steps_per_epoch: int) -> None:
    """Write a training checkpoint directory atomically (arrays + JSON, no pickle)."""

    arrays = state_to_arrays(enc.net.state_dict())
    opt_arrays, opt_meta = _optimizer_to_artifact(opt.state_dict())
    arrays.update(opt_arrays)
    meta = {
        "config": enc._config(),
        "softening": enc.softening,
        "pixscale": enc.pixscale,
        "history": enc.history,
        "epoch": epoch,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "optimizer": opt_meta,
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
    }
    save_artifact(path, CHECKPOINT_KIND, arrays, meta)


def _find_checkpoint(path) -> Path | None:
    """The checkpoint to resume from: ``path``, or, when a kill struck while an existing
    checkpoint was being swapped for a new one (moved aside as ``.<name>.*.old``), the
    newest complete copy moved aside; ``None`` when there is none."""
    path = Path(path)
    if path.exists():
        return path
    aside = [p for p in path.parent.glob(f".{path.name}.*.old") if (p / "meta.json").is_file()]
    return max(aside, key=lambda p: p.stat().st_mtime) if aside else None


def _restore_checkpoint(path, enc, opt, sched, scaler, *, epochs: int,
                        steps_per_epoch: int) -> int:
    """Load a checkpoint written by :func:`_save_checkpoint` into ``enc`` and the optimiser;
    returns the number of epochs it completed."""

    path = Path(path)
    if path.is_file():
        raise ValueError(
            f"checkpoint {path} is a file written by an older photozsom (a torch pickle, which "
            "is not loaded); delete it or pass another checkpoint path"
        )
    arrays, meta = load_artifact(path, CHECKPOINT_KIND)
    if {"image_only": False, **meta["config"]} != enc._config():
        raise ValueError(
            f"checkpoint {path} was written by an Encoder with config {meta['config']}, not "
            f"{enc._config()}; delete it or use another checkpoint path"
        )
    enc.net.load_state_dict(arrays_to_state(arrays))
    opt.load_state_dict(_optimizer_from_artifact(arrays, meta["optimizer"]))
    if meta["epochs"] == epochs and meta["steps_per_epoch"] == steps_per_epoch:
        sched.load_state_dict(meta["scheduler"])
    else:
        warnings.warn(
            f"checkpoint {path} was planned for {meta['epochs']} epochs of "
            f"{meta['steps_per_epoch']} steps; continuing to {epochs} epochs of "
            f"{steps_per_epoch} with a fresh learning-rate schedule",
            stacklevel=3,
        )
    if meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    enc.softening = np.asarray(meta["softening"], np.float32)
    enc.pixscale = meta["pixscale"]
    enc.history = meta["history"]
    enc.fitted = True
    return int(meta["epoch"])


class Encoder:
    """Self-supervised convolutional image encoder (the offline default embedder).

    Design, objective and augmentations: see the module docstring; training time is
    measured by ``benchmarks/embed.py``.

    Parameters
    ----------
    dim : int
        Embedding length ``D``.
    size : int, optional
        Side of the centre crop the network sees, pixels. ``None``: ``min(H, 48)`` of the
        first data seen (at 0.262 arcsec/pixel, 48 px = 12.6 arcsec).
    seed : int
        Seeds the weight initialisation, the data order and the augmentations: the same
        seed and data give the same weights and embeddings.
    device : str, optional
        Torch device; ``None`` picks CUDA when present (:func:`photozsom.device.default_device`).
    widths : tuple of int
        Channels of the convolutional blocks (the first is the patchify stem).
    stem : int
        Patch size and stride of the stem convolution, pixels.
    temperature : float
        NT-Xent temperature.
    lr, weight_decay : float
        AdamW learning rate (one-cycle schedule) and weight decay.
    max_shift : int
        Largest random shift, pixels.
    psf_jitter : float
        Largest Gaussian blur sigma, pixels.
    noise_scale : float
        Largest extra noise, in units of the sky sigma.
    band_dropout : tuple of 4 float
        Probability of dropping g, r, i, z in a view (at least two bands always stay).
    photometry_weight : float, optional
        Weight of the masked-band profile reconstruction loss (0 disables it). ``None``:
        1.0, or 0.0 when ``image_only``.
    amp : bool, optional
        Mixed precision (float16 autocast); ``None``: on for CUDA, off on CPU.
    image_only : bool
        Leave out the photometric branch: the embedding is a linear map of the pooled
        convolutional features and the band mask only, and there is no profile
        reconstruction loss (``photometry_weight`` must be 0 or ``None``), so everything the
        embedding knows is learned from the pixels by the contrastive objective. An ablation
        of the hand-built light profile; the default (``False``) is the full encoder.
    threads : int or None
        Torch threads while :meth:`fit` trains on the CPU (default
        :data:`photozsom.device.TRAIN_THREADS`): a fixed count trains the same encoder from
        the same seed on any CPU (torch splits gradient sums by thread count); None: torch's
        own count. Not part of the saved configuration (it does not change the model's
        shape or meaning).

    Examples
    --------
    >>> enc = Encoder(dim=64, seed=0)                                    # doctest: +SKIP
    >>> history = enc.fit("run/cutouts.h5", epochs=8, checkpoint="run/encoder.ckpt")  # doctest: +SKIP
    >>> emb = enc.embed(images, band_mask)        # float32 [N, 64]      # doctest: +SKIP
    >>> enc.save("run/encoder"); enc = Encoder.load("run/encoder")      # doctest: +SKIP
    """

    def __init__(
        self,
        dim: int = 64,
        size: int | None = None,
        seed: int = 0,
        device: str | None = None,
        *,
        widths: tuple[int, ...] = (32, 64, 64, 64),
        stem: int = 4,
        temperature: float = 0.2,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        max_shift: int = 2,
        psf_jitter: float = 0.8,
        noise_scale: float = 1.0,
        band_dropout: tuple[float, float, float, float] = (0.1, 0.1, 0.5, 0.1),
        photometry_weight: float | None = None,
        amp: bool | None = None,
        image_only: bool = False,
        threads: int | None = TRAIN_THREADS,
    ):
        import torch

        if dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        if size is not None and size < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        if len(band_dropout) != 4 or not all(0.0 <= p < 1.0 for p in band_dropout):
            raise ValueError(
                f"band_dropout must be 4 probabilities in [0, 1) for g, r, i, z, got {band_dropout}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.image_only = bool(image_only)
        if photometry_weight is None:
            photometry_weight = 0.0 if self.image_only else 1.0
        if self.image_only and photometry_weight != 0:
            raise ValueError(
                f"an image_only Encoder has no light profile to reconstruct: pass "
                f"photometry_weight=0 (or leave it out), not {photometry_weight}"
            )
        if photometry_weight < 0:
            raise ValueError(f"photometry_weight must be >= 0, got {photometry_weight}")
        self.dim = int(dim)
        self.size = None if size is None else int(size)
        self.seed = int(seed)
        self.device = default_device(device)
        self.widths = tuple(int(w) for w in widths)
        self.stem = int(stem)
        if len(self.widths) < 1 or self.stem < 1:
            raise ValueError(
                f"widths must name at least one block and stem >= 1, got {widths}, {stem}"
            )
        self.temperature = float(temperature)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.max_shift = int(max_shift)
        self.psf_jitter = float(psf_jitter)
        self.noise_scale = float(noise_scale)
        self.band_dropout = tuple(float(p) for p in band_dropout)
        self.photometry_weight = float(photometry_weight)
        self.amp = self.device.startswith("cuda") if amp is None else bool(amp)
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1 (or None: torch's own count), got {threads}")
        self.threads = None if threads is None else int(threads)
        self.softening: np.ndarray | None = None
        #: Pixel scale of the training cutouts, arcsec/pixel (None: not from a store).
        self.pixscale: float | None = None
        self.history: dict = {
            "loss": [],
            "contrastive": [],
            "photometry": [],
            "epoch_time_s": [],
            "bad_bands": [],
            "steps": 0,
        }
        self.fitted = False
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = _build_network(
                self.dim, self.widths, self.stem, image_only=self.image_only
            ).to(self.device)
        self.net.eval()

    # -- configuration ------------------------------------------------------------------
    def _config(self) -> dict:
        return {
            "dim": self.dim,
            "size": self.size,
            "seed": self.seed,
            "widths": list(self.widths),
            "stem": self.stem,
            "temperature": self.temperature,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "max_shift": self.max_shift,
            "psf_jitter": self.psf_jitter,
            "noise_scale": self.noise_scale,
            "band_dropout": list(self.band_dropout),
            "photometry_weight": self.photometry_weight,
            "image_only": self.image_only,
        }

    def identity(self) -> str:
        """``Encoder(dim=.., size=.., sha1=..)``: identifies these weights in embedding files
        (``Encoder(dim=.., size=.., image_only=True, sha1=..)`` for an image-only one)."""
        buf = io.BytesIO()
        for k, v in sorted(self.net.state_dict().items()):
            buf.write(k.encode())
            buf.write(v.detach().cpu().contiguous().numpy().tobytes())
        if self.softening is not None:
            buf.write(np.asarray(self.softening, np.float32).tobytes())
        sha1 = hashlib.sha1(buf.getvalue()).hexdigest()[:12]
        kind = ", image_only=True" if self.image_only else ""
        return f"Encoder(dim={self.dim}, size={self.size}{kind}, sha1={sha1})"

    def __repr__(self) -> str:
        state = f"fitted, {self.history['steps']} steps" if self.fitted else "not fitted"
        kind = ", image_only=True" if self.image_only else ""
        return (f"Encoder(dim={self.dim}, size={self.size}{kind}, device={self.device!r}, "
                f"{state})")

    # -- data -----------------------------------------------------------------------------
    def _crop_side(self, h: int) -> tuple[int, int]:
        """(network crop side, shift margin) for cutouts of side ``h``."""
        if self.size is None:
            self.size = min(h, 48)
        if h < self.size:
            raise ValueError(
                f"cutouts are {h} px but this Encoder was built for {self.size} px "
                f"centre crops; pass cutouts of at least {self.size} px"
            )
        return self.size, min(self.max_shift, (h - self.size) // 2)

    @staticmethod
    def _centre(images: np.ndarray, side: int) -> np.ndarray:
        h, w = images.shape[-2:]
        y0, x0 = (h - side) // 2, (w - side) // 2
        return images[..., y0 : y0 + side, x0 : x0 + side]

    def _augment(self, flux, mask, sigma, gen, side: int, shift: int):
        """Two-view augmentation of a batch in flux space (see the module docstring)."""
        import torch
        import torch.nn.functional as F

        dev = flux.device
        b, c = flux.shape[:2]
        flux = torch.where(mask[:, :, None, None], flux, torch.zeros((), device=dev))
        # Shift, flips and 90-degree rotations in one gather: crop `side` pixels at a random
        # offset within +-shift of the centre, read rows and/or columns backwards (flips),
        # then transpose half of the galaxies; flips x transpose span the 8 elements of D4.
        full = flux.shape[-1]
        off0 = (full - side) // 2 - shift
        oy = off0 + torch.randint(0, 2 * shift + 1, (b,), generator=gen, device=dev)
        ox = off0 + torch.randint(0, 2 * shift + 1, (b,), generator=gen, device=dev)
        flips = torch.randint(0, 2, (3, b), generator=gen, device=dev).bool()
        ar = torch.arange(side, device=dev)
        ry = torch.where(flips[0][:, None], side - 1 - ar, ar)
        rx = torch.where(flips[1][:, None], side - 1 - ar, ar)
        rows = (oy[:, None] + ry)[:, None, :, None]
        cols = (ox[:, None] + rx)[:, None, None, :]
        flux = flux[
            torch.arange(b, device=dev)[:, None, None, None],
            torch.arange(c, device=dev)[None, :, None, None],
            rows,
            cols,
        ]
        flux = torch.where(flips[2][:, None, None, None], flux.transpose(-1, -2), flux)
        # PSF jitter: Gaussian blur, sigma ~ U(0, psf_jitter) pixels per galaxy and band.
        if self.psf_jitter > 0:
            s = torch.rand(b * c, generator=gen, device=dev) * self.psf_jitter + 1e-3
            r = max(1, math.ceil(2.5 * self.psf_jitter))
            t = torch.arange(-r, r + 1, device=dev, dtype=flux.dtype)
            k1 = torch.exp(-0.5 * (t[None, :] / s[:, None]) ** 2)
            k1 = k1 / k1.sum(dim=1, keepdim=True)
            k2 = k1[:, :, None] * k1[:, None, :]
            flux = F.conv2d(
                flux.reshape(1, b * c, side, side), k2[:, None], padding=r, groups=b * c
            ).reshape(b, c, side, side)
        # Noise re-draw: extra sky noise of u * sigma, u ~ U(0, noise_scale).
        if self.noise_scale > 0:
            u = torch.rand(b, c, 1, 1, generator=gen, device=dev) * self.noise_scale
            noise = torch.randn(flux.shape, generator=gen, device=dev, dtype=flux.dtype)
            flux = flux + noise * (u * sigma[:, :, None, None])
        # Band dropout, keeping at least two bands.
        p = torch.tensor(self.band_dropout, device=dev)
        drop = (torch.rand(b, c, generator=gen, device=dev) < p) & mask
        keep = mask & ~drop
        too_few = keep.sum(dim=1) < 2
        keep = torch.where(too_few[:, None], mask, keep)
        return flux, keep

    def _photometry(self, flux, mask, softening, side: int):
        """Targets of the auxiliary task: the light profile of the un-augmented cutout.

        The photometric-branch profile (mean ``asinh(flux / s_b)`` in the annuli
        :data:`ANNULI`, before normalisation) of the centred ``side`` x ``side`` crop, in every
        band the object has, including bands dropped from the network's view; shape
        ``(B, 4 * n_annuli)``, asinh units. For well-detected pixels ``asinh(x) ~ ln 2x``, so
        differences between bands are colours.
        """
        off = (flux.shape[-1] - side) // 2
        return self.net.raw_profile(
            stretch(flux[..., off : off + side, off : off + side], mask, softening)
        )

    def _prepare_sigma(self, sigma: np.ndarray, images: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per-pixel sky noise [n, 4]: the given value, else a border estimate for present
        bands, else the softening (absent bands: irrelevant, they are zeroed)."""
        sigma = np.asarray(sigma, dtype=np.float32).copy()
        bad = ~(np.isfinite(sigma) & (sigma > 0)) & mask
        rows = np.flatnonzero(bad.any(axis=1))
        if len(rows):
            est = estimate_sky_sigma(np.where(mask[rows, :, None, None], images[rows], 0.0))
            sigma[rows] = np.where(bad[rows], est, sigma[rows])
        bad = ~(np.isfinite(sigma) & (sigma > 0))
        if bad.any():
            soft = self.softening if self.softening is not None else np.asarray(DEFAULT_SOFTENING)
            sigma[bad] = np.broadcast_to(np.asarray(soft, np.float32)[None, :], sigma.shape)[bad]
        return sigma

    # -- training -------------------------------------------------------------------------
    def _init_softening(self, source: CutoutSource) -> None:
        """Softening = median per-pixel sky noise per band of up to 2048 training rows."""
        rows = source.rows
        probe = rows[:: max(1, len(rows) // 2048)][:2048]
        imgs, mask, sig = source.read(np.sort(probe))
        used, _ = usable_bands(imgs, mask, warn=False)
        sig = self._prepare_sigma(sig, np.where(used[:, :, None, None], imgs, 0.0), used)
        sig = np.where(used, sig, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN band: default below
            soft = np.nanmedian(sig, axis=0) if np.isfinite(sig).any() else np.full(4, np.nan)
        self.softening = np.where(
            np.isfinite(soft) & (soft > 0), soft, np.asarray(DEFAULT_SOFTENING)
        ).astype(np.float32)

    def _batches(self, source: CutoutSource, epoch: int, bs: int, buffer: int, load_side: int,
                 counts: dict):
        """Batches ``(images, band_mask, sigma)`` of one epoch, shuffled in seeded blocks.

        A band holding NaN/inf pixels in the loaded crop is left out for that object (as an
        absent band); an object with no band left is skipped. ``counts["bad_bands"]`` and
        ``counts["skipped"]`` accumulate how many.
        """
        rows = source.rows
        n = len(rows)
        rng = np.random.default_rng([self.seed, epoch])
        nblk = max(1, math.ceil(n / buffer))
        carry = None
        for blk in rng.permutation(nblk):
            idx = rows[blk * buffer : (blk + 1) * buffer]
            imgs, mask, sig = source.read(idx)
            imgs = np.ascontiguousarray(self._centre(imgs, load_side))
            imgs, mask = validate_cutouts(imgs, mask, name="training cutouts", bad_pixels="ignore")
            used, n_bad = usable_bands(imgs, mask, warn=False)
            keep = used.any(axis=1)
            counts["bad_bands"] += int((n_bad > 0).sum())
            counts["skipped"] += int((~keep).sum())
            sig = self._prepare_sigma(sig, imgs, used)
            perm = rng.permutation(len(idx))
            perm = perm[keep[perm]]
            imgs, mask, sig = imgs[perm], used[perm], sig[perm]
            if carry is not None:
                imgs = np.concatenate([carry[0], imgs])
                mask = np.concatenate([carry[1], mask])
                sig = np.concatenate([carry[2], sig])
            m = len(imgs) // bs * bs
            for lo in range(0, m, bs):
                yield imgs[lo : lo + bs], mask[lo : lo + bs], sig[lo : lo + bs]
            carry = (imgs[m:], mask[m:], sig[m:]) if m < len(imgs) else None

    def _loss(self, x, mk, sg, gen, soft_t, side: int, shift: int):
        """Total, contrastive and photometry losses of one batch (two augmented views)."""
        import torch

        f1, m1 = self._augment(x, mk, sg, gen, side, shift)
        f2, m2 = self._augment(x, mk, sg, gen, side, shift)
        inp = torch.cat([stretch(f1, m1, soft_t), stretch(f2, m2, soft_t)])
        h, conv = self.net(inp, torch.cat([m1, m2]), return_conv=True)
        z = self.net.project(h)
        zc = self.net.project_conv(conv)
        b = len(x)
        contrastive = _nt_xent(z[:b], z[b:], self.temperature) + _nt_xent(
            zc[:b], zc[b:], self.temperature
        )
        phot = torch.zeros((), device=x.device)
        if self.photometry_weight > 0:
            target = self._photometry(x, mk, soft_t, side)
            valid = mk.repeat_interleave(len(ANNULI) - 1, dim=1).float()
            pred = self.net.photometry(h).float().view(2, b, -1)
            err = (pred - target.reshape(1, b, -1)) ** 2 * valid
            phot = err.sum() / (2 * valid.sum().clamp(min=1.0))
        return contrastive + self.photometry_weight * phot, contrastive, phot

    def _run_epoch(self, batches, *, opt, sched, scaler, gen, soft_t, side: int, shift: int,
                   step: int, max_steps: int | None, bar) -> tuple[list, int, bool]:
        """One pass of optimisation steps over ``batches``.

        Returns
        -------
        losses : list of (total, contrastive, photometry)
            One entry per step taken.
        step : int
            Steps taken in total (this run and before).
        complete : bool
            False when ``max_steps`` stopped the epoch early.
        """
        import torch

        dev = self.device
        autocast = torch.autocast(
            device_type="cuda", dtype=torch.float16, enabled=self.amp and dev.startswith("cuda")
        )
        self.net.train()
        losses = []
        for imgs, mask, sig in batches:
            if max_steps is not None and step >= max_steps:
                return losses, step, False
            x = torch.from_numpy(imgs).to(dev, non_blocking=True)
            mk = torch.from_numpy(mask).to(dev)
            sg = torch.from_numpy(sig).to(dev)
            with autocast:
                loss, contrastive, phot = self._loss(x, mk, sg, gen, soft_t, side, shift)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if sched.last_epoch < sched.total_steps - 1:
                sched.step()
            step += 1
            losses.append((float(loss.detach()), float(contrastive.detach()), float(phot.detach())))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1][0]:.3f}")
        return losses, step, True

    @trains_with_fixed_threads
    def fit(
        self,
        data,
        epochs: int = 10,
        batch_size: int = 256,
        *,
        objid: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        band_mask: np.ndarray | None = None,
        sigma: np.ndarray | None = None,
        checkpoint: str | os.PathLike | None = None,
        buffer: int = 8192,
        max_steps: int | None = None,
        allow_pixscale: float | None = None,
        progress: bool = True,
    ) -> dict:
        """Pretrain self-supervised (SimCLR) on unlabelled cutouts.

        Parameters
        ----------
        data : CutoutStore, str, Path or ndarray
            A cutout store (object or path), or cutouts ``[N, 4, H, W]`` in nanomaggies/pixel.
        epochs : int
            Passes over the data (total, including epochs restored from ``checkpoint``).
        batch_size : int
            Galaxies per step (each seen as two views).
        objid : array_like of int, optional
            Train only on these objects of a store (e.g. exclude the test set).
        rows : array_like of int, optional
            Train only on these rows (alternative to ``objid``).
        band_mask : ndarray, shape (N, 4), optional
            For array input: True where the band has imaging (default: bands with all pixels
            finite).
        sigma : ndarray, shape (N, 4), optional
            For array input: per-pixel sky noise, nanomaggies; default estimated from the
            cutout borders. Stores provide it.
        checkpoint : str or Path, optional
            Directory written atomically after every complete epoch (weights, optimiser,
            schedule, history; :mod:`photozsom.artifacts` arrays + JSON); when it exists,
            training resumes after its last epoch. Data order and augmentations are seeded
            per epoch, so a resumed run equals an uninterrupted one.
        buffer : int
            Rows read from disk at a time; the data are shuffled in blocks of this size.
        max_steps : int, optional
            Stop after this many optimisation steps in total (for tests and quick looks);
            the learning-rate schedule still spans ``epochs``, and a partial epoch is not
            checkpointed.
        allow_pixscale : float, optional
            Train on a store of this pixel scale (arcsec/pixel) although it is not the
            Legacy Survey's 0.262; the encoder then expects it when embedding.
        progress : bool
            Show a progress bar.

        Returns
        -------
        dict
            ``loss``, ``contrastive``, ``photometry`` (means per epoch), ``epoch_time_s``,
            ``bad_bands`` (object-bands left out per epoch for NaN/inf pixels), ``steps``,
            ``n_train``.

        Raises
        ------
        ValueError
            A store whose pixel scale is not 0.262 arcsec/pixel (see ``allow_pixscale``), a
            checkpoint of another configuration, bad shapes.
        """
        import torch
        from tqdm.auto import tqdm

        if epochs < 1 or batch_size < 2:
            raise ValueError(f"epochs must be >= 1 and batch_size >= 2, got {epochs}, {batch_size}")
        with CutoutSource(data, objid=objid, rows=rows, band_mask=band_mask,
                          sigma=sigma) as source:
            if source.pixscale is not None:
                check_pixscale(source.pixscale, self.pixscale or PIXSCALE, allow=allow_pixscale,
                               what="the training cutout store", who="Encoder")
            side, shift = self._crop_side(source.side)
            load_side = side + 2 * shift
            n = len(source.rows)
            bs = min(batch_size, n)
            steps_per_epoch = max(1, n // bs)
            if self.softening is None:
                self._init_softening(source)
            if source.pixscale is not None:
                self.pixscale = source.pixscale

            dev = self.device
            opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr,
                                    weight_decay=self.weight_decay)
            # The one-cycle schedule spans `epochs` (max_steps only stops early), so an
            # interrupted run resumed from its checkpoint follows the same schedule.
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=self.lr, pct_start=0.1, total_steps=steps_per_epoch * epochs
            )
            scaler = torch.amp.GradScaler("cuda", enabled=self.amp and dev.startswith("cuda"))
            start_epoch = 0
            found = None if checkpoint is None else _find_checkpoint(checkpoint)
            if found is not None:
                start_epoch = _restore_checkpoint(found, self, opt, sched, scaler,
                                                  epochs=epochs, steps_per_epoch=steps_per_epoch)
            soft_t = torch.as_tensor(self.softening, device=dev)
            step = int(self.history.get("steps", 0))
            self.history["n_train"] = int(n)
            self.history.setdefault("bad_bands", [])
            for epoch in range(start_epoch, epochs):
                if max_steps is not None and step >= max_steps:
                    break
                gen = torch.Generator(device=dev)
                gen.manual_seed(self.seed * 100003 + epoch)
                counts = {"bad_bands": 0, "skipped": 0}
                t0 = time.perf_counter()
                with tqdm(total=steps_per_epoch, disable=None if progress else True,
                          desc=f"pretrain epoch {epoch + 1}/{epochs}", unit="step") as bar:
                    losses, step, complete = self._run_epoch(
                        self._batches(source, epoch, bs, buffer, load_side, counts),
                        opt=opt, sched=sched, scaler=scaler, gen=gen, soft_t=soft_t,
                        side=side, shift=shift, step=step, max_steps=max_steps, bar=bar,
                    )
                if not losses:
                    break
                if counts["bad_bands"] and epoch == start_epoch:
                    warnings.warn(
                        f"{counts['bad_bands']} band(s) of the training cutouts hold NaN/inf "
                        f"pixels and were left out as absent bands; {counts['skipped']} "
                        "object(s) had no band left and were skipped",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                for key, value in zip(("loss", "contrastive", "photometry"),
                                      np.mean(losses, axis=0)):
                    self.history.setdefault(key, []).append(float(value))
                self.history["epoch_time_s"].append(time.perf_counter() - t0)
                self.history["bad_bands"].append(counts["bad_bands"])
                self.history["steps"] = step
                self.fitted = True
                if checkpoint is not None and complete:
                    _save_checkpoint(checkpoint, self, opt, sched, scaler, epoch=epoch + 1,
                                     epochs=epochs, steps_per_epoch=steps_per_epoch)
        self.net.eval()
        return self.history

    # -- inference ------------------------------------------------------------------------
    @property
    def input_size(self) -> int | None:
        """Side of the centre crop the network reads, pixels (``size``)."""
        return self.size

    def embed(
        self,
        cutouts: np.ndarray,
        band_mask: np.ndarray,
        *,
        batch_size: int = 512,
        progress: bool = True,
    ) -> np.ndarray:
        """Embed cutouts with the network in evaluation mode (deterministic).

        Parameters
        ----------
        cutouts : ndarray, shape (N, 4, H, W)
            Nanomaggies per pixel, bands g, r, i, z; ``H, W >= size`` (the centre
            ``size`` x ``size`` pixels are used).
        band_mask : ndarray, shape (N, 4), bool
            True where the band has imaging. Absent bands may hold NaN. A present band
            with NaN/inf pixels in the centre crop is embedded as absent (``RuntimeWarning``;
            :func:`~photozsom.embed.base.usable_bands`).
        batch_size : int
            Galaxies per forward pass.
        progress : bool
            Show a progress bar.

        Returns
        -------
        ndarray, shape (N, dim), float32
            NaN rows for objects with no band free of bad pixels.
        """
        import torch
        from tqdm.auto import tqdm

        if not self.fitted:
            raise RuntimeError(
                "Encoder is not pretrained: call fit(store, epochs=...) or "
                "Encoder.load(path) before embed"
            )
        cutouts, band_mask = validate_cutouts(
            cutouts, band_mask, min_size=self.size or 8, bad_pixels="ignore"
        )
        side, _ = self._crop_side(cutouts.shape[-1])
        band_mask, _ = usable_bands(cutouts, band_mask, side, name="Encoder.embed")
        ok = np.flatnonzero(band_mask.any(axis=1))
        dev = self.device
        soft_t = torch.as_tensor(self.softening, device=dev)
        out = np.full((len(cutouts), self.dim), np.nan, np.float32)
        self.net.eval()
        autocast = torch.autocast(
            device_type="cuda", dtype=torch.float16, enabled=self.amp and dev.startswith("cuda")
        )
        with torch.inference_mode(), autocast:
            for lo in tqdm(
                range(0, len(ok), batch_size),
                disable=None if progress else True,
                desc="Encoder.embed",
                unit="batch",
            ):
                sel = ok[lo : lo + batch_size]
                x = np.ascontiguousarray(self._centre(cutouts[sel], side))
                xt = torch.from_numpy(x).to(dev)
                mt = torch.from_numpy(band_mask[sel]).to(dev)
                out[sel] = self.net(stretch(xt, mt, soft_t), mt).float().cpu().numpy()
        return out

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Save the encoder as a :mod:`photozsom.artifacts` directory, atomically.

        ``path`` (e.g. ``run/embed/encoder``) becomes a directory holding ``meta.json``
        (format ``photozsom.encoder``, configuration including ``image_only``, softening,
        pixel scale, history) and
        ``arrays.npz`` (the network's ``state_dict``). Nothing is pickled.
        """

        meta = {
            "config": self._config(),
            "softening": None if self.softening is None else self.softening,
            "pixscale": self.pixscale,
            "history": self.history,
            "fitted": self.fitted,
        }
        return save_artifact(path, ENCODER_KIND, state_to_arrays(self.net.state_dict()), meta)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> Encoder:
        """Load an encoder written by :meth:`save` onto ``device``.

        A single file written by photozsom before artifacts were directories is read
        with ``torch.load(weights_only=True)`` (tensors and plain values only).
        """

        path = Path(path)
        if path.is_file():
            import torch

            ck = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ck, dict) or ck.get("format") != "photozsom.Encoder/1":
                raise ValueError(f"{path} is not a photozsom Encoder (written by Encoder.save)")
            state, meta = ck["state_dict"], {**ck, "pixscale": None}
        else:
            arrays, meta = load_artifact(path, ENCODER_KIND)
            state = arrays_to_state(arrays)
        cfg = dict(meta["config"])
        cfg["widths"] = tuple(cfg["widths"])
        cfg["band_dropout"] = tuple(cfg["band_dropout"])
        enc = cls(device=device, **cfg)
        enc.net.load_state_dict(state)
        enc.net.eval()
        soft = meta["softening"]
        enc.softening = None if soft is None else np.asarray(soft, np.float32)
        enc.pixscale = meta["pixscale"]
        enc.history = meta["history"]
        enc.fitted = bool(meta["fitted"])
        return enc
