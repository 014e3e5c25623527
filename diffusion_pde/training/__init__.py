"""Training node classifiers: settings and presets, the epoch loop with atomic checkpoints, exact
resume and a clear stop on NaN/Inf, and experiments over several splits and initialisations,
checked before they start."""

from .checkpoint import load_checkpoint, save_atomic, write_json_atomic
from .config import MODEL_DEFAULTS, PAPER_PRESETS, PRESETS, TrainConfig, resolve
from .experiment import Experiment, make_split, parse_solver, prepare_experiment, run_experiment, summarise
from .loop import NonFiniteError, RunResult, evaluate, first_epoch_reaching, train_run

__all__ = [
    "Experiment",
    "MODEL_DEFAULTS",
    "NonFiniteError",
    "PAPER_PRESETS",
    "PRESETS",
    "RunResult",
    "TrainConfig",
    "evaluate",
    "first_epoch_reaching",
    "load_checkpoint",
    "make_split",
    "parse_solver",
    "prepare_experiment",
    "resolve",
    "run_experiment",
    "save_atomic",
    "summarise",
    "train_run",
    "write_json_atomic",
]
