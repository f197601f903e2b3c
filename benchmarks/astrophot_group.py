"""AstroPhot side of the ten-galaxy group benchmark (``benchmarks/group.py``).

Run with the AstroPhot venv (``benchmarks/setup_astrophot_venv.sh`` makes it) on the npz that
``group.py`` writes; ``group.py`` runs it.  The last stdout line is one JSON object (versions,
lm_time_s, lm_time_cold_s, lm_iterations, lm_chi2_ndf, values, sigmas, pulls, pull_stats).
This script does not import bayesprof.

What is done: one AstroPhot ``TargetImage`` per image (r, W1, NUV) with its pixel scale,
zeropoint, variance and Gaussian PSF kernel, all on one tangent plane; per galaxy and image one
``"sersic galaxy model"`` (PSF-convolved, AstroPhot's default sampling and integration), the
W1 and NUV models' ``center``, ``q``, ``PA``, ``n`` and ``Re`` pointing at the r model's
(AstroPhot's JointModels tutorial), each keeping its ``Ie``; all 30 in one ``"group model"``
on the ``TargetImageList``: 90 free parameters.  ``ap.fit.LM(model, initial_state=x0).fit()``
twice from the common start (``group.py``'s perturbed truth), the second call timed: set-up,
iterations and the default uncertainty update.  A third LM run from the same start, to a strict
tolerance (``--strict-tolerance``, relative chi2 change 1e-10), gives AstroPhot's own optimum:
``strict.default_stop_max_dev_sigma`` is how far (in its sigmas) the default stop lies from it.  Conventions and conversions as in
``astrophot_seed.py`` (centre x = -xi; PA in radians; Ie from the flux through the Sersic's
total), whose helpers are reused.  torch runs on one intra-op thread (see there why).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from astrophot_seed import convert_cov, counts_per_ujy, gaussian_kernel, psf_width, sersic_total_over_ie  # noqa: E402

PARAMS = ("xi", "eta", "re", "n", "q", "pa")


def main(argv=None):
    ap_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap_.add_argument("--data", type=Path, default=HERE / ".cache" / "group10.npz")
    ap_.add_argument("--threads", type=int, default=1)
    ap_.add_argument("--strict-tolerance", type=float, default=1e-10,
                     help="relative chi2 tolerance of the extra, fully converged LM run (AstroPhot's default: 1e-5)")
    ap_.add_argument("--strict-max-iter", type=int, default=300)
    args = ap_.parse_args(argv)

    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    logging.getLogger().addHandler(logging.NullHandler())
    import astrophot as ap

    ap.config.set_logging_output(stdout=False)
    d = np.load(args.data, allow_pickle=False)
    names = [str(n) for n in d["names"]]
    truth = {str(k): float(v) for k, v in zip(d["truth_keys"], d["truth_values"])}
    start = {str(k): float(v) for k, v in zip(d["start_keys"], d["start_values"])}
    ngal = int(d["n_galaxies"])
    zps = {n: float(d[f"{n}_zeropoint"]) for n in names}

    targets = {}
    for n in names:
        data = d[f"{n}_data"]
        ny, nx = data.shape
        scale, fwhm = float(d[f"{n}_pixel_scale"]), float(d[f"{n}_psf_fwhm"])
        psf = ap.PSFImage(data=gaussian_kernel(fwhm, scale, psf_width(fwhm, scale, n, "5sigma"), "center"))
        targets[n] = ap.TargetImage(data=data, variance=d[f"{n}_variance"], pixelscale=scale, zeropoint=zps[n],
                                    crpix=((nx - 1) / 2.0, (ny - 1) / 2.0), crtan=(0.0, 0.0), psf=psf, name=n)
    target_list = ap.TargetImageList([targets[n] for n in names])

    models = {}
    ref = names[0]
    for k in range(ngal):
        p = f"g{k}"
        s = {q: start[f"{p}.{q}"] for q in PARAMS}
        tot = sersic_total_over_ie(s["n"], s["re"], s["q"])
        for n in names:
            ie = start[f"{p}.flux[{n}]"] * counts_per_ujy(zps[n]) / tot
            if n == ref:
                models[p, n] = ap.Model(name=f"{p}_{n}", model_type="sersic galaxy model", target=targets[n],
                                        center=[-s["xi"], s["eta"]], q=s["q"], PA=math.radians(s["pa"]), n=s["n"],
                                        Re=s["re"], Ie=ie, psf_convolve=True)
            else:
                models[p, n] = ap.Model(name=f"{p}_{n}", model_type="sersic galaxy model", target=targets[n], Ie=ie,
                                        psf_convolve=True)
                for q in ("center", "q", "PA", "n", "Re"):
                    models[p, n][q].value = models[p, ref][q]
    joint = ap.Model(name="group10", model_type="group model", models=list(models.values()), target=target_list)
    joint.initialize()

    dyn = list(joint.dynamic_params)
    offsets, k = {}, 0
    for prm in dyn:
        offsets[id(prm)] = k
        k += max(1, int(np.prod(prm.shape)))
    npar = k
    keys, index = [], []
    for g in range(ngal):
        m = models[f"g{g}", ref]
        c = offsets[id(m.center)]
        idx = {"cx": c, "cy": c + 1, "q": offsets[id(m.q)], "PA": offsets[id(m.PA)], "n": offsets[id(m.n)],
               "Re": offsets[id(m.Re)]}
        idx.update({f"Ie[{n}]": offsets[id(models[f'g{g}', n].Ie)] for n in names})
        index.append(idx)
        keys += [f"g{g}.{q}" for q in PARAMS] + [f"g{g}.flux[{n}]" for n in names]
    assert npar == ngal * (6 + len(names)), npar

    def to_bayesprof(x):
        x = np.asarray(x, dtype=float)
        out = []
        for idx in index:
            n_, re_, q_ = x[idx["n"]], x[idx["Re"]], x[idx["q"]]
            out += [-x[idx["cx"]], x[idx["cy"]], re_, n_, q_, math.degrees(x[idx["PA"]]) % 180.0]
            tot = sersic_total_over_ie(n_, re_, q_)
            out += [x[idx[f"Ie[{n}]"]] * tot / counts_per_ujy(zps[n]) for n in names]
        return np.array(out)

    x0 = joint.get_values().detach().clone()
    got = dict(zip(keys, to_bayesprof(x0.numpy())))
    assert all(abs(got[k_] - start[k_]) < 1e-6 * max(1.0, abs(start[k_])) for k_ in keys), "start conversion"

    times, runs = [], []
    for _ in range(2):
        joint.set_values(x0)
        t0 = time.perf_counter()
        res = ap.fit.LM(joint, initial_state=x0, verbose=0).fit()
        times.append(time.perf_counter() - t0)
        runs.append(res)
    res = runs[-1]
    x = joint.get_values().detach().clone().numpy()
    sig = np.sqrt(np.diag(convert_cov(to_bayesprof, x, res.covariance_matrix.detach().numpy())))
    vals = to_bayesprof(x)
    values, sigmas = dict(zip(keys, map(float, vals))), dict(zip(keys, map(float, sig)))
    pulls = {}
    for k_ in keys:
        dd = values[k_] - truth[k_]
        if k_.endswith(".pa"):
            dd = (dd + 90.0) % 180.0 - 90.0
        pulls[k_] = dd / sigmas[k_]
    a = np.array(list(pulls.values()))
    # the same LM run to a strict tolerance: how far the default stop is from AstroPhot's own optimum
    joint.set_values(x0)
    t0 = time.perf_counter()
    strict = ap.fit.LM(joint, initial_state=x0, verbose=0, relative_tolerance=args.strict_tolerance,
                       max_iter=args.strict_max_iter).fit()
    strict_time = time.perf_counter() - t0
    xs = joint.get_values().detach().clone().numpy()
    sig_s = np.sqrt(np.diag(convert_cov(to_bayesprof, xs, strict.covariance_matrix.detach().numpy())))
    vals_s = to_bayesprof(xs)
    conv = []
    for k_, v1, v2, s2 in zip(keys, vals, vals_s, sig_s):
        dd = v1 - v2
        if k_.endswith(".pa"):
            dd = (dd + 90.0) % 180.0 - 90.0
        conv.append(abs(dd) / s2)
    import importlib.metadata as md
    report = {"versions": {"torch": torch.__version__, "astrophot": ap.__version__, "caskade": md.version("caskade"),
                           "torch_threads": torch.get_num_threads()},
              "lm_time_s": times[-1], "lm_time_cold_s": times[0], "lm_iterations": len(res.loss_history) - 1,
              "lm_message": res.message, "lm_chi2_ndf": float(res.chi2_ndf().detach()), "n_params": npar,
              "values": values, "sigmas": sigmas, "pulls": pulls,
              "pull_stats": {"rms": float(np.sqrt(np.mean(a**2))), "max_abs": float(np.max(np.abs(a))),
                             "n_over_3": int(np.sum(np.abs(a) > 3))},
              "strict": {"relative_tolerance": args.strict_tolerance, "lm_time_s": strict_time,
                         "lm_iterations": len(strict.loss_history) - 1, "lm_message": strict.message,
                         "lm_chi2_ndf": float(strict.chi2_ndf().detach()),
                         "values": dict(zip(keys, map(float, vals_s))), "sigmas": dict(zip(keys, map(float, sig_s))),
                         "default_stop_max_dev_sigma": float(max(conv)),
                         "default_stop_rms_dev_sigma": float(np.sqrt(np.mean(np.square(conv))))}}
    print(f"AstroPhot LM: cold {times[0]:.2f} s, warm {times[-1]:.2f} s, {report['lm_iterations']} iterations, "
          f"{res.message}", file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
