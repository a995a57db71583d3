"""TopK sparse autoencoders on cached residual-stream activations (paper section 3.2).

The SAE works on per-dimension standardised activations ``x_hat = (x - mean) / std``
(statistics from the activation cache), keeps the k largest encoder pre-activations
and reconstructs with a unit-norm decoder. Training streams the cache from disk
through a shuffled buffer, so a cache larger than memory trains the same way.

- SAEConfig, the hyperparameters of one run, lives in prunescope.settings.
- ``model``: TopKSAE, its encoder and sparse decoder.
- ``gradients``: the loss and its hand-written sparse backward.
- ``stream``: shuffled batches read from the HDF5 cache.
- ``resample``: re-initialisation of dead latents.
- ``evaluate``: FVU, L0 and firing rates on held-out rows.
- ``train``: the optimiser, learning-rate schedule and training run.
- ``io``: saving and loading an SAE folder.
"""

from prunescope.sae.evaluate import evaluate_sae
from prunescope.sae.gradients import StepOutput, loss_and_gradients
from prunescope.sae.io import NORMALISATION, SAE_FILES, load_sae, save_sae
from prunescope.sae.model import SAEOutput, TopKSAE, project_out_parallel, row_top_k
from prunescope.sae.resample import RESAMPLE_CHUNK, RESAMPLE_UNTIL, resample_dead_features
from prunescope.sae.stream import iter_shuffled_batches
from prunescope.sae.train import lr_factor, make_optimizer, optimisation_step, train_sae
from prunescope.settings import SAEConfig

__all__ = [
    "NORMALISATION",
    "RESAMPLE_CHUNK",
    "RESAMPLE_UNTIL",
    "SAE_FILES",
    "SAEConfig",
    "SAEOutput",
    "StepOutput",
    "TopKSAE",
    "evaluate_sae",
    "iter_shuffled_batches",
    "load_sae",
    "loss_and_gradients",
    "lr_factor",
    "make_optimizer",
    "optimisation_step",
    "project_out_parallel",
    "resample_dead_features",
    "row_top_k",
    "save_sae",
    "train_sae",
]
