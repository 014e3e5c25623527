"""Training node classifiers: settings and presets, the epoch loop with atomic checkpoints, exact
resume and a clear stop on NaN/Inf, experiments over several splits and initialisations on any
graph, checked before they start, results folders that never cost a user a file, and a trained
model's life after training (load, predict); spatial-temporal forecasting (node regression over
the snapshots of a temporal signal, :mod:`.forecasting`)."""

from .checkpoint import load_checkpoint, save_atomic, write_json_atomic
from .config import MODEL_DEFAULTS, PAPER_PRESETS, PRESETS, TrainConfig, resolve
from .experiment import Experiment, make_split, parse_solver, prepare_experiment, run_experiment, summarise
from .forecasting import FORECAST_DEFAULTS, ForecastResult, prepare_forecasting, run_forecasting
from .inference import Predictions, load_model, predict, write_predictions
from .loop import NonFiniteError, RunResult, evaluate, first_epoch_reaching, train_run
from .outputs import MARKER

__all__ = [
    "Experiment",
    "FORECAST_DEFAULTS",
    "ForecastResult",
    "MARKER",
    "MODEL_DEFAULTS",
    "NonFiniteError",
    "PAPER_PRESETS",
    "PRESETS",
    "Predictions",
    "RunResult",
    "TrainConfig",
    "evaluate",
    "first_epoch_reaching",
    "load_checkpoint",
    "load_model",
    "make_split",
    "parse_solver",
    "predict",
    "prepare_experiment",
    "prepare_forecasting",
    "resolve",
    "run_experiment",
    "run_forecasting",
    "save_atomic",
    "summarise",
    "train_run",
    "write_json_atomic",
    "write_predictions",
]
