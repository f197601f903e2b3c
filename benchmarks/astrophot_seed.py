"""AstroPhot side of the joint three-image Sersic benchmark (``benchmarks/joint.py``).

Run with the AstroPhot venv (``benchmarks/setup_astrophot_venv.sh`` makes it) after
writing the data with the bayesprof venv::

    .venv/bin/python benchmarks/seed_data.py
    benchmarks/.venv-astrophot/bin/python benchmarks/astrophot_seed.py

The last stdout line is one JSON object (versions, lm_time_s, lm_iterations, lm_params,
lm_sigmas, hmc_time_s, hmc_num_samples, ess_min, ess_min_per_s, hmc_means, hmc_stds, notes,
and more).  This script does not import bayesprof: everything comes from the npz.

What is done
------------
* One AstroPhot ``TargetImage`` per image (r, W1, NUV) with its own pixel scale, zeropoint,
  variance map and a Gaussian PSF image, all on one tangent plane (see below), in a
  ``TargetImageList``.
* One ``"sersic galaxy model"`` per image, PSF-convolved, with ``center``, ``q``, ``PA``,
  ``n`` and ``Re`` of the W1 and NUV models pointing at those of the r model (AstroPhot 0.18's
  way of tying parameters: ``model_W1[p].value = model_r[p]``, as in its JointModels
  tutorial); every model keeps its own ``Ie``.  They form one ``"group model"``: 9 free
  parameters (centre x, y, q, PA, n, Re, Ie_r, Ie_W1, Ie_NUV).
* LM: ``ap.fit.LM(model, initial_state=x0, verbose=0).fit()`` run twice from the same
  initial state x0 (a perturbed truth, printed in ``notes``); the wall time of the second
  (warm) call is reported.  The timed call is exactly what a user writes: it includes the
  optimizer's set-up, the iterations and the default uncertainty update (one more Jacobian
  and the covariance).
* HMC: ``ap.fit.HMC`` (Pyro's HMC kernel, AstroPhot's only gradient sampler; it has no NUTS)
  started at the LM optimum, with the inverse mass matrix set to the LM covariance, a fixed
  step size ``epsilon`` and ``leapfrog_steps`` leapfrog steps: the recipe of AstroPhot's
  FittingMethods tutorial.  With a given mass matrix AstroPhot adapts nothing (no step size,
  no mass matrix), so the warm-up steps are only discarded burn-in; there is no compile phase
  (``jit_compile=False``, AstroPhot's default).  ``hmc_time_s`` is the wall time of the
  post-warm-up sampling phase alone, measured with a Pyro ``hook_fn`` that timestamps every
  step; ``hmc_total_time_s`` is the whole ``fit()`` call.  ESS is computed on the post-warm-up
  draws.
* Step size: the tutorial uses ``epsilon=0.1`` with 10 leapfrog steps (AstroPhot's default
  count), a trajectory of length 1 in units of the LM covariance.  We use ``epsilon=0.15``
  (trajectory 1.5, close to pi/2, where fixed-length HMC on a Gaussian posterior whitened by
  its covariance gives nearly independent draws), tuned once so that AstroPhot is not
  under-sold; acceptance is ~0.99.  Measured on seed 0 (300 draws, 1 thread, busy 2-core
  machine): epsilon 0.10 x 10 steps -> ESS_min/s ~0.6; 0.15 x 10 -> ~2.1; 0.3 x 5 -> ~3.4 (same
  trajectory length, half the gradients).  Pass ``--epsilon/--leapfrog`` to change it.
* Threads: torch runs with ONE intra-op thread by default (``--threads``).  On this shared
  2-core machine torch's default (2 threads) was 10x slower for LM (6.5 s vs 0.68 s) and 50x
  slower per likelihood gradient (1.7 s vs 0.034 s) whenever another process held a core:
  its spinning worker threads oversubscribe the CPUs.  ``--threads 0`` keeps torch's default.

ESS
---
``ess_bulk``: rank-normalised split-chain ESS (Vehtari et al. 2021, Stan/ArviZ "bulk ESS"),
with Geyer's initial monotone sequence estimator, implemented below with numpy.  ``ess_basic``:
the same estimator without rank normalisation or splitting (what ``numpyro.diagnostics``
/ ``pyro.ops.stats.effective_sample_size`` give for one chain); cross-checked against Pyro's.
``ess_min`` is the minimum bulk ESS over the parameters reported (the 9 physical ones).

Conventions and conversions (AstroPhot 0.18 -> bayesprof)
---------------------------------------------------------
* Images: the npz arrays are ``data[y, x]`` (numpy order); ``TargetImage(data=...)`` takes
  the same order (it stores the transpose internally and indexes pixels as (i, j) = (x, y)).
* Tangent plane: every image gets ``crpix = ((N-1)/2, (N-1)/2)`` (0-indexed pixel (i, j),
  AstroPhot's crpix is 0-indexed) and ``crtan = (0, 0)``, so the array centre of every image
  is the plane origin, which is bayesprof's reference point.  The CD matrix is
  ``diag(pixelscale, pixelscale)`` (AstroPhot's ``pixelscale=`` default), so the plane's +x
  is the image +x, which is WEST in these north-up, east-left images, and +y is north.
  Hence ``xi = -center_x`` (bayesprof's xi is positive to the east) and ``eta = center_y``.
* PA: AstroPhot rotates by ``-PA + pi/2`` and puts the major axis along the rotated x, so the
  major axis points along ``(-sin PA, cos PA)`` on the plane: 0 along +y (north), increasing
  towards -x (east).  With +x = west that is exactly east of north, so
  ``pa_deg = degrees(PA) mod 180`` (AstroPhot keeps PA in [0, pi)).
* Re: AstroPhot's radius is ``R = sqrt(x'^2 + (y'/q)^2)`` with x' along the major axis, so
  ``Re`` is the semi-major-axis half-light radius, in arcsec: same as bayesprof's ``re``.
* Brightness: ``Ie`` is the surface brightness at Re in image counts per arcsec^2.  The
  total counts of that profile are ``F = 2 pi q n Re^2 Ie exp(b) Gamma(2n) / b^(2n)``
  (the ``q`` because the ellipse of semi-major R has area ``pi q R^2``), with AstroPhot's own
  ``b(n)`` series (AstroPhot's ``sersic_n_to_b``), and
  ``flux_uJy = F * 10**(-0.4 (zeropoint - 23.9))``.  The initial ``Ie`` is made from the
  initial flux with the inverse formula.
* Uncertainties: ``lm_sigmas`` propagate AstroPhot's LM covariance (``LM.covariance_matrix``,
  the inverse of J^T W J at the optimum; its diagonal is what AstroPhot stores as each
  parameter's ``uncertainty``) through the conversion above with a numerical Jacobian.
* PSF: ``--psf-sampling center`` (default) gives each image a normalised Gaussian kernel
  sampled at pixel centres (AstroPhot's ``gaussian_psf(..., upsample=1)``): AstroPhot
  already integrates the galaxy over each pixel before convolving, so a pixel-averaged
  kernel (AstroPhot's default ``upsample=4`` average) would apply the pixel response twice
  and bias n/Re, notably in W1 (2.75" pixels, 6.1" FWHM).  ``--psf-sampling pixel`` gives the
  tutorial's pixel-averaged kernels.  Kernel widths: odd, about +-5 sigma
  (``--psf-width tutorial`` uses the tutorial's 51/21/21 pixels).
* Sampling: AstroPhot's defaults (``sampling_mode="auto"``: midpoint for the 240x240 r image,
  Simpson's rule for W1 and NUV; ``integrate_mode="bright"``: the brightest 5 % of pixels
  refined by recursive quadrature).
* No sky model (the simulation has no sky), Gaussian likelihood, float64, CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / ".cache" / "seed_scene.npz"
AB_ZP_UJY = 23.9


# ----------------------------------------------------------------------------- ESS
def _autocorr(x: np.ndarray) -> np.ndarray:
    """Autocorrelation (biased, normalised to rho_0 = 1) of each row of x (chains, draws)."""
    n = x.shape[-1]
    x = x - x.mean(axis=-1, keepdims=True)
    nfft = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, nfft, axis=-1)
    ac = np.fft.irfft(f * np.conj(f), nfft, axis=-1)[..., :n]
    return ac / np.maximum(ac[..., :1], 1e-300)


def ess_geyer(chains: np.ndarray) -> float:
    """Stan's multi-chain ESS with Geyer's initial monotone sequence.

    ``chains``: (num_chains, num_draws).  Same estimator as numpyro/pyro's
    ``effective_sample_size`` (Stan reference manual, "Effective sample size").
    """
    chains = np.asarray(chains, dtype=float)
    m, n = chains.shape
    if n < 4:
        return float("nan")
    acov = _autocorr(chains) * chains.var(axis=-1, keepdims=True)  # biased autocovariance per chain
    mean_var = acov[:, 0].mean() * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus += chains.mean(axis=-1).var(ddof=1)
    if var_plus <= 0:
        return float("nan")
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # Geyer: sums of adjacent pairs, truncated at the first negative pair, made monotone.
    npairs = n // 2
    pairs = rho[: 2 * npairs].reshape(npairs, 2).sum(axis=1)
    neg = np.nonzero(pairs < 0)[0]
    k = neg[0] if len(neg) else npairs
    pairs = np.minimum.accumulate(pairs[:k]) if k > 0 else pairs[:0]
    tau = -1.0 + 2.0 * pairs.sum()
    tau = max(tau, 1.0 / np.log10(m * n))  # Stan's safeguard against antithetic blow-up
    return float(m * n / tau)


def _rank_normalise(chains: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri
    from scipy.stats import rankdata

    flat = chains.ravel()
    r = rankdata(flat, method="average").reshape(chains.shape)
    return ndtri((r - 3.0 / 8.0) / (flat.size + 0.25))


def ess_bulk(draws: np.ndarray) -> float:
    """Bulk ESS (rank-normalised, split chain) of one chain of draws (num_draws,)."""
    draws = np.asarray(draws, dtype=float)
    half = draws.size // 2
    split = np.stack([draws[:half], draws[draws.size - half:]])
    return ess_geyer(_rank_normalise(split))


# ----------------------------------------------------------------------------- helpers
def sersic_b(n):
    """AstroPhot's b(n) series (astrophot.models.func.sersic.sersic_n_to_b)."""
    x = 1.0 / n
    return 2 * n - 1 / 3 + x * (4 / 405 + x * (46 / 25515 + x * (131 / 1148175 - 2194697 / 30690717750 * x)))


