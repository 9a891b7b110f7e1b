"""Closed-form results for linear-Gaussian models, PPCA, linear VAEs, hypersphere and soft-threshold decoders (numpy/scipy only)."""
from . import hypersphere, linear_gaussian, linear_vae, mfg, noise, ppca, soft_threshold

__all__ = ["hypersphere", "linear_gaussian", "linear_vae", "mfg", "noise", "ppca", "soft_threshold"]
