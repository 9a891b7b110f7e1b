"""refvae: a reference NumPy/CuPy implementation of the VAE family with hand-written gradients.

Layers of the package, each using only those above it in this list:
backend -> layers -> distributions, objectives -> optim, train -> family trainers, metrics,
datasets -> command line (``python -m refvae``).
"""
from .backend import asarray, get_backend, set_backend, to_device, to_host, use_backend
from .distributions import gaussian_log_prob, kl_std_normal, reparameterize
from .gradcheck import assert_grad, check_grad
from .layers import (Cube, LeakyReLU, Linear, ReLU, ResidualBlock, Sequential, Sigmoid, Softplus,
                     SoftThreshold, Tanh, mlp)
from .objectives import Autoencoder, GaussianVAE
from .optim import SGD, Adam
from .train import (FitResult, TrainingDiverged, fit, from_trajectory, linear_ramp, load_params,
                    save_params)

__version__ = "0.1.0"
