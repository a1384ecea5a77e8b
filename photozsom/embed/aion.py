"""AION-1 embeddings of Legacy Survey cutouts (optional extra ``photozsom[aion]``).

AION-1 (Parker et al. 2025; package ``polymathic-aion``) is a 4M-style encoder-decoder
transformer over discrete tokens. An image is turned into 24 x 24 = 576 tokens by the
Legacy Survey image codec; the encoder maps the tokens to vectors of the model width (768
for aion-base); photozsom mean-pools them into one embedding per object.

Where the weights come from
---------------------------
- **Model**: a Hugging Face repository id, ``"polymathic-ai/aion-base"`` (the model the
  ``polymathic-aion`` 0.0.2 package and its tutorial use; the hub also lists
  ``polymathic-ai/aion-large`` and ``polymathic-ai/aion-xlarge``), gated: accept the terms on
  the model page and log in (``hf auth login``) once; or a **local directory** holding
  ``config.json`` and ``model.safetensors``.
- **Codecs** (the tokenizers): polymathic-aion 0.0.2 always loads them from the subfolders
  ``codecs/<modality>/`` of the repository ``polymathic-ai/aion-base``, whatever the model.
  A local model directory that also holds ``codecs/`` (a full snapshot:
  ``hf download polymathic-ai/aion-base --local-dir DIR``) makes the codecs local too;
  otherwise they come from the hub or its cache. ``codecs=DIR`` names another directory.

Working offline: either pass the full snapshot directory (``AIONEmbedder("DIR")``), or
fill the Hugging Face cache once on a connected machine (``hf download
polymathic-ai/aion-base``, or one run of :class:`AIONEmbedder`) and set
``HF_HUB_OFFLINE=1`` (and ``HF_HOME`` if the cache is not in its default place) where
there is no network: the repository id then resolves from the cache, codecs included.

Checks (:meth:`AIONEmbedder.verify`, on by default): the image codec encodes and decodes a
synthetic galaxy and must reproduce it (:func:`check_image_codec`, no reference needed);
every model tensor must be in the weights file (``from_pretrained`` loads non-strictly);
the weights must not be at their random initialisation; and, when you pinned them, the
known-input fingerprint must match. :func:`aion_fingerprint` records the fingerprint of the
weights and codecs you have, to pin them on later runs.

Facts of ``polymathic-aion`` 0.0.2 this module is built on (read from its source):

- ``AION.from_pretrained("polymathic-ai/aion-base")`` (the README's bare ``"aion-base"`` is
  not a valid repository id) or a local directory; it needs ``safetensors`` and loads
  *non-strictly*: parameters missing from the file silently keep their random
  initialisation.
- ``CodecManager(device=...).encode(LegacySurveyImage(flux=[B, C, H, W], bands=[...]))``
  with flux in nanomaggies and bands named ``"DES-G", "DES-R", "DES-I", "DES-Z"``. The
  image codec centre-crops to 96 x 96 pixels (smaller inputs fail) and clamps the crop
  *in place* (the crop is a view of the input), so the embedder passes copies. A band
  is either present or missing for the codec (a per-band channel mask, no per-pixel
  mask): absent bands are left out of the band list, and so is a band holding NaN/inf
  pixels in the crop (NaN would propagate into every token).
- All objects in one ``LegacySurveyImage`` share one band list: southern objects
  (g, r, i, z) and northern objects (g, r, z) are encoded in separate batches.
- ``model.encode(tokens, num_encoder_tokens=N)`` keeps only the first ``N`` tokens, and
  ``N`` defaults to 256, which would silently drop 320 of the 576 image tokens; photozsom
  passes ``num_encoder_tokens=600`` (all image tokens plus up to 24 catalogue tokens).
- Optional catalogue scalars ``LegacySurveyFluxG/R/I/Z/W1..W4(value=flux)`` (nanomaggies)
  and ``LegacySurveyEBV(value=EBV)``, one token each.

AION-1 was pretrained on DR10-*south* (DECam) images at 0.262 arcsec/pixel; a cutout store
of another pixel scale is refused unless ``allow_pixscale`` accepts it. Northern
(BASS/MzLS) g, r, z images are fed with the same ``DES-*`` band labels; the filters and
depths differ slightly, so expect a small north/south domain shift, which the paper's SOM
cells let you measure.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

import numpy as np

from photozsom.device import default_device
from photozsom.embed.base import usable_bands, validate_cutouts
from photozsom.embed.store import PIXSCALE

__all__ = [
    "AION_BANDS",
    "CATALOG_COLUMNS",
    "CODEC_REPO",
    "REFERENCE_FINGERPRINTS",
    "AIONEmbedder",
    "aion_fingerprint",
    "check_image_codec",
    "codec_test_galaxy",
    "load_codec",
]

#: AION band names of the store's g, r, i, z axis (Legacy Survey DR10 south is DECam = DES filters).
AION_BANDS: tuple[str, ...] = ("DES-G", "DES-R", "DES-I", "DES-Z")
#: Side of the codec's centre crop, pixels (0.262 arcsec/pixel: 25.2 arcsec).
CROP: int = 96
#: Image tokens per object (24 x 24).
N_IMAGE_TOKENS: int = 576
#: The repository polymathic-aion 0.0.2 loads every codec from.
CODEC_REPO: str = "polymathic-ai/aion-base"
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
#: photozsom was built. Record yours with :func:`aion_fingerprint` and pass it (or its JSON
#: file) as ``expected_fingerprint=`` to pin the weights on every later run.
REFERENCE_FINGERPRINTS: dict[str, np.ndarray] = {}
#: Largest accepted relative reconstruction error of the codec self-check.
CODEC_MAX_ERROR: float = 0.3


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


# -- codecs ---------------------------------------------------------------------------------
def _is_local(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).expanduser().is_dir()


def load_codec(source: str | os.PathLike, modality):
    """Load the codec of one modality from a directory or a hub repository, checking it.

    Reads ``codecs/<modality.name>/config.json`` and ``model.safetensors`` (the layout of
    ``polymathic-ai/aion-base``) from a local directory, or from the hub (and its cache,
    which ``HF_HUB_OFFLINE=1`` restricts it to) for a repository id, builds the codec class
    polymathic-aion maps the modality to, and loads the weights.

    Raises
    ------
    FileNotFoundError
        The directory has no such codec.
    RuntimeError
        The weights file lacks some of the codec's tensors (they would stay random).
    """
    import safetensors.torch
    from aion.codecs.config import MODALITY_CODEC_MAPPING

    if modality not in MODALITY_CODEC_MAPPING:
        raise ValueError(f"polymathic-aion has no codec for {modality.__name__}")
    cls = MODALITY_CODEC_MAPPING[modality]
    sub = f"codecs/{modality.name}"
    if _is_local(source):
        root = Path(source).expanduser()
        cfg, weights = root / sub / "config.json", root / sub / "model.safetensors"
        if not (cfg.exists() and weights.exists()):
            raise FileNotFoundError(
                f"no {modality.__name__} codec in {root} (expected {sub}/config.json and "
                f"{sub}/model.safetensors, as in a snapshot of {CODEC_REPO}: "
                f"hf download {CODEC_REPO} --local-dir {root})"
            )
    else:
        from huggingface_hub import hf_hub_download

        cfg = Path(hf_hub_download(str(source), f"{sub}/config.json"))
        weights = Path(hf_hub_download(str(source), f"{sub}/model.safetensors"))
    config = json.loads(cfg.read_text())
    params = inspect.signature(cls.__init__).parameters
    codec = cls(**{k: v for k, v in config.items() if k in params})
    missing, _ = safetensors.torch.load_model(codec, str(weights), strict=False)
    if missing:
        raise RuntimeError(
            f"{cls.__name__} weights {weights} lack {len(missing)} of the codec's tensors (e.g. "
            f"{sorted(missing)[:3]}); they would stay random. Re-download {sub} of {CODEC_REPO}"
        )
    codec._modality = modality
    return codec.eval()


def _local_codec_manager(source, device: str):
    """A ``CodecManager`` whose codecs come from ``source`` via :func:`load_codec`."""
    _, CodecManager, _ = _import_aion()

    class LocalCodecManager(CodecManager):
        def __init__(self):
            super().__init__(device=device)
            self.source = str(source)
            self._codecs = {}

        def _load_codec(self, modality_type):
            if modality_type not in self._codecs:
                self._codecs[modality_type] = load_codec(self.source, modality_type)
            return self._codecs[modality_type]

    return LocalCodecManager()


def _codec_name(manager) -> str:
    """``ImageCodec for LegacySurveyImage from <where>``, for error messages."""
    _, _, mods = _import_aion()
    try:
        cls = type(manager._load_codec(mods.LegacySurveyImage)).__name__
    except Exception:  # noqa: BLE001 - a name for a message only
        cls = "image codec"
    where = getattr(manager, "source", None) or f"{CODEC_REPO} (Hugging Face hub or its cache)"
    return f"{cls} for LegacySurveyImage from {where}"


def codec_test_galaxy(size: int = CROP, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright, smooth synthetic galaxy for the codec self-check.

    An elliptical exponential disc (half-light radius 1.2 arcsec = 4.6 pixels, axis ratio
    0.7) with total fluxes 20, 40, 55, 70 nanomaggies in g, r, i, z (r = 18.5 AB, a
    BGS-bright galaxy; every pixel below the codec's clamp) plus Gaussian sky noise of
    0.006, 0.01, 0.015, 0.025 nanomaggies/pixel (typical DR10 depths), seeded.

    Returns
    -------
    noisy, model : ndarray, shape (1, 4, size, size), float32
        The image with and without the sky noise, nanomaggies/pixel.
    """
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    th = 0.5
    u = xx * np.cos(th) + yy * np.sin(th)
    v = (-xx * np.sin(th) + yy * np.cos(th)) / 0.7
    prof = np.exp(-1.678 * np.hypot(u, v) / 4.6)
    prof /= prof.sum()
    model = np.array([20.0, 40.0, 55.0, 70.0])[:, None, None] * prof[None]
    sky = np.array([0.006, 0.01, 0.015, 0.025])[:, None, None]
    noise = np.random.default_rng(seed).normal(size=model.shape) * sky
    return (model + noise)[None].astype(np.float32), model[None].astype(np.float32)


