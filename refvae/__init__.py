"""refvae: a reference NumPy/CuPy implementation of the VAE family with hand-written gradients.

Layers of the package, each using only those above it in this list:
backend -> layers -> distributions, objectives -> optim, train -> family trainers (iwae, m2,
lin, libi, encoders), metrics, datasets -> experiments, verify and the command line
(``python -m refvae verify``).
"""
from .backend import asarray, get_backend, set_backend, to_device, to_host, use_backend
from .distributions import gaussian_log_prob, kl_std_normal, reparameterize
from .gradcheck import assert_grad, check_grad
from .layers import (CholeskyLinear, Cube, LeakyReLU, Linear, ReLU, ResidualBlock, Sequential, Shift, Sigmoid,
                     Softplus, SoftThreshold, Tanh, mlp)
from .objectives import Autoencoder, GaussianDecoder, GaussianVAE
from .optim import SGD, Adam
from .train import (FitResult, TrainingDiverged, fit, fit_stages, from_trajectory, linear_ramp, load_params,
                    save_params)

__version__ = "0.1.0"
