"""The core's own components, registered as a built-in plugin exactly like a third-party plugin would.

Targets are import paths, so nothing heavy is imported until a component is built.
"""

from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl
def gflowzoo_register(register):
    # -- kernels -----------------------------------------------------------------------------------------------
    register("kernel", "linear", "gflowzoo.kernels:LinearKernel", "k(a, b) = <a, b>; MMD through mean embeddings")
    register("kernel", "rbf", "gflowzoo.kernels:RBFKernel", "Gaussian kernel, one width or a mixture of widths")
    register("kernel", "rq", "gflowzoo.kernels:RQKernel", "rational-quadratic mixture (+ optional linear term)")
    register("kernel", "energy", "gflowzoo.kernels:EnergyKernel", "distance kernel ||a|| + ||b|| - ||a - b||")
    register("kernel", "poly", "gflowzoo.kernels:PolyKernel", "KID polynomial kernel (<a, b>/d + 1)^3")
    # -- divergences -------------------------------------------------------------------------------------------
    register("divergence", "mmd", "gflowzoo.divergences:MMD", "maximum mean discrepancy (biased / unbiased)")
    register("divergence", "kale", "gflowzoo.divergences:KALE", "KL approximate lower bound (Glaser et al. 2021)")
    # -- noise schedules ---------------------------------------------------------------------------------------
    register("schedule", "vp-linear", "gflowzoo.schedules:VPLinear", "variance-preserving, DDPM linear betas")
    register("schedule", "vp-cosine", "gflowzoo.schedules:VPCosine", "variance-preserving cosine (Nichol & Dhariwal)")
    # -- integrators -------------------------------------------------------------------------------------------
    register("integrator", "euler", "gflowzoo.integrators:Euler", "explicit Euler gradient-flow step")
    register(
        "integrator", "euler-noisy", "gflowzoo.integrators:EulerNoisy",
        "Euler step with the gradient taken at a noise-perturbed point (Arbel et al. 2019)",
    )
    # -- data sets ---------------------------------------------------------------------------------------------
    register("dataset", "toy-8gaussians", "gflowzoo.data.toy:gaussians8", "2-D: 8 Gaussians on a circle")
    register("dataset", "toy-25gaussians", "gflowzoo.data.toy:gaussians25", "2-D: 25 Gaussians on a 5x5 grid")
    register("dataset", "toy-swissroll", "gflowzoo.data.toy:swissroll", "2-D: Swiss roll")
    register("dataset", "toy-checkerboard", "gflowzoo.data.toy:checkerboard", "2-D: checkerboard")
    register("dataset", "toy-moons", "gflowzoo.data.toy:moons", "2-D: two moons")
    register("dataset", "digits", "gflowzoo.data.digits:digits", "8x8 handwritten digits from scikit-learn (default)")