def check_image_codec(
    codec_manager,
    *,
    max_error: float = CODEC_MAX_ERROR,
    device: str = "cpu",
    raise_error: bool = True,
) -> dict:
    """Codec self-check that needs no reference: encode and decode a known galaxy.

    :func:`codec_test_galaxy` (noisy) goes through ``codec_manager.encode`` and
    ``decode`` twice, with bands g, r, i, z (south) and g, r, z (north). For each band the
    error is ``||decoded - model|| / ||model||`` over the pixels within 2 half-light radii
    (the galaxy; there the sky noise alone is 5-8 per cent of the signal), ``model`` being the
    noise-free galaxy. A trained codec reproduces this smooth galaxy closely; a random,
    corrupt, wrong or wrongly-scaled codec gives errors of order 1.

    Parameters
    ----------
    codec_manager : aion.codecs.CodecManager
    max_error : float
        Largest accepted error in any band.
    device : str
        Torch device of the test image.
    raise_error : bool
        Raise when the check fails (else only report it in the result).

    Returns
    -------
    dict
        ``{"south": {"g": err, ...}, "north": {...}, "flux_ratio": {...}, "max_error": ...,
        "passed": bool}`` (JSON-able); ``flux_ratio`` is decoded / true flux within the
        aperture (south).

    Raises
    ------
    RuntimeError
        Naming the codec and the errors, when a band's error exceeds ``max_error`` and
        ``raise_error`` is True.
    """
    import torch

    _, _, mods = _import_aion()
    noisy, model = codec_test_galaxy()
    yy, xx = np.mgrid[:CROP, :CROP] - (CROP - 1) / 2.0
    ap = np.hypot(xx, yy) <= 2 * 4.6
    result: dict = {"max_error": float(max_error)}
    worst = 0.0
    for name, bands in (("south", [0, 1, 2, 3]), ("north", [0, 1, 3])):
        image = mods.LegacySurveyImage(
            flux=torch.tensor(noisy[:, bands].copy(), device=device),
            bands=[AION_BANDS[b] for b in bands],
        )
        with torch.inference_mode():
            tokens = codec_manager.encode(image)
            dec = codec_manager.decode(
                tokens, mods.LegacySurveyImage, bands=[AION_BANDS[b] for b in bands]
            )
        out = dec.flux.detach().float().cpu().numpy()[0]
        truth = model[0, bands]
        if out.shape != truth.shape:
            raise RuntimeError(
                f"{_codec_name(codec_manager)} decoded the {CROP}x{CROP} test galaxy to shape "
                f"{out.shape}, not {truth.shape}: not a Legacy Survey image codec"
            )
        err = np.linalg.norm((out - truth)[:, ap], axis=1) / np.linalg.norm(truth[:, ap], axis=1)
        err = np.where(np.isfinite(err), err, np.inf)
        worst = max(worst, float(err.max()))
        # JSON-able: a non-finite error (NaN/inf decoded) is recorded as None
        result[name] = {"griz"[b]: float(e) if np.isfinite(e) else None
                        for b, e in zip(bands, err)}
        if name == "south":
            ratio = out[:, ap].sum(axis=1) / truth[:, ap].sum(axis=1)
            result["flux_ratio"] = {"griz"[b]: float(r) if np.isfinite(r) else None
                                    for b, r in zip(bands, ratio)}
    result["passed"] = bool(worst <= max_error)
    if not result["passed"] and raise_error:
        raise RuntimeError(
            f"codec self-check failed: {_codec_name(codec_manager)} reconstructs a synthetic "
            f"r = 18.5 galaxy with relative errors {_fmt(result['south'])} (g, r, i, z) and "
            f"{_fmt(result['north'])} (g, r, z), above {max_error:g}; decoded/true flux "
            f"{_fmt(result['flux_ratio'])}. The codec weights are corrupt, incomplete or not "
            f"the Legacy Survey image codec of {CODEC_REPO}: delete them from the Hugging Face "
            "cache (or the local codecs/ folder) and download them again"
        )
    return result


