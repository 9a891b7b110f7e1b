"""refvae: a reference NumPy/CuPy implementation of the VAE family with hand-written gradients.

Layers of the package, each using only those above it in this list:
backend -> layers -> distributions, objectives -> optim, train -> family trainers (iwae, m2,
lin, libi, encoders), metrics, datasets -> experiments, verify and the command line
(``python -m refvae verify``).

``import refvae`` reaches all of it: the layers and objectives, ``fit`` and the family (``IWAE``,
``M2``, ``fit_lin``, ``fit_libi``, ``PerPointVAE``), ``refvae.datasets`` and ``refvae.metrics``.
``refvae.testing`` (hypothesis strategies and gradient assertions for your own layers) needs
the test extra and is imported on its own.
"""
from .backend import (asarray, blas_threads, get_backend, get_dtype, set_backend, set_dtype, to_device, to_host,
                      use_backend, use_dtype)
from .distributions import gaussian_log_prob, kl_std_normal, reparameterize
from .gradcheck import assert_grad, check_grad
from .layers import (CholeskyLinear, Cube, Elementwise, Layer, LeakyReLU, Linear, ReLU, ResidualBlock, Sequential,
                     Shift, Sigmoid, Softplus, SoftThreshold, Tanh, mlp)
from .objectives import Autoencoder, GaussianDecoder, GaussianVAE, take_restart
from .optim import SGD, Adam
from .train import (CheckpointError, Divergence, FitResult, TrainingDiverged, TrainingInterrupted, divergence_policy,
                    fit, fit_stages, from_trajectory, linear_ramp, load_checkpoint, load_params, save_checkpoint,
                    save_params)
# the family, the data sets and the metrics (``refvae.testing`` needs the test extra and is imported on its own)
from .encoders import PerPointEncoder, PerPointVAE, fit_encoder, with_index
from .iwae import IWAE
from .libi import LiBIResult, LiBIStep1, fit_libi, init_libi
from .lin import LINResult, fit_lin, fit_lin_segmented
from .m2 import M2
from . import datasets, metrics

__version__ = "0.1.0"
