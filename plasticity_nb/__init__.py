"""Reference reproduction of the Plasticity-Ceiling paper (arXiv 2512.11470): SFT, RL, synchronized SFT-RL and the ceiling fit, as nbdev notebooks and papermill figures."""

__version__ = "0.1.0"
