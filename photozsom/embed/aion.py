"""AION-1 embeddings of Legacy Survey cutouts (optional extra ``photozsom[aion]``).

AION-1 (Parker et al. 2025; package ``polymathic-aion``, weights in the gated Hugging Face
repositories ``polymathic-ai/aion-base``, ``-large``, ``-xlarge``) is a 4M-style
encoder-decoder transformer over discrete tokens. An image is turned into 24 x 24 = 576
tokens by the Legacy Survey image codec; the encoder maps the tokens to vectors of the
model width (768 for aion-base); photozsom mean-pools them into one embedding per object.

Facts of ``polymathic-aion`` 0.0.2 this module is built on (read from its source):

- ``AION.from_pretrained("polymathic-ai/aion-base")`` (the README's bare ``"aion-base"`` is
  not a valid repository id) or a local directory holding ``config.json`` and
  ``model.safetensors``; it needs ``safetensors`` and loads *non-strictly*: parameters
  missing from the file silently keep their random initialisation. :class:`AIONEmbedder`
  therefore checks the weights (missing keys, a known-input fingerprint when a reference
  is known, and the untouched-initialisation signature) and fails loudly.
- ``CodecManager(device=...).encode(LegacySurveyImage(flux=[B, C, H, W], bands=[...]))``
  with flux in nanomaggies and bands named ``"DES-G", "DES-R", "DES-I", "DES-Z"``. The
  image codec centre-crops to 96 x 96 pixels (smaller inputs fail) and clamps the crop
  *in place* (the crop is a view of the input), so the embedder passes copies. NaN would
  propagate into every token, so absent bands are left out rather than filled.
- All objects in one ``LegacySurveyImage`` share one band list: southern objects
  (g, r, i, z) and northern objects (g, r, z) are encoded in separate batches.
- ``model.encode(tokens, num_encoder_tokens=N)`` keeps only the first ``N`` tokens, and
  ``N`` defaults to 256, which would silently drop 320 of the 576 image tokens; photozsom
  passes ``num_encoder_tokens=600`` (all image tokens plus up to 24 catalogue tokens).
- Optional catalogue scalars ``LegacySurveyFluxG/R/I/Z/W1..W4(value=flux)`` (nanomaggies)
  and ``LegacySurveyEBV(value=EBV)``, one token each.

AION-1 was pretrained on DR10-*south* (DECam) images. Northern (BASS/MzLS) g, r, z images
are fed with the same ``DES-*`` band labels; the filters and depths differ slightly, so
expect a small north/south domain shift, which the paper's SOM cells let you measure.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from photozsom.device import default_device
from photozsom.embed.base import validate_cutouts

__all__ = ["AION_BANDS", "CATALOG_COLUMNS", "REFERENCE_FINGERPRINTS", "AIONEmbedder"]

#: AION band names of the store's g, r, i, z axis (Legacy Survey DR10 south is DECam = DES filters).
AION_BANDS: tuple[str, ...] = ("DES-G", "DES-R", "DES-I", "DES-Z")
#: Side of the codec's centre crop, pixels (0.262 arcsec/pixel: 25.2 arcsec).
CROP: int = 96
#: Image tokens per object (24 x 24).
N_IMAGE_TOKENS: int = 576
#: DR10 catalogue columns usable as AION scalar inputs, with their modality class names.
CATALOG_COLUMNS: dict[str, str] = {
    "FLUX_G": "LegacySurveyFluxG",
    "FLUX_R": "LegacySurveyFluxR",
    "FLUX_I": "LegacySurveyFluxI",
    "FLUX_Z": "LegacySurveyFluxZ",
    "FLUX_W1": "LegacySurveyFluxW1",
    "FLUX_W2": "LegacySurveyFluxW2",
    "FLUX_W3": "LegacySurveyFluxW3",
    "FLUX_W4": "LegacySurveyFluxW4",
    "EBV": "LegacySurveyEBV",
}
#: Known-input fingerprints (:meth:`AIONEmbedder.fingerprint`) of released weights, keyed by
#: repository id. Empty in this release: the gated weights could not be downloaded where
#: photozsom was built. Record yours with ``AIONEmbedder(...).fingerprint()`` and pass it as
#: ``expected_fingerprint=`` to pin the weights on every later run.
REFERENCE_FINGERPRINTS: dict[str, np.ndarray] = {}


def _import_aion():
    try:
        import aion  # noqa: F401
        from aion import AION, modalities
        from aion.codecs import CodecManager
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "AIONEmbedder needs the optional extra: pip install 'photozsom[aion]' "
            "(polymathic-aion==0.0.2 and safetensors)"
        ) from err
    return AION, CodecManager, modalities


def known_input(size: int = CROP) -> np.ndarray:
    """The fixed input of the weight fingerprint: one synthetic galaxy, g, r, i, z.

    An elliptical exponential disc with total fluxes 3, 6, 9, 12 nanomaggies in g, r, i, z
    on a deterministic (not random) +-0.01 nanomaggies/pixel pattern.

    Returns
    -------
    ndarray, shape (1, 4, size, size), float32, nanomaggies/pixel
    """
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    r = np.hypot(xx, yy / 0.6)
    prof = np.exp(-r / 3.0)
    prof /= prof.sum()
    flux = np.array([3.0, 6.0, 9.0, 12.0])[:, None, None] * prof[None]
    pattern = (
        0.01 * np.sin(0.7 * xx + 1.3 * yy)[None] * np.array([1.0, 1.2, 1.5, 2.0])[:, None, None]
    )
    return (flux + pattern)[None].astype(np.float32)


class AIONEmbedder:
    """Embed g, r, i, z cutouts with AION-1 (mean-pooled encoder tokens).

    Parameters
    ----------
    model : str, Path or aion.AION
        Hugging Face repository id (``"polymathic-ai/aion-base"``, ``-large``, ``-xlarge``;
        gated, needs a token), a local directory with ``config.json`` and
        ``model.safetensors``, or an ``AION`` instance.
    codec_manager : aion.codecs.CodecManager, optional
        Tokenizers; default ``CodecManager(device=device)``, which downloads the codecs
        from ``polymathic-ai/aion-base``.
    num_encoder_tokens : int
        Tokens the encoder keeps; must cover all 576 image tokens plus catalogue tokens.
    device : str, optional
        Torch device; ``None`` picks CUDA when present.
    include_catalog : bool
        Also feed catalogue fluxes and E(B-V) (columns :data:`CATALOG_COLUMNS` present in
        the ``catalog`` passed to :meth:`embed`).
    verify_weights : bool
        Check that the model's weights are trained, not random (see :meth:`verify`), and
        raise ``RuntimeError`` otherwise. Only set False for a deliberately random model
        (tests).
    expected_fingerprint : array_like, optional
        Known-input fingerprint of the weights you expect (from :meth:`fingerprint`);
        defaults to :data:`REFERENCE_FINGERPRINTS` for a repository id.

    Notes
    -----
    AION-1 was trained on DR10-south images; see the module docstring. Cutouts must be at
    least 96 x 96 pixels (the centre 96 x 96 are used).

    Examples
    --------
    >>> emb = AIONEmbedder("polymathic-ai/aion-base").embed(images, band_mask)  # doctest: +SKIP
    """

    def __init__(
        self,
        model="polymathic-ai/aion-base",
        codec_manager=None,
        num_encoder_tokens: int = 600,
        device: str | None = None,
        include_catalog: bool = False,
        *,
        verify_weights: bool = True,
        expected_fingerprint=None,
    ):
        AION, CodecManager, _ = _import_aion()
        self.device = default_device(device)
        if num_encoder_tokens < N_IMAGE_TOKENS:
            raise ValueError(
                f"num_encoder_tokens={num_encoder_tokens} would drop image tokens (an image is "
                f"{N_IMAGE_TOKENS} tokens, and model.encode keeps only the first N); use >= "
                f"{N_IMAGE_TOKENS + (len(CATALOG_COLUMNS) if include_catalog else 0)}"
            )
        self.num_encoder_tokens = int(num_encoder_tokens)
        self.include_catalog = bool(include_catalog)
        source = None
        if isinstance(model, (str, os.PathLike)):
            source = str(model)
            if source in ("aion-base", "aion-large", "aion-xlarge"):
                raise ValueError(
                    f"model={source!r} is not a Hugging Face repository id; use "
                    f"'polymathic-ai/{source}' or a local directory"
                )
            try:
                import safetensors  # noqa: F401
            except ImportError as err:  # pragma: no cover
                raise ImportError(
                    "loading AION weights needs safetensors: pip install safetensors"
                ) from err
            model = AION.from_pretrained(source)
        elif not isinstance(model, AION):
            raise TypeError(
                "model must be a repository id, a directory or an aion.AION, got "
                f"{type(model).__name__}"
            )
        self.source = source if source is not None else f"<{type(model).__name__} instance>"
        self.model = model.to(self.device).eval()
        self.dim = int(model.dim)
        self.codec_manager = (
            codec_manager if codec_manager is not None else CodecManager(device=self.device)
        )
        if expected_fingerprint is None and source in REFERENCE_FINGERPRINTS:
            expected_fingerprint = REFERENCE_FINGERPRINTS[source]
        self.expected_fingerprint = (
            None
            if expected_fingerprint is None
            else np.asarray(expected_fingerprint, dtype=np.float64)
        )
        self.weights_verified = False
        if verify_weights:
            self.verify(source)

    def identity(self) -> str:
        """``AIONEmbedder(model=.., dim=.., tokens=.., catalog=..)``: kept in embedding files."""
        return (
            f"AIONEmbedder(model={self.source}, dim={self.dim}, "
            f"tokens={self.num_encoder_tokens}, catalog={self.include_catalog})"
        )

    def __repr__(self) -> str:
        return self.identity()

    # -- weight checks --------------------------------------------------------------------
    def _weights_file(self, source: str) -> Path | None:
        if os.path.isdir(source):
            p = Path(source) / "model.safetensors"
            return p if p.exists() else None
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(source, "model.safetensors"))  # cached by from_pretrained
        except Exception:  # noqa: BLE001 - any hub failure means: cannot inspect the file
            return None

    def verify(self, source: str | None = None) -> None:
        """Fail loudly unless the model's weights are trained weights.

        Checks, in order:

        1. When loaded from a file: every parameter and buffer of the model is in the
           file (``from_pretrained`` loads non-strictly and would leave the rest random).
        2. When a reference fingerprint is known (``expected_fingerprint`` or
           :data:`REFERENCE_FINGERPRINTS`): :meth:`fingerprint` of the known input matches
           it (relative tolerance 1e-2). A match proves the weights; a mismatch fails.
        3. Otherwise, the untouched-initialisation signature: every layer-norm gain
           exactly 1.0, which trained weights never show.

        Raises
        ------
        RuntimeError
            Naming what is wrong and what to do.
        """
        import torch

        if source is not None:
            wfile = self._weights_file(source)
            if wfile is not None:
                import safetensors.torch

                # Reloading the same file into the model is harmless and reports what the
                # non-strict from_pretrained silently skipped (shared tensors accounted for).
                missing, _ = safetensors.torch.load_model(
                    self.model, str(wfile), strict=False, device=self.device
                )
                if missing:
                    raise RuntimeError(
                        f"AION weights in {wfile} lack {len(missing)} of the model's tensors "
                        f"(e.g. {sorted(missing)[:5]}); from_pretrained left them at random "
                        "initialisation. Use the weights that match this polymathic-aion "
                        "version (0.0.2) or re-download them"
                    )
        if self.expected_fingerprint is not None:
            fp = self.fingerprint()
            ref = self.expected_fingerprint
            if fp.shape != ref.shape or not np.allclose(
                fp, ref, rtol=1e-2, atol=1e-3 * np.abs(ref).max()
            ):
                raise RuntimeError(
                    f"AION known-input fingerprint {np.round(fp, 5).tolist()} does not match the "
                    f"expected {np.round(ref, 5).tolist()}: these are not the expected (trained) "
                    "weights or codecs"
                )
            self.weights_verified = True
            return
        gains = [
            m.weight
            for m in self.model.modules()
            if "norm" in type(m).__name__.lower()
            and isinstance(getattr(m, "weight", None), torch.Tensor)
        ]
        if gains and all(bool(torch.all(g == 1.0)) for g in gains):
            raise RuntimeError(
                f"AION model from {self.source} has every layer-norm gain exactly 1.0: its weights "
                "are at their random initialisation, not trained. Load trained weights "
                "(AION.from_pretrained('polymathic-ai/aion-base') with a Hugging Face token, or a "
                "local copy); pass verify_weights=False only for a deliberately random model"
            )
        self.weights_verified = True

    def fingerprint(self) -> np.ndarray:
        """Known-input checksum of the codec + model weights.

        The mean-pooled embedding of :func:`known_input` projected on 8 fixed directions
        ``cos(0.37 (k + 1) j)``; the same weights give the same 8 numbers (to float
        precision), random weights give different ones each time they are drawn.

        Returns
        -------
        ndarray, shape (8,), float64
        """
        emb = self.embed(known_input(), np.ones((1, 4), bool), progress=False)[0].astype(np.float64)
        j = np.arange(len(emb))
        basis = np.cos(0.37 * (np.arange(8)[:, None] + 1) * j[None, :])
        return basis @ emb / np.sqrt(len(emb))

    # -- embedding ------------------------------------------------------------------------
    def _catalog_values(self, catalog, n: int) -> tuple[list[str], np.ndarray]:
        if catalog is None:
            raise ValueError(
                "include_catalog=True needs catalog= (a DataFrame row-aligned with "
                f"the cutouts holding some of {list(CATALOG_COLUMNS)})"
            )
        if len(catalog) != n:
            raise ValueError(
                f"catalog has {len(catalog)} rows but there are {n} cutouts; align them on OBJID"
            )
        cols = [c for c in CATALOG_COLUMNS if c in catalog.columns]
        if not cols:
            raise ValueError(f"catalog has none of the AION scalar columns {list(CATALOG_COLUMNS)}")
        vals = np.column_stack([np.asarray(catalog[c], dtype=np.float64) for c in cols])
        return cols, vals

    def embed(
        self,
        cutouts: np.ndarray,
        band_mask: np.ndarray,
        *,
        batch_size: int = 32,
        progress: bool = True,
        catalog=None,
    ) -> np.ndarray:
        """Mean-pooled AION-1 encoder embeddings.

        Parameters
        ----------
        cutouts : ndarray, shape (N, 4, H, W)
            Nanomaggies per pixel, bands g, r, i, z, ``H, W >= 96`` (the centre 96 x 96 are
            used). Absent bands may hold NaN.
        band_mask : ndarray, shape (N, 4), bool
            True where the band has imaging; objects are batched by their band set.
        batch_size : int
            Objects per forward pass.
        progress : bool
            Show a progress bar.
        catalog : pandas.DataFrame, optional
            Row-aligned catalogue, used when ``include_catalog=True``; a NaN value leaves
            that scalar out for that object.

        Returns
        -------
        ndarray, shape (N, dim), float32
        """
        import torch
        from tqdm.auto import tqdm

        _, _, mods = _import_aion()
        cutouts, band_mask = validate_cutouts(cutouts, band_mask, min_size=CROP)
        n, _, h, w = cutouts.shape
        y0, x0 = (h - CROP) // 2, (w - CROP) // 2  # the codec's own CenterCrop arithmetic
        key = band_mask
        cols: list[str] = []
        vals = np.zeros((n, 0))
        if self.include_catalog:
            cols, vals = self._catalog_values(catalog, n)
            key = np.concatenate([band_mask, np.isfinite(vals)], axis=1)
        groups, inverse = np.unique(key, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        out = np.empty((n, self.dim), np.float32)
        n_batches = sum(-(-int((inverse == g).sum()) // batch_size) for g in range(len(groups)))
        bar = tqdm(
            total=n_batches, disable=None if progress else True, desc="AION embed", unit="batch"
        )
        with torch.inference_mode():
            for g, gkey in enumerate(groups):
                idx = np.flatnonzero(inverse == g)
                bands = np.flatnonzero(gkey[:4])
                use_cols = [c for c, k in zip(cols, gkey[4:]) if k]
                n_tok = N_IMAGE_TOKENS + len(use_cols)
                if self.num_encoder_tokens < n_tok:
                    raise ValueError(
                        f"num_encoder_tokens={self.num_encoder_tokens} < {n_tok} input "
                        "tokens: model.encode would drop some; raise it"
                    )
                for lo in range(0, len(idx), batch_size):
                    sel = idx[lo : lo + batch_size]
                    # Fancy indexing copies: the codec's in-place clamp cannot touch `cutouts`.
                    flux = cutouts[sel][:, bands, y0 : y0 + CROP, x0 : x0 + CROP]
                    flux = np.nan_to_num(flux, nan=0.0, posinf=0.0, neginf=0.0)
                    image = mods.LegacySurveyImage(
                        flux=torch.tensor(flux, dtype=torch.float32, device=self.device),
                        bands=[AION_BANDS[b] for b in bands],
                    )
                    inputs = [image]
                    for c in use_cols:
                        cls = getattr(mods, CATALOG_COLUMNS[c])
                        v = vals[sel, cols.index(c)]
                        inputs.append(
                            cls(value=torch.tensor(v, dtype=torch.float32, device=self.device))
                        )
                    tokens = self.codec_manager.encode(*inputs)
                    emb = self.model.encode(tokens, num_encoder_tokens=self.num_encoder_tokens)
                    if emb.shape[1] != n_tok:
                        raise RuntimeError(f"AION returned {emb.shape[1]} tokens, expected {n_tok}")
                    out[sel] = emb.float().mean(dim=1).cpu().numpy()
                    bar.update(1)
        bar.close()
        return out
