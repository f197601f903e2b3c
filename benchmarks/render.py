"""Render benchmark: the seed's three-image scene (r 240x240, W1 26x26, NUV 44x44).

Prints warm (post-JIT) times for one joint render of the three images, for one joint
value-and-gradient of the Gaussian log-likelihood with respect to all 7 Sersic parameters,
and for one forward-mode Jacobian (``jax.jacfwd``, 7 vmapped JVPs) of the concatenated
whitened residuals with respect to the 7-parameter vector (a Levenberg-Marquardt step's
cost).  GalSim (default GSParams, drawing the same three images) is timed in the same run
as the peer.  Usage:  .venv/bin/python benchmarks/render.py [--repeat N] [--float32]
"""

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import bayesprof
from bayesprof.render import Renderer
from bayesprof.scenes import seed_benchmark_galaxy, seed_benchmark_images


def best_of(fn, repeat):
    jax.block_until_ready(fn())  # compile / warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return np.median(times), np.min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--float32", action="store_true", help="single precision")
    args = parser.parse_args()
    if args.float32:
        bayesprof.set_precision("float32")

    images = seed_benchmark_images()
    gal = seed_benchmark_galaxy()
    renderers = [Renderer(im, images.reference) for im in images]
    data = [jnp.asarray(r(gal)) * 1.01 for r in renderers]
    ivar = [jnp.full(im.shape, 1.0) for im in images]

    @jax.jit
    def joint_render(comp):
        return [r(comp) for r in renderers]

    def log_likelihood(comp):
        return sum(-0.5 * jnp.sum(w * (r(comp) - d) ** 2) for r, d, w in zip(renderers, data, ivar))

    value_and_grad = jax.jit(jax.value_and_grad(log_likelihood))

    # Levenberg-Marquardt's Jacobian: the whitened residual vector of all three images with
    # respect to the 7-parameter vector, by forward mode (7 vmapped JVPs)
    names = ("xi", "eta", "flux", "re", "n", "q", "pa")
    theta = jnp.array([getattr(gal, k) for k in names], dtype=jnp.asarray(data[0]).dtype)

    def residuals(p):
        comp = type(gal)(**dict(zip(names, p)))
        return jnp.concatenate([(jnp.sqrt(w) * (r(comp) - d)).ravel() for r, d, w in zip(renderers, data, ivar)])

    jacobian = jax.jit(jax.jacfwd(residuals))

    med_r, min_r = best_of(lambda: joint_render(gal), args.repeat)
    med_g, min_g = best_of(lambda: value_and_grad(gal), args.repeat)
    med_j, min_j = best_of(lambda: jacobian(theta), max(20, args.repeat // 4))

    print(f"bayesprof {bayesprof.__name__} | jax {jax.__version__} | backend {jax.default_backend()} "
          f"| {'float32' if args.float32 else 'float64'} | {platform.processor() or platform.machine()}")
    for r, im in zip(renderers, images):
        print(f"  {im.name:>4}: {im.shape[1]}x{im.shape[0]} px, halo oversample {r.oversample}, "
              f"core fold {r.fold}, core patch {r.patch} px, FFT {r.fft_shape}")
    print(f"joint render (3 images)          median {med_r * 1e3:7.3f} ms   min {min_r * 1e3:7.3f} ms")
    print(f"joint value+gradient (7 params)  median {med_g * 1e3:7.3f} ms   min {min_g * 1e3:7.3f} ms")
    print(f"jacfwd of residuals (7 params)   median {med_j * 1e3:7.3f} ms   min {min_j * 1e3:7.3f} ms")

    try:
        import galsim
    except ImportError:
        print("galsim not installed: peer timing skipped")
        return
    objs = []
    for im in images:
        gs = galsim.Sersic(n=gal.n, half_light_radius=gal.re * np.sqrt(gal.q), flux=1.0)
        gs = gs.shear(q=gal.q, beta=(gal.pa + 90) * galsim.degrees)
        objs.append((galsim.Convolve(gs, galsim.Gaussian(fwhm=im.psf.fwhm)), im))

    def galsim_joint():
        return [o.drawImage(nx=im.nx, ny=im.ny, scale=im.pixel_scale).array for o, im in objs]

    t = []
    for _ in range(max(5, args.repeat // 20)):
        t0 = time.perf_counter()
        galsim_joint()
        t.append(time.perf_counter() - t0)
    print(f"GalSim {galsim.__version__} joint draw (default GSParams, no gradient)  median {np.median(t) * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
