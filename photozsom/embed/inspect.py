"""A look inside an embedding: principal components and their correlation with physics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from photozsom.features import magnitudes

__all__ = ["embedding_summary"]


def embedding_summary(embedding: np.ndarray, catalog: pd.DataFrame, n_components: int = 5,
                      seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Principal components of an embedding and their Spearman correlation with galaxy properties.

    Parameters
    ----------
    embedding : ndarray, shape (N, D)
    catalog : DataFrame, N rows in the same order
        DR10 columns; ``Z`` is used when present.
    n_components : int
        Number of principal components (scikit-learn PCA).

    Returns
    -------
    pcs : ndarray, shape (N, n_components)
    corr : DataFrame
        Spearman rank correlation of each component (rows) with redshift, r-band magnitude,
        g-r and r-z colour (AB mag) and log10 SHAPE_R (arcsec) (columns).
    """
    from scipy.stats import spearmanr
    from sklearn.decomposition import PCA

    embedding = np.asarray(embedding, dtype=np.float64)
    if len(embedding) != len(catalog):
        raise ValueError(f"embedding has {len(embedding)} rows but the catalogue {len(catalog)}")
    pcs = PCA(n_components=n_components, random_state=seed).fit_transform(embedding)
    m = magnitudes(catalog, ("G", "R", "Z"))
    props = {"r": m["r"].to_numpy(), "g-r": (m.g - m.r).to_numpy(), "r-z": (m.r - m.z).to_numpy(),
             "log10 SHAPE_R": np.log10(np.clip(catalog["SHAPE_R"].to_numpy(float), 1e-2, None))}
    if "Z" in catalog:
        props = {"z_spec": catalog["Z"].to_numpy(float), **props}
    corr = pd.DataFrame(
        {name: [spearmanr(pcs[:, k], v, nan_policy="omit").statistic for k in range(n_components)]
         for name, v in props.items()},
        index=[f"PC{k + 1}" for k in range(n_components)],
    )
    return pcs, corr