def sersic_total_over_ie(n, re, q):
    """Total counts of AstroPhot's Sersic divided by Ie."""
    b = sersic_b(n)
    return 2 * math.pi * q * n * re ** 2 * math.exp(b) * math.gamma(2 * n) / b ** (2 * n)


def counts_per_ujy(zp):
    return 10.0 ** (0.4 * (zp - AB_ZP_UJY))


def gaussian_kernel(fwhm, pixel_scale, width, sampling):
    from astrophot.utils.initialize import gaussian_psf

    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return gaussian_psf(sigma, width, pixel_scale, upsample=1 if sampling == "center" else 4)


def psf_width(fwhm, pixel_scale, name, mode):
    if mode == "tutorial":
        return {"r": 51, "W1": 21, "NUV": 21}[name]
    sigma_px = fwhm / 2.3548 / pixel_scale
    half = max(2, int(math.ceil(5.0 * sigma_px)))
    return 2 * half + 1


def convert_cov(transform, x, cov):
    """The covariance ``cov`` of AstroPhot's parameters ``x`` carried to ``transform(x)`` (bayesprof's
    conventions) through a central-difference Jacobian."""
    x = np.asarray(x, dtype=float)
    J = np.zeros((len(transform(x)), len(x)))
    for j in range(len(x)):
        h = 1e-6 * max(abs(x[j]), 1e-3)
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        J[:, j] = (transform(xp) - transform(xm)) / (2 * h)
    return J @ cov @ J.T