def _fmt(d: dict) -> str:
    return "{" + ", ".join(f"{k}: {'nan' if v is None else format(v, '.3g')}"
                           for k, v in d.items()) + "}"


def _sha256(path) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def _expected_fingerprint(expected):
    """An expected fingerprint given as an array, a dict from :func:`aion_fingerprint`, or
    the path of its JSON file."""
    if expected is None:
        return None
    if isinstance(expected, (str, os.PathLike)):
        expected = json.loads(Path(expected).read_text())
    if isinstance(expected, dict):
        if "fingerprint" not in expected:
            raise ValueError("expected_fingerprint dict has no 'fingerprint' (use aion_fingerprint)")
        expected = expected["fingerprint"]
    return np.asarray(expected, dtype=np.float64)


class AIONEmbedder:
    """Embed g, r, i, z cutouts with AION-1 (mean-pooled encoder tokens).

    Parameters
    ----------
    model : str, Path or aion.AION
        A local directory with ``config.json`` and ``model.safetensors`` (and optionally
        ``codecs/``), a Hugging Face repository id (``"polymathic-ai/aion-base"``; gated,
        needs a token or a filled cache), or an ``AION`` instance. See the module
        docstring for where the weights and codecs come from and how to work offline.
    codec_manager : aion.codecs.CodecManager, optional
        Tokenizers; overrides ``codecs``.
    num_encoder_tokens : int
        Tokens the encoder keeps; must cover all 576 image tokens plus catalogue tokens.
    device : str, optional
        Torch device; ``None`` picks CUDA when present.
    include_catalog : bool
        Also feed catalogue fluxes and E(B-V) (columns :data:`CATALOG_COLUMNS` present in
        the ``catalog`` passed to :meth:`embed`).
    codecs : str or Path, optional
        Where the codecs come from: a directory holding ``codecs/<modality>/`` or a
        repository id. Default: ``model`` when it is such a directory, else
        polymathic-aion's own loader (``polymathic-ai/aion-base`` on the hub or in its
        cache).
    verify_weights : bool
        Check that the model's weights are complete and trained (see :meth:`verify`) and
        raise ``RuntimeError`` otherwise. Only set False for a deliberately random model
        (tests).
    verify_codec : bool
        Run the codec self-check (:func:`check_image_codec`) before anything else.
    codec_max_error : float
        Largest relative reconstruction error the codec self-check accepts.
    expected_fingerprint : array_like, dict or path, optional
        Known-input fingerprint of the weights you expect: :meth:`fingerprint`'s 8
        numbers, the dict :func:`aion_fingerprint` returns, or the path of its JSON file;
        defaults to :data:`REFERENCE_FINGERPRINTS` for a repository id.
    allow_pixscale : float, optional
        Pixel scale (arcsec/pixel) other than the 0.262 AION-1 was trained on that
        :func:`~photozsom.embed.embed_to_file` should accept anyway.

    Attributes
    ----------
    dim : int
        Embedding length (the model width).
    input_size : int
        96: the centre crop the codec reads.
    pixscale : float
        0.262 arcsec/pixel, the scale of the training images.
    codec_check : dict or None
        The result of the codec self-check.

    Notes
    -----
    Cutouts must be at least 96 x 96 pixels (the centre 96 x 96 are used). A band holding
    NaN/inf pixels in that crop is left out for that object, exactly as a missing band.

    Examples
    --------
    >>> emb = AIONEmbedder("polymathic-ai/aion-base").embed(images, band_mask)  # doctest: +SKIP
    >>> emb = AIONEmbedder("/data/aion-base").embed(images, band_mask)  # doctest: +SKIP
    """

    #: Side of the centre crop the codec reads, pixels.
    input_size: int = CROP
    #: Pixel scale of AION-1's Legacy Survey training images, arcsec/pixel.
    pixscale: float = PIXSCALE

    def __init__(
        self,
        model="polymathic-ai/aion-base",
        codec_manager=None,
        num_encoder_tokens: int = 600,
        device: str | None = None,
        include_catalog: bool = False,
        *,
        codecs: str | os.PathLike | None = None,
        verify_weights: bool = True,
        verify_codec: bool = True,
        codec_max_error: float = CODEC_MAX_ERROR,
        expected_fingerprint=None,
        allow_pixscale: float | None = None,
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
        self.allow_pixscale = allow_pixscale
        source = None
        if isinstance(model, (str, os.PathLike)):
            source = str(model)
            if _is_local(source):
                source = str(Path(source).expanduser().resolve())
                if not (Path(source) / "config.json").exists():
                    raise FileNotFoundError(
                        f"{source} holds no config.json: not an AION model directory (it needs "
                        "config.json and model.safetensors, e.g. from "
                        f"hf download {CODEC_REPO} --local-dir {source})"
                    )
            elif source in ("aion-base", "aion-large", "aion-xlarge"):
                raise ValueError(
                    f"model={source!r} is neither a local directory nor a Hugging Face "
                    f"repository id; use 'polymathic-ai/{source}' or a directory path"
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
        #: Repository id or resolved directory of the weights (None for an instance).
        self.model_source = source
        self.source = source if source is not None else f"<{type(model).__name__} instance>"
        self.model = model.to(self.device).eval()
        self.dim = int(model.dim)
        if codec_manager is None:
            if codecs is None and source is not None and (Path(source) / "codecs").is_dir():
                codecs = source
            codec_manager = (
                CodecManager(device=self.device)
                if codecs is None
                else _local_codec_manager(codecs, self.device)
            )
        self.codec_manager = codec_manager
        self.codecs_source = getattr(codec_manager, "source", None) or (
            f"{CODEC_REPO} (hub/cache)" if type(codec_manager) is CodecManager else "<injected>"
        )
        if expected_fingerprint is None and source in REFERENCE_FINGERPRINTS:
            expected_fingerprint = REFERENCE_FINGERPRINTS[source]
        self.expected_fingerprint = _expected_fingerprint(expected_fingerprint)
        self.codec_max_error = float(codec_max_error)
        self.codec_check: dict | None = None
        self.weights_verified = False
        if verify_codec:
            self.codec_check = check_image_codec(
                self.codec_manager, max_error=self.codec_max_error, device=self.device
            )
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
    def _weights_file(self, source: str | None) -> Path | None:
        if source is None:
            return None
        if os.path.isdir(source):
            p = Path(source) / "model.safetensors"
            return p if p.exists() else None
        try:
            from huggingface_hub import hf_hub_download

            # cached by from_pretrained; never a download here
            return Path(hf_hub_download(source, "model.safetensors", local_files_only=True))
        except Exception:  # noqa: BLE001 - any hub failure means: cannot inspect the file
            return None

    def _codec_file(self) -> Path | None:
        _, _, mods = _import_aion()
        sub = f"codecs/{mods.LegacySurveyImage.name}/model.safetensors"
        src = getattr(self.codec_manager, "source", None)
        if src is not None and _is_local(src):
            p = Path(src).expanduser() / sub
            return p if p.exists() else None
        if self.codecs_source.startswith(CODEC_REPO) or src is not None:
            try:
                from huggingface_hub import hf_hub_download

                return Path(hf_hub_download(src or CODEC_REPO, sub, local_files_only=True))
            except Exception:  # noqa: BLE001
                return None
        return None

    def verify(self, source: str | None = None) -> None:
        """Fail loudly unless the model's weights are trained weights.

        Checks, in order (the codec self-check, :func:`check_image_codec`, runs before,
        at construction):

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
            used). Absent bands may hold NaN; a present band with NaN/inf pixels in the
            crop is left out for that object (``RuntimeWarning``).
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
            NaN rows for objects with no band free of bad pixels.
        """
        import torch
        from tqdm.auto import tqdm

        _, _, mods = _import_aion()
        cutouts, band_mask = validate_cutouts(
            cutouts, band_mask, min_size=CROP, bad_pixels="ignore"
        )
        # A band with NaN/inf pixels in the crop is left out, like a band the codec lacks.
        band_mask, _ = usable_bands(cutouts, band_mask, CROP, name="AIONEmbedder.embed")
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
        empty = ~groups[:, :4].any(axis=1)  # no band left: NaN rows, not embedded
        inverse[empty[inverse]] = -1
        out = np.full((n, self.dim), np.nan, np.float32)
        n_batches = sum(-(-int((inverse == g).sum()) // batch_size) for g in range(len(groups)))
        bar = tqdm(
            total=n_batches, disable=None if progress else True, desc="AION embed", unit="batch"
        )
        with torch.inference_mode():
            for g, gkey in enumerate(groups):
                if empty[g]:
                    continue
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


def aion_fingerprint(
    model="polymathic-ai/aion-base",
    *,
    codecs: str | os.PathLike | None = None,
    device: str | None = None,
    codec_manager=None,
    verify: bool = True,
    hash_files: bool = True,
) -> dict:
    """Record the fingerprint of the AION-1 weights and codecs you have, to pin them later.

    Loads the model as :class:`AIONEmbedder` does (with its checks, unless ``verify`` is
    False) and returns, as a JSON-able dict: the known-input fingerprint (8 numbers,
    :meth:`AIONEmbedder.fingerprint`), the codec self-check errors, the SHA-256 of the
    model and image-codec weight files when they are on disk, and the versions used. Save
    it as JSON and pass the file as ``AIONEmbedder(..., expected_fingerprint=PATH)`` on
    every later run: other weights or codecs then fail loudly.

    Parameters
    ----------
    model, codecs, device, codec_manager
        As for :class:`AIONEmbedder`.
    verify : bool
        Run the weight and codec checks first (False only for a deliberately random model).
    hash_files : bool
        Hash the weight files (about a second per GB).

    Returns
    -------
    dict
        ``format``, ``version``, ``model``, ``codecs``, ``dim``, ``num_encoder_tokens``,
        ``fingerprint`` (list of 8 float), ``codec_check``, ``files`` (name -> SHA-256 or
        None), ``polymathic_aion``, ``torch``, ``device``.

    Examples
    --------
    >>> fp = aion_fingerprint("polymathic-ai/aion-base")          # doctest: +SKIP
    >>> Path("aion-base.fingerprint.json").write_text(json.dumps(fp))  # doctest: +SKIP
    >>> AIONEmbedder("polymathic-ai/aion-base",
    ...              expected_fingerprint="aion-base.fingerprint.json")  # doctest: +SKIP
    """
    from importlib.metadata import PackageNotFoundError, version

    import torch

    emb = AIONEmbedder(
        model, codec_manager=codec_manager, device=device, codecs=codecs,
        verify_weights=verify, verify_codec=verify,
    )
    check = emb.codec_check
    if check is None:  # verify=False: run the check without failing, to record its errors
        check = check_image_codec(emb.codec_manager, device=emb.device, raise_error=False)
    files = {}
    if hash_files:
        files = {
            "model.safetensors": _sha256(emb._weights_file(emb.model_source)),
            "codecs/image/model.safetensors": _sha256(emb._codec_file()),
        }
    try:
        aion_version = version("polymathic-aion")
    except PackageNotFoundError:  # pragma: no cover
        aion_version = None
    return {
        "format": "photozsom.aion_fingerprint",
        "version": 1,
        "model": emb.source,
        "codecs": emb.codecs_source,
        "dim": emb.dim,
        "num_encoder_tokens": emb.num_encoder_tokens,
        "fingerprint": [float(x) for x in emb.fingerprint()],
        "codec_check": check,
        "files": files,
        "polymathic_aion": aion_version,
        "torch": torch.__version__,
        "device": emb.device,
    }
