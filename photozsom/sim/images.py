"""Galaxy light profiles, PSFs and image cutouts of the simulated sky.

How a cutout is made
--------------------
Each source is an elliptical Sersic profile; the PSF is a circular Moffat profile
(beta = 3.5, FWHM from the per-object, per-band seeing); the pixel is a 0.262" square.
All three are convolved *in Fourier space*, where convolution is a product:

``image_FT(k) = PSF(k) * pixel(k) * sum_s flux_s * S_{n_s}(|A_s^T k|) * exp(-2 pi i k.x_s)``

and one inverse real FFT per band gives the pixelised image of every source in the cutout
at once. This is vectorised over a batch of cutouts and all their sources (numpy only, no
loop over galaxies), and exact up to the periodic boundary, which we push out of the
cutout by rendering on a grid padded by a quarter of the cutout on each side.

- ``S_n(u)``, the Fourier transform of a unit-flux Sersic profile of half-light radius 1, is
  tabulated for n = 0.5 ... 6 from a non-negative mixture of Gaussians fitted to the profile
  (the approach of Hogg & Lang 2013, which the Tractor uses for DR10's models), so its
  transform is analytic. Profiles are softly truncated (at 4 r_e for n <= 1 up to 8 r_e for
  n >= 3.5, as in the Tractor) and the table is rescaled so that ``SHAPE_R`` is the exact
  half-light radius of the truncated model along the major axis.
- The Moffat transform is analytic: ``x^nu K_nu(x) / (2^(nu-1) Gamma(nu))`` with
  ``nu = beta - 1`` and ``x = 2 pi alpha k``.
- The pixel is ``sinc(k_x) sinc(k_y)`` (k in cycles per pixel), so pixel values are
  integrals of surface brightness over the pixel and the sum of a noiseless cutout equals
  the total flux of the sources (minus the light that falls outside it).

The same tables give the noise-equivalent area ``NEA = 1 / sum_pixels p^2`` of a PSF and of
a PSF-convolved galaxy, which sets both the per-pixel sky noise of a cutout (from the
5-sigma point-source depth) and the catalogue ``FLUX_IVAR`` (optimal, profile-weighted
photometry, as the Tractor does): catalogue and pixels are consistent by construction.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import optimize, special
from scipy.interpolate import RegularGridInterpolator

__all__ = [
    "MOFFAT_BETA",
    "PIXSCALE",
    "add_noise",
    "aperture_fraction",
    "moffat_ft",
    "nea_ratio",
    "psf_nea",
    "render_batch",
    "sersic_b",
    "sersic_ft",
]


def _bilinear(n_vals: np.ndarray, x_vals: np.ndarray, table: np.ndarray, n, x) -> np.ndarray:
    """Bilinear interpolation of ``table[n_vals, x_vals]`` at (n, x), already clipped to the grid."""
    n, x = np.broadcast_arrays(n, x)
    interp = RegularGridInterpolator((n_vals, x_vals), table, method="linear")
    return interp(np.stack([n.ravel(), x.ravel()], axis=-1)).reshape(n.shape)


#: Legacy Survey pixel scale, arcsec per pixel.
PIXSCALE: float = 0.262
#: Moffat index of the PSF (typical of DECam/BASS/MzLS PSF fits).
MOFFAT_BETA: float = 3.5

_N_GRID = np.round(np.arange(0.5, 6.0001, 0.1), 4)
_U0 = 0.05
_T_MAX = float(np.log1p(400.0 / _U0))
_NT = 3072
_DT = _T_MAX / (_NT - 1)


def sersic_b(n: np.ndarray) -> np.ndarray:
    """Sersic b_n such that r_e encloses half the (untruncated) light: P(2n, b_n) = 1/2."""
    n = np.asarray(n, dtype=np.float64)
    return special.gammaincinv(2 * n, 0.5)


def _truncation_radius(n: float) -> float:
    return float(np.clip(4.0 + 1.6 * (n - 1.0), 4.0, 8.0))


def _fit_mog(n: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative Gaussian mixture of a softly truncated Sersic profile (unit half-light radius).

    Returns amplitudes (sum 1) and variances (in units of the half-light radius squared).
    """
    rt = _truncation_radius(n)
    r = np.geomspace(1e-4, rt * 1.05, 1500)
    prof = np.exp(-sersic_b(n) * (r ** (1.0 / n) - 1.0))
    x = np.clip((r - 0.75 * rt) / (0.25 * rt), 0.0, 1.0)
    prof = prof * (1.0 - (3 * x**2 - 2 * x**3))
    sig = np.geomspace(2e-4 if n > 1.5 else 2e-3, 1.2 * rt, 44)
    v = sig**2
    basis = np.exp(-0.5 * r[:, None] ** 2 / v[None, :]) / (2 * np.pi * v[None, :])
    # weight: relative accuracy of the light per log radius (r^2 I(r) d ln r)
    w = r**2 / np.max(r**2 * prof)
    amp, _ = optimize.nnls(basis * w[:, None], prof * w, maxiter=5000)
    keep = amp > 0
    amp, v = amp[keep], v[keep]
    amp = amp / amp.sum()
    # rescale so that the half-light radius of the mixture is exactly 1
    enclosed = lambda R: np.sum(amp * (1 - np.exp(-0.5 * R**2 / v))) - 0.5
    rh = optimize.brentq(enclosed, 1e-4, 50.0)
    return amp, v / rh**2