def load_scene(path):
    d = np.load(path, allow_pickle=False)
    names = [str(n) for n in d["names"]]
    images = {}
    for n in names:
        images[n] = dict(data=d[f"{n}_data"], variance=d[f"{n}_variance"], pixel_scale=float(d[f"{n}_pixel_scale"]),
                         psf_fwhm=float(d[f"{n}_psf_fwhm"]), zeropoint=float(d[f"{n}_zeropoint"]))
    truth = {str(k): float(v) for k, v in zip(d["truth_keys"], d["truth_values"])}
    return names, images, truth


# ----------------------------------------------------------------------------- main
def main(argv=None):
    ap_ = argparse.ArgumentParser(description="AstroPhot LM + HMC on the seed scene")
    ap_.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap_.add_argument("--warmup", type=int, default=20, help="discarded HMC steps (no adaptation, see docstring)")
    ap_.add_argument("--samples", type=int, default=300)
    ap_.add_argument("--epsilon", type=float, default=0.15,
                     help="HMC step size, in units of the LM covariance (tutorial: 0.1; see docstring)")
    ap_.add_argument("--leapfrog", type=int, default=10)
    ap_.add_argument("--psf-sampling", choices=("center", "pixel"), default="center")
    ap_.add_argument("--psf-width", choices=("5sigma", "tutorial"), default="5sigma")
    ap_.add_argument("--sampling-mode", default="auto", help="AstroPhot sampling_mode (default auto)")
    ap_.add_argument("--integrate-mode", default="bright", help="AstroPhot integrate_mode (default bright)")
    ap_.add_argument("--seed", type=int, default=0)
    ap_.add_argument("--threads", type=int, default=1,
                     help="torch intra-op threads (default 1; 0: torch's default, see docstring)")
    ap_.add_argument("--skip-hmc", action="store_true")
    args = ap_.parse_args(argv)

    if not args.data.exists():
        sys.exit(f"{args.data} not found: run `.venv/bin/python benchmarks/seed_data.py` first")

    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    # AstroPhot's config calls logging.basicConfig(filename="AstroPhot.log") on import, which would
    # drop a log file in the working directory; a root handler installed first makes that a no-op.
    logging.getLogger().addHandler(logging.NullHandler())
    import astrophot as ap
    import pyro

    ap.config.set_logging_output(stdout=False)  # keep stdout for our report
    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    np.random.seed(args.seed)

    import importlib.metadata as md
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "astrophot": ap.__version__,
                "pyro-ppl": pyro.__version__, "caskade": md.version("caskade"), "numpy": np.__version__,
                "torch_threads": torch.get_num_threads()}

    names, images, truth = load_scene(args.data)
    t_setup = time.perf_counter()

    # ---- targets
    targets = {}
    for n in names:
        im = images[n]
        ny, nx = im["data"].shape
        width = psf_width(im["psf_fwhm"], im["pixel_scale"], n, args.psf_width)
        psf = ap.PSFImage(data=gaussian_kernel(im["psf_fwhm"], im["pixel_scale"], width, args.psf_sampling))
        targets[n] = ap.TargetImage(data=im["data"], variance=im["variance"], pixelscale=im["pixel_scale"],
                                    zeropoint=im["zeropoint"], crpix=((nx - 1) / 2.0, (ny - 1) / 2.0),
                                    crtan=(0.0, 0.0), psf=psf, name=n)
    target_list = ap.TargetImageList([targets[n] for n in names])

    # ---- initial guess: perturbed truth
    init = {"n": 2.0, "re": 5.0, "q": 0.7, "pa": 30.0, "xi": truth["gal.xi"] + 0.3, "eta": truth["gal.eta"] + 0.3,
            "flux_factor": 0.8}
    init_flux = {n: init["flux_factor"] * truth[f"gal.flux[{n}]"] for n in names}

    def ie_from_flux(flux_ujy, zp):
        return flux_ujy * counts_per_ujy(zp) / sersic_total_over_ie(init["n"], init["re"], init["q"])

    models = {}
    ref = names[0]
    models[ref] = ap.Model(name=f"sersic_{ref}", model_type="sersic galaxy model", target=targets[ref],
                           center=[-init["xi"], init["eta"]], q=init["q"], PA=math.radians(init["pa"]),
                           n=init["n"], Re=init["re"], Ie=ie_from_flux(init_flux[ref], images[ref]["zeropoint"]),
                           psf_convolve=True, sampling_mode=args.sampling_mode, integrate_mode=args.integrate_mode)
    for n in names[1:]:
        models[n] = ap.Model(name=f"sersic_{n}", model_type="sersic galaxy model", target=targets[n],
                             Ie=ie_from_flux(init_flux[n], images[n]["zeropoint"]), psf_convolve=True,
                             sampling_mode=args.sampling_mode, integrate_mode=args.integrate_mode)
        for p in ("center", "q", "PA", "n", "Re"):
            models[n][p].value = models[ref][p]
    joint = ap.Model(name="seed_joint", model_type="group model", models=[models[n] for n in names],
                     target=target_list)
    joint.initialize()  # every parameter is already set, so this changes nothing
    setup_s = time.perf_counter() - t_setup

    # ---- parameter bookkeeping: position of each physical parameter in the flat array
    dyn = list(joint.dynamic_params)
    offsets, k = {}, 0
    for p in dyn:
        offsets[id(p)] = k
        k += max(1, int(np.prod(p.shape)))
    npar = k
    idx = {"cx": offsets[id(models[ref].center)], "cy": offsets[id(models[ref].center)] + 1,
           "q": offsets[id(models[ref].q)], "PA": offsets[id(models[ref].PA)], "n": offsets[id(models[ref].n)],
           "Re": offsets[id(models[ref].Re)]}
    for n in names:
        idx[f"Ie[{n}]"] = offsets[id(models[n].Ie)]
    assert npar == 9 and len(set(idx.values())) == 9, (npar, idx)
    zps = {n: images[n]["zeropoint"] for n in names}
    out_keys = ["gal.xi", "gal.eta", "gal.re", "gal.n", "gal.q", "gal.pa"] + [f"gal.flux[{n}]" for n in names]

    def to_bayesprof(x):
        x = np.asarray(x, dtype=float)
        n_, re_, q_ = x[idx["n"]], x[idx["Re"]], x[idx["q"]]
        out = {"gal.xi": -x[idx["cx"]], "gal.eta": x[idx["cy"]], "gal.re": re_, "gal.n": n_, "gal.q": q_,
               "gal.pa": math.degrees(x[idx["PA"]]) % 180.0}
        tot = sersic_total_over_ie(n_, re_, q_)
        for b in names:
            out[f"gal.flux[{b}]"] = x[idx[f"Ie[{b}]"]] * tot / counts_per_ujy(zps[b])
        return np.array([out[k_] for k_ in out_keys])

    x0 = joint.get_values().detach().clone()
    assert np.allclose(to_bayesprof(x0.numpy())[:6], [init["xi"], init["eta"], init["re"], init["n"], init["q"], init["pa"]])

    # ---- LM, twice from the same start; time the second
    lm_times, lm_runs = [], []
    for _ in range(2):
        joint.set_values(x0)
        t0 = time.perf_counter()
        res = ap.fit.LM(joint, initial_state=x0, verbose=0).fit()
        lm_times.append(time.perf_counter() - t0)
        lm_runs.append(res)
    res = lm_runs[-1]
    x_lm = joint.get_values().detach().clone()
    cov = res.covariance_matrix.detach().numpy()
    chi2_ndf = float(res.chi2_ndf().detach())
    # chi2 per image at the optimum
    with torch.no_grad():
        model_imgs = joint()
    chi2_img = {}
    for n, mimg in zip(names, model_imgs):
        r = (images[n]["data"] - mimg.data.numpy()) ** 2 / images[n]["variance"]
        chi2_img[n] = {"chi2": float(r.sum()), "npix": int(r.size), "chi2_per_pix": float(r.mean())}
    npix = sum(v["npix"] for v in chi2_img.values())
    lm_vals = to_bayesprof(x_lm.numpy())
    lm_cov_b = convert_cov(to_bayesprof, x_lm.numpy(), cov)
    lm_sig = np.sqrt(np.diag(lm_cov_b))
    truth_vec = np.array([truth[k_] for k_ in out_keys])

    report = {
        "versions": versions,
        "lm_time_s": lm_times[-1],
        "lm_time_cold_s": lm_times[0],
        "lm_iterations": len(res.loss_history) - 1,
        "lm_message": res.message,
        "lm_chi2_ndf": chi2_ndf,
        "lm_chi2_per_image": chi2_img,
        "lm_params": dict(zip(out_keys, map(float, lm_vals))),
        "lm_sigmas": dict(zip(out_keys, map(float, lm_sig))),
        "lm_pulls_vs_truth": dict(zip(out_keys, map(float, (lm_vals - truth_vec) / lm_sig))),
        "truth": dict(zip(out_keys, map(float, truth_vec))),
        "initial_guess": dict(zip(out_keys, map(float, to_bayesprof(x0.numpy())))),
        "npix": npix,
        "nparams": npar,
        "setup_s": setup_s,
    }
    print(f"LM: cold {lm_times[0]:.3f}s warm {lm_times[-1]:.3f}s, {report['lm_iterations']} iterations, "
          f"chi2/ndf {chi2_ndf:.4f} ({res.message})", file=sys.stderr)
    for k_ in out_keys:
        print(f"  {k_:14s} {report['lm_params'][k_]:12.5g} +- {report['lm_sigmas'][k_]:9.3g}"
              f"  truth {report['truth'][k_]:10.5g}  pull {report['lm_pulls_vs_truth'][k_]:+.2f}", file=sys.stderr)

    notes = [
        f"initial guess (both LM runs): n={init['n']}, re={init['re']} arcsec, q={init['q']}, pa={init['pa']} deg, "
        f"centre offset (+{init['xi'] - truth['gal.xi']:.1f}, +{init['eta'] - truth['gal.eta']:.1f}) arcsec in (xi, eta), "
        f"fluxes x{init['flux_factor']} truth",
        "lm_time_s: wall time of the 2nd (warm) `ap.fit.LM(model, initial_state=x0).fit()` (set-up + iterations + "
        "default uncertainty update); lm_iterations: accepted LM steps (len(loss_history)-1)",
        f"PSF kernels: Gaussian, sampled at pixel {args.psf_sampling}s, widths "
        f"{ {n: psf_width(images[n]['psf_fwhm'], images[n]['pixel_scale'], n, args.psf_width) for n in names} } px",
        f"sampling_mode={args.sampling_mode} ({ {n: models[n].sampling_mode for n in names} }), "
        f"integrate_mode={args.integrate_mode}",
        f"torch threads: {torch.get_num_threads()} on {os.cpu_count()} CPUs",
    ]

    if not args.skip_hmc:
        step_times = []

        def hook(kernel, samples, stage, i):
            step_times.append((stage, time.perf_counter()))

        joint.set_values(x_lm)
        hmc = ap.fit.HMC(joint, warmup=args.warmup, max_iter=args.samples, epsilon=args.epsilon,
                         leapfrog_steps=args.leapfrog, inv_mass=res.covariance_matrix.detach().clone(),
                         progress_bar=False, mcmc_kwargs={"hook_fn": hook})
        t0 = time.perf_counter()
        hmc.fit()
        hmc_total = time.perf_counter() - t0
        warm_ends = [t for s, t in step_times if s == "Warmup"]
        samp = [t for s, t in step_times if s == "Sample"]
        t_start = warm_ends[-1] if warm_ends else t0
        hmc_time = samp[-1] - t_start
        chain = hmc.chain.detach().numpy()  # (samples, 9), raw AstroPhot parameters
        conv = np.array([to_bayesprof(c) for c in chain])  # (samples, 9) bayesprof parameters
        ess_b = np.array([ess_bulk(conv[:, j]) for j in range(conv.shape[1])])
        ess_p = np.array([ess_geyer(conv[None, :, j]) for j in range(conv.shape[1])])
        try:
            from pyro.ops.stats import effective_sample_size as pyro_ess
            ess_pyro = pyro_ess(torch.as_tensor(conv[None]), chain_dim=0, sample_dim=1).numpy()
        except Exception:  # pragma: no cover
            ess_pyro = np.full(conv.shape[1], np.nan)
        accept = float(np.mean(np.any(np.diff(chain, axis=0) != 0, axis=1)))
        ess_min = float(np.min(ess_b))
        report.update({
            "hmc_time_s": hmc_time,
            "hmc_total_time_s": hmc_total,
            "hmc_num_samples": int(chain.shape[0]),
            "hmc_warmup": args.warmup,
            "hmc_epsilon": args.epsilon,
            "hmc_leapfrog_steps": args.leapfrog,
            "hmc_accept_rate": accept,
            "hmc_s_per_sample": hmc_time / max(1, chain.shape[0]),
            "ess_min": ess_min,
            "ess_min_per_s": ess_min / hmc_time,
            "ess_bulk": dict(zip(out_keys, map(float, ess_b))),
            "ess_basic": dict(zip(out_keys, map(float, ess_p))),
            "ess_pyro": dict(zip(out_keys, map(float, ess_pyro))),
            "ess_basic_min_per_s": float(np.min(ess_p)) / hmc_time,
            "hmc_means": dict(zip(out_keys, map(float, conv.mean(axis=0)))),
            "hmc_stds": dict(zip(out_keys, map(float, conv.std(axis=0, ddof=1)))),
        })
        notes.append(
            f"HMC: ap.fit.HMC (pyro HMC, jit_compile=False) from the LM optimum, inv_mass = LM covariance, "
            f"epsilon={args.epsilon}, leapfrog_steps={args.leapfrog}, no adaptation; {args.warmup} discarded warm-up "
            f"steps + {chain.shape[0]} samples; hmc_time_s times the sampling phase only (pyro hook_fn timestamps), "
            f"hmc_total_time_s the whole fit()")
        notes.append("ess_min: min over the 9 bayesprof parameters of the rank-normalised split-chain bulk ESS "
                     "(Geyer initial monotone sequence); ess_basic: plain Geyer ESS (= pyro/numpyro "
                     "effective_sample_size for one chain)")
        print(f"HMC: {chain.shape[0]} samples in {hmc_time:.2f}s (total {hmc_total:.2f}s), accept {accept:.2f}, "
              f"ESS_min {ess_min:.1f} -> {ess_min / hmc_time:.3f}/s", file=sys.stderr)
        for j, k_ in enumerate(out_keys):
            print(f"  {k_:14s} mean {conv[:, j].mean():12.5g} std {conv[:, j].std(ddof=1):9.3g} "
                  f"(LM sigma {lm_sig[j]:9.3g})  ess_bulk {ess_b[j]:7.1f}  ess_basic {ess_p[j]:7.1f} "
                  f"pyro {ess_pyro[j]:7.1f}", file=sys.stderr)
    else:
        report.update({"hmc_time_s": None, "hmc_num_samples": 0, "ess_min": None, "ess_min_per_s": None,
                       "hmc_means": None, "hmc_stds": None})

    report["notes"] = notes
    print(json.dumps(report))


if __name__ == "__main__":
    main()
