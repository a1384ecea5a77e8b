"""Image embeddings: the :class:`Embedder` protocol, AION-1 and the built-in encoder.

- :class:`Encoder` — a compact CNN pretrained self-supervised (SimCLR) on unlabelled
  cutouts; the offline default, no extra dependency.
- :class:`AIONEmbedder` — the AION-1 foundation model (``pip install 'photozsom[aion]'``,
  gated weights); :func:`aion_fingerprint` records the weights and codec you have.
- :func:`embed_to_file` / :func:`load_embeddings` — stream a cutout store into an HDF5
  embedding file keyed by OBJID (resumable), and read it back joined on OBJID;
  :func:`load_embedding_status` says, per object, which bands held bad pixels and were
  left out.
"""

from photozsom.embed.aion import AIONEmbedder, aion_fingerprint  # imports aion only when used
from photozsom.embed.base import (
    STATUS,
    Embedder,
    embed_to_file,
    load_embedding_status,
    load_embeddings,
    usable_bands,
    validate_cutouts,
)
from photozsom.embed.encoder import Encoder

__all__ = [
    "STATUS",
    "AIONEmbedder",
    "Embedder",
    "Encoder",
    "aion_fingerprint",
    "embed_to_file",
    "load_embedding_status",
    "load_embeddings",
    "usable_bands",
    "validate_cutouts",
]