@functools.lru_cache(maxsize=1)
def _sersic_table() -> np.ndarray:
    """``S_n(u)`` on (n grid, u grid): float32 (N_n, N_t)."""
    u = _U0 * np.expm1(np.arange(_NT) * _DT)
    table = np.empty((_N_GRID.size, _NT))
    for i, n in enumerate(_N_GRID):
        amp, v = _fit_mog(float(n))
        table[i] = np.exp(-2 * np.pi**2 * np.outer(u**2, v)) @ amp
    table[:, -1] = 0.0
    return table.astype(np.float32)


def _mog(n: float) -> tuple[np.ndarray, np.ndarray]:
    return _fit_mog(float(n))


def sersic_ft(n: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Fourier transform of a unit-flux Sersic profile with half-light radius 1.

    Parameters
    ----------
    n : ndarray
        Sersic index (clipped to [0.5, 6]); broadcast against ``u``.
    u : ndarray
        Spatial frequency times the half-light radius (cycles per half-light radius), >= 0.

    Returns
    -------
    ndarray (float32)
        ``S_n(u)``, with ``S_n(0) = 1``; linear interpolation of the table in n and in
        ``log(1 + u / 0.05)``.
    """
    table = _sersic_table()
    n = np.clip(np.asarray(n, np.float32), _N_GRID[0], _N_GRID[-1])
    fn = (n - np.float32(_N_GRID[0])) / np.float32(0.1)
    i_n = np.minimum(fn.astype(np.intp), _N_GRID.size - 2)
    w_n = fn - i_n
    ft = np.log1p(np.asarray(u, np.float32) / np.float32(_U0)) / np.float32(_DT)
    i_t = np.minimum(ft.astype(np.intp), _NT - 2)
    w_t = np.minimum(ft - i_t, np.float32(1.0))
    lo = table[i_n, i_t] * (1 - w_t) + table[i_n, i_t + 1] * w_t
    hi = table[i_n + 1, i_t] * (1 - w_t) + table[i_n + 1, i_t + 1] * w_t
    return lo * (1 - w_n) + hi * w_n


def _moffat_alpha(fwhm: np.ndarray, beta: float = MOFFAT_BETA) -> np.ndarray:
    return np.asarray(fwhm, np.float64) / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


_Y_MAX = 12.0
_NY = 6000


@functools.lru_cache(maxsize=2)
def _moffat_table(beta: float = MOFFAT_BETA) -> np.ndarray:
    y = np.linspace(0.0, _Y_MAX, _NY)  # cycles per FWHM
    nu = beta - 1.0
    x = 2 * np.pi * y / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    with np.errstate(invalid="ignore", over="ignore"):
        f = x**nu * special.kv(nu, x) / (2 ** (nu - 1) * special.gamma(nu))
    f[0] = 1.0
    f[-1] = 0.0
    return f.astype(np.float32)


def moffat_ft(k: np.ndarray, fwhm: np.ndarray, beta: float = MOFFAT_BETA) -> np.ndarray:
    """Fourier transform of a unit-flux circular Moffat PSF.

    Parameters
    ----------
    k : ndarray
        Spatial frequency, cycles per unit length (the unit of ``fwhm``).
    fwhm : ndarray
        Full width at half maximum, same unit; broadcast against ``k``.
    beta : float
        Moffat index.

    Returns
    -------
    ndarray (float32)
        ``P(k)`` with ``P(0) = 1``.
    """
    table = _moffat_table(beta)
    y = np.asarray(k, np.float32) * np.asarray(fwhm, np.float32) * np.float32((_NY - 1) / _Y_MAX)
    i = np.minimum(y.astype(np.intp), _NY - 2)
    w = np.minimum(y - i, np.float32(1.0))
    return table[i] * (1 - w) + table[i + 1] * w


def _kgrid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ky[:, None], kx[None, :]) in cycles per pixel for an rfft2 of an n x n image."""
    return np.fft.fftfreq(n)[:, None].astype(np.float32), np.fft.rfftfreq(n)[None, :].astype(np.float32)


def _rfft_weights(n: int) -> np.ndarray:
    """Multiplicity of each rfft2 column in the full spectrum (for Parseval sums)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


def _nea_from_ft(ft: np.ndarray, n: int) -> np.ndarray:
    """1 / sum(p^2) of the pixelised image whose rfft2 is ``ft`` (..., n, n//2+1); Parseval."""
    power = (np.abs(ft) ** 2 * _rfft_weights(n)).sum(axis=(-2, -1)) / n**2
    return 1.0 / power


@functools.lru_cache(maxsize=1)
def _psf_nea_table() -> tuple[np.ndarray, np.ndarray]:
    fwhm_pix = np.linspace(1.5, 16.0, 59)
    n = 128
    ky, kx = _kgrid(n)
    kk = np.sqrt(kx**2 + ky**2)
    pix = np.sinc(kx) * np.sinc(ky)
    ft = moffat_ft(kk[None], fwhm_pix[:, None, None]) * pix[None]
    return fwhm_pix, _nea_from_ft(ft.astype(np.float64), n)


def psf_nea(fwhm_arcsec: np.ndarray, pixscale: float = PIXSCALE) -> np.ndarray:
    """Noise-equivalent area of the pixelised Moffat PSF, in pixels.

    ``NEA = 1 / sum_i p_i^2`` for the PSF image p normalised to unit sum (source centred
    on a pixel). The 1-sigma flux error of optimal PSF photometry on sky noise ``sigma_pix``
    per pixel is ``sigma_pix * sqrt(NEA)``.

    Parameters
    ----------
    fwhm_arcsec : ndarray
        Seeing FWHM, arcsec (0.4"-4" supported).
    pixscale : float
        arcsec per pixel.
    """
    f, nea = _psf_nea_table()
    return np.interp(np.asarray(fwhm_arcsec) / pixscale, f, nea)


@functools.lru_cache(maxsize=1)
def _nea_ratio_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NEA(galaxy (x) PSF) / NEA(PSF) on (n, rho = r_half / FWHM), continuum (no pixel)."""
    n_vals = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0])
    rho = np.concatenate([[0.0], np.geomspace(0.01, 30.0, 80)])
    y = np.linspace(0.0, 6.0, 3000)  # cycles per FWHM
    psf2 = moffat_ft(y, 1.0).astype(np.float64) ** 2
    base = np.trapezoid(psf2 * 2 * np.pi * y, y)
    out = np.empty((n_vals.size, rho.size))
    for i, n in enumerate(n_vals):
        s = sersic_ft(np.full((rho.size, y.size), n), rho[:, None] * y[None, :]).astype(np.float64)
        out[i] = base / np.trapezoid(s**2 * psf2 * 2 * np.pi * y, y, axis=1)
    return n_vals, rho, out


def nea_ratio(n: np.ndarray, r_half: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """How much larger a galaxy's noise-equivalent area is than the PSF's.

    Parameters
    ----------
    n : ndarray
        Sersic index.
    r_half : ndarray
        Circularised half-light radius ``SHAPE_R * sqrt(q)``, arcsec (0 for a point source).
    fwhm : ndarray
        Seeing FWHM, arcsec.

    Returns
    -------
    ndarray
        ``NEA_gal / NEA_psf`` (>= 1), so that ``sigma_flux = sigma_psf_flux * sqrt(ratio)``.
    """
    n_vals, rho, tab = _nea_ratio_table()
    n = np.clip(np.asarray(n, np.float64), n_vals[0], n_vals[-1])
    x = np.clip(np.asarray(r_half, np.float64) / np.asarray(fwhm, np.float64), 0, rho[-1])
    return _bilinear(n_vals, rho, tab, n, x)


@functools.lru_cache(maxsize=4)
def _aperture_table(radius: float, seeing: float):
    n_vals = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0])
    r_half = np.concatenate([[0.0], np.geomspace(0.01, 60.0, 90)])
    k = np.linspace(1e-6, 25.0 / seeing, 8000)  # cycles per arcsec
    # enclosed flux within R of a circular profile: 2 pi R int F(k) J1(2 pi k R) dk
    kern = 2 * np.pi * radius * special.j1(2 * np.pi * k * radius)
    gauss = np.exp(-2 * np.pi**2 * (seeing / 2.3548) ** 2 * k**2)
    out = np.empty((n_vals.size, r_half.size))
    for i, n in enumerate(n_vals):
        s = sersic_ft(np.full((r_half.size, k.size), n), r_half[:, None] * k[None, :]).astype(np.float64)
        out[i] = np.trapezoid(s * gauss * kern, k, axis=1)
    return n_vals, r_half, np.clip(out, 0.0, 1.0)


def aperture_fraction(n: np.ndarray, r_half: np.ndarray, radius: float = 0.75,
                      seeing: float = 1.0) -> np.ndarray:
    """Fraction of a galaxy's light inside a circular aperture (e.g. a DESI fibre).

    Parameters
    ----------
    n : ndarray
        Sersic index.
    r_half : ndarray
        Circularised half-light radius, arcsec.
    radius : float
        Aperture radius, arcsec (DESI fibre: 0.75", the definition of ``FIBERFLUX``).
    seeing : float
        FWHM of the Gaussian seeing, arcsec (DESI ``FIBERFLUX`` assumes 1").

    Returns
    -------
    ndarray
        Fraction in [0, 1].
    """
    n_vals, rh, tab = _aperture_table(float(radius), float(seeing))
    n = np.clip(np.asarray(n, np.float64), n_vals[0], n_vals[-1])
    x = np.clip(np.asarray(r_half, np.float64), 0, rh[-1])
    return _bilinear(n_vals, rh, tab, n, x)


def render_batch(size: int, cutout_of: np.ndarray, x: np.ndarray, y: np.ndarray,
                 flux: np.ndarray, n: np.ndarray, r_half: np.ndarray, q: np.ndarray,
                 phi: np.ndarray, fwhm: np.ndarray, pixscale: float = PIXSCALE,
                 pad: int | None = None) -> np.ndarray:
    """Render noiseless cutouts of many sources at once (one inverse FFT per cutout band).

    Parameters
    ----------
    size : int
        Cutout side, pixels.
    cutout_of : ndarray, shape (S,), int
        Index in [0, B) of the cutout each source belongs to, sorted ascending; every
        cutout must own at least one source.
    x, y : ndarray, shape (S,)
        Source centre, pixels, in the cutout frame (pixel centres at 0 ... size-1).
    flux : ndarray, shape (S, NB)
        Total flux per band, nanomaggies (NaN allowed: the band renders as NaN).
    n, r_half, q, phi : ndarray, shape (S,)
        Sersic index, half-light radius along the major axis (arcsec, 0 = point source),
        axis ratio (0, 1], position angle (radian, counter-clockwise from +x).
    fwhm : ndarray, shape (B, NB)
        Moffat PSF FWHM of each cutout and band, arcsec.
    pixscale : float
        arcsec per pixel.
    pad : int, optional
        Padding on each side against the periodic boundary (default ``max(8, size // 4)``).

    Returns
    -------
    ndarray, shape (B, NB, size, size), float32
        Surface brightness, nanomaggies per pixel.
    """
    cutout_of = np.asarray(cutout_of)
    flux = np.asarray(flux, np.float32)
    n_b = flux.shape[1]
    n_cut = fwhm.shape[0]
    if np.any(np.diff(cutout_of) < 0):
        raise ValueError("cutout_of must be sorted ascending")
    starts = np.searchsorted(cutout_of, np.arange(n_cut))
    if np.any(np.bincount(cutout_of, minlength=n_cut) == 0):
        raise ValueError("every cutout needs at least one source")
    pad = max(8, size // 4) if pad is None else int(pad)
    npix = size + 2 * pad
    ky, kx = _kgrid(npix)  # cycles / pixel
    # shape matrix of each source in pixels^2: M = R diag(a^2, b^2) R^T
    a = np.asarray(r_half, np.float32) / np.float32(pixscale)
    b = a * np.asarray(q, np.float32)
    c, s = np.cos(phi).astype(np.float32), np.sin(phi).astype(np.float32)
    m11 = a**2 * c**2 + b**2 * s**2
    m22 = a**2 * s**2 + b**2 * c**2
    m12 = (a**2 - b**2) * s * c
    u = np.sqrt(kx[None] ** 2 * m11[:, None, None] + 2 * kx[None] * ky[None] * m12[:, None, None]
                + ky[None] ** 2 * m22[:, None, None])
    prof = sersic_ft(np.broadcast_to(np.asarray(n, np.float32)[:, None, None], u.shape), u)
    # phase: exp(-2 pi i (kx x + ky y)), separable
    xs = np.asarray(x, np.float64) + pad
    ys = np.asarray(y, np.float64) + pad
    ex = np.exp(-2j * np.pi * np.outer(xs, kx[0])).astype(np.complex64)   # (S, NX)
    ey = np.exp(-2j * np.pi * np.outer(ys, ky[:, 0])).astype(np.complex64)  # (S, NY)
    base = prof * (ey[:, :, None] * ex[:, None, :])  # (S, NY, NX)
    pix = (np.sinc(kx) * np.sinc(ky)).astype(np.float32)
    kk = np.sqrt(kx**2 + ky**2) / np.float32(pixscale)  # cycles / arcsec
    out = np.empty((n_cut, n_b, size, size), np.float32)
    for ib in range(n_b):
        fb = np.nan_to_num(flux[:, ib], nan=0.0)
        summed = np.add.reduceat(base * fb[:, None, None], starts, axis=0)  # (B, NY, NX)
        psf = moffat_ft(kk[None], np.nan_to_num(fwhm[:, ib], nan=1.0)[:, None, None])
        img = np.fft.irfft2(summed * (psf * pix[None]), s=(npix, npix), axes=(-2, -1))
        out[:, ib] = img[:, pad:pad + size, pad:pad + size]
        bad = np.add.reduceat(np.isnan(flux[:, ib]).astype(np.int64), starts) > 0
        out[bad, ib] = np.nan
    return out


def add_noise(rng: np.random.Generator, image: np.ndarray, sigma_sky: np.ndarray,
              gain: np.ndarray) -> np.ndarray:
    """Noisy cutouts: sky noise plus the photon (Poisson) noise of the sources.

    Each pixel gets Gaussian noise of variance ``sigma_sky^2 + max(image, 0) / gain``: the sky
    term of the stacked exposures and the source's own photon noise in its Gaussian limit
    (the sources of a cutout collect tens to thousands of electrons per pixel).

    Parameters
    ----------
    rng : numpy.random.Generator
    image : ndarray, shape (B, NB, H, W), float32
        Noiseless surface brightness above the sky, nanomaggies per pixel.
    sigma_sky : ndarray, shape (B, NB)
        Sky noise per pixel, nanomaggies.
    gain : ndarray, shape (B, NB)
        Photo-electrons per nanomaggy (:func:`photozsom.sim.photometry.electrons_per_nanomaggy`).

    Returns
    -------
    ndarray, shape (B, NB, H, W), float32
        ``image`` plus noise (a new array; NaN bands stay NaN).
    """
    sig = np.nan_to_num(np.asarray(sigma_sky, np.float32))[:, :, None, None]
    inv_gain = np.nan_to_num(1.0 / np.asarray(gain, np.float32), nan=0.0, posinf=0.0)[:, :, None, None]
    var = sig**2 + np.clip(image, 0.0, None) * inv_gain
    return image + np.sqrt(var) * rng.standard_normal(image.shape, dtype=np.float32)
