"""Training node classifiers: settings and presets, the epoch loop with atomic checkpoints and
exact resume, and experiments over several splits and initialisations."""

from .checkpoint import load_checkpoint, save_atomic, write_json_atomic
from .config import MODEL_DEFAULTS, PAPER_PRESETS, PRESETS, TrainConfig, resolve
from .experiment import make_split, parse_solver, run_experiment, summarise
from .loop import RunResult, evaluate, first_epoch_reaching, train_run

__all__ = [
    "MODEL_DEFAULTS",
    "PAPER_PRESETS",
    "PRESETS",
    "RunResult",
    "TrainConfig",
    "evaluate",
    "first_epoch_reaching",
    "load_checkpoint",
    "make_split",
    "parse_solver",
    "resolve",
    "run_experiment",
    "save_atomic",
    "summarise",
    "train_run",
    "write_json_atomic",
]
