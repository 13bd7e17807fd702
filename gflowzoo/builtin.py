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
    register("dataset", "mnist", "gflowzoo.data.standard:mnist", "MNIST digits, 1x28x28 (torchvision idx layout)")
    register(
        "dataset", "fashion-mnist", "gflowzoo.data.standard:fashion_mnist",
        "Fashion-MNIST, 1x28x28 (torchvision idx layout)",
    )
    register("dataset", "cifar10", "gflowzoo.data.standard:cifar10", "CIFAR-10, 3x32x32 (pickles, image folder or zip)")
    register("dataset", "celeba64", "gflowzoo.data.folders:celeba64", "CelebA aligned faces, 140 crop, 3x64x64")
    register("dataset", "lsun-church64", "gflowzoo.data.folders:lsun_church64", "LSUN Church outdoor, 3x64x64")
    register(
        "dataset", "imagefolder:", "gflowzoo.data.folders:imagefolder",
        "any folder of images: imagefolder:PATH or imagefolder:PATH@SIZE",
    )
    # -- autoencoders (latent spaces for every method: docs/latent.md) ------------------------------------------
    register("autoencoder", "conv", "gflowzoo.autoencoders:ConvAutoencoder",
             "conv encoder/decoder for 28-64 px images; kl > 0 makes it variational")
    register("autoencoder", "mlp", "gflowzoo.autoencoders:MLPAutoencoder",
             "MLP encoder/decoder for small inputs (8x8 digits); kl > 0 makes it variational")
    # == metrics and feature extractors (evaluation helper) ====================================================
    register("metric", "kid", "gflowzoo.metrics.image:KID", "Kernel Inception Distance (unbiased, over subsets)")
    register("metric", "fid", "gflowzoo.metrics.image:FID", "Fréchet Inception Distance (torch-fidelity)")
    register("metric", "is", "gflowzoo.metrics.image:InceptionScore", "Inception Score from the extractor's logits")
    register("metric", "prc", "gflowzoo.metrics.image:PrecisionRecall", "improved precision and recall (k-NN balls)")
    register("metric", "mmd", "gflowzoo.metrics.toy:MMD", "2-D: unbiased MMD² with a fixed RBF mixture kernel")
    register("metric", "energy", "gflowzoo.metrics.toy:EnergyDistance", "2-D: energy distance (unbiased)")
    register("metric", "swd", "gflowzoo.metrics.toy:SlicedWasserstein", "2-D: sliced Wasserstein-2 distance")
    register("metric", "modes", "gflowzoo.metrics.toy:ModesCovered", "2-D mixtures: number of modes covered")
    register("metric", "nn", "gflowzoo.metrics.memorization:NearestTraining",
             "memorisation check: distance to the nearest training item, against real held-out items'")
    register("metric", "hq", "gflowzoo.metrics.toy:HighQualityFraction", "2-D mixtures: share within 3 std of a mode")
    register(
        "feature-extractor", "inception-v3-compat", "gflowzoo.metrics.extractors:InceptionV3Compat",
        "Inception-v3 (TF 2015-12-05 port of torch-fidelity); weights from the torch hub cache or a path",
    )
    register("feature-extractor", "net-digits", "gflowzoo.metrics.extractors:net_digits",
             "small conv net trained by gflowzoo on 8x8 digits (trained automatically)")
    register("feature-extractor", "lenet-mnist", "gflowzoo.metrics.extractors:lenet_mnist",
             "LeNet-style net trained by gflowzoo on MNIST (gflowzoo extractor fit --dataset mnist)")
    register("feature-extractor", "lenet-fashion-mnist", "gflowzoo.metrics.extractors:lenet_fashion_mnist",
             "LeNet-style net trained by gflowzoo on Fashion-MNIST")
    register("feature-extractor", "net-cifar10", "gflowzoo.metrics.extractors:net_cifar10",
             "VGG-style net trained by gflowzoo on CIFAR-10")
    # == end of metrics and feature extractors =================================================================
