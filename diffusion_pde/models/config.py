"""The hyper-parameters of a node classifier, validated in one place (errors name the field)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import solvers

from ..diffusivities._attention import QK_NORMS
from ..diffusivities.difformer_s import check_qk_norm

MODELS = ("difformer_s", "difformer_a", "transformer", "gat", "gcn", "sgc", "appnp", "mlp")
ATTENTION_MODELS = ("difformer_s", "difformer_a", "transformer")
CONTINUOUS_MODELS = ATTENTION_MODELS + ("sgc", "appnp")
DEPTHS = ("discrete", "continuous")
ENCODER_BIAS_INITS = ("zero", "uniform")
INPUT_DROPOUT_MODELS = ATTENTION_MODELS + ("mlp",)
SOURCE_TERM_MODELS = ATTENTION_MODELS + ("sgc", "appnp")  # GCN/GAT change width between layers: no Z⁰ to return to

_ATTENTION_SETTINGS = ("hidden", "heads", "dropout", "input_dropout", "use_graph", "graph_weight", "source_weight",
                       "value_proj", "layer_norm", "encoder_bias")
# The settings each model reads (besides ``model`` and ``depth``; ``num_layers``/``tau`` only at
# discrete depth, the solver settings only at continuous depth, ``graph_weight`` only with the
# graph term): the one place that knows it (``describe``, the command line and the results use it).
MODEL_SETTINGS: dict[str, tuple[str, ...]] = {
    "difformer_s": (*_ATTENTION_SETTINGS, "qk_norm", "qk_bias"),
    "difformer_a": (*_ATTENTION_SETTINGS, "qk_norm", "qk_bias"),
    "transformer": _ATTENTION_SETTINGS,
    "gcn": ("hidden", "dropout"),
    "gat": ("hidden", "heads", "dropout"),
    "sgc": ("source_weight",),
    "appnp": ("hidden", "dropout", "source_weight"),
    "mlp": ("hidden", "dropout", "input_dropout", "layer_norm", "encoder_bias"),
}
DISCRETE_SETTINGS = ("num_layers", "tau")
SOLVER_SETTINGS = ("method", "t1", "n_steps", "rtol", "atol", "adjoint")


def model_uses(model: str, setting: str) -> bool:
    """Whether ``model`` reads ``setting`` at some depth (with some method)."""
    return setting in ("model", "depth") or setting in MODEL_SETTINGS[model] or \
        (setting in DISCRETE_SETTINGS and model != "mlp") or (setting in SOLVER_SETTINGS and model in CONTINUOUS_MODELS)


@dataclass(frozen=True)
class ModelConfig:
    """What :func:`~diffusion_pde.models.build_model` builds.

    model: the propagation rule (``MODELS``); depth: ``discrete`` (``num_layers`` Euler layers of
    step ``tau``, own weights each) or ``continuous`` (shared weights integrated over [0, ``t1``]
    with ``method``/``n_steps``). ``use_graph`` adds the input graph's ``gcn`` term to attention,
    summed (``graph_weight=None``, the authors' code) or mixed with weight w ∈ (0, 1).
    ``source_weight`` μ ∈ [0, 1) is the source term μ(Z⁰ − Z) (APPNP's α). ``qk_norm`` row (the
    paper) or global (the authors' code), or none (not for ``difformer_s``, whose kernel needs unit
    q, k); ``value_proj`` a per-layer W_v; ``layer_norm`` after the encoder and every layer.
    ``qk_bias`` adds biases to W_q, W_k (DIFFormer-s/-a; the authors' released code has them);
    ``encoder_bias`` starts the encoder's bias at ``zero`` (ours) or ``uniform`` U(±1/√fan_in)
    (torch's default, the authors' code). ``input_dropout`` drops input features before the encoder's Linear (models whose encoder
    starts with a Linear: the attention models and ``mlp``; GCN, GAT and APPNP already drop
    their input with ``dropout``).
    """

    model: str = "difformer_s"
    depth: str = "discrete"
    num_layers: int = 8
    hidden: int = 64
    heads: int = 1
    tau: float = 0.5
    dropout: float = 0.2
    input_dropout: float = 0.0
    use_graph: bool = True
    graph_weight: float | None = None
    source_weight: float = 0.0
    qk_norm: str = "row"
    value_proj: bool = False
    layer_norm: bool = True
    qk_bias: bool = False
    encoder_bias: str = "zero"
    method: str = "rk4"
    t1: float = 4.0
    n_steps: int | None = 8
    rtol: float = 1e-4
    atol: float = 1e-6
    adjoint: bool = False

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid models: {', '.join(MODELS)}")
        if self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {', '.join(DEPTHS)}, got {self.depth!r}")
        if self.depth == "continuous" and self.model not in CONTINUOUS_MODELS:
            raise ValueError(
                f"model {self.model!r} has a channel map between its layers, so it has no continuous-depth form; "
                f"use depth='discrete' or one of {', '.join(CONTINUOUS_MODELS)}"
            )
        for name in ("num_layers", "hidden", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "num_layers" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'num_layers' else 'positive'} int, got {value!r}")
        if self.num_layers == 0 and self.model not in ("mlp",):
            raise ValueError(f"num_layers must be >= 1 for model {self.model!r} (use model='mlp' for no propagation)")
        if not (isinstance(self.tau, (int, float)) and math.isfinite(self.tau) and 0 < self.tau):
            raise ValueError(f"tau must be a finite step size > 0, got {self.tau!r}")
        if self.tau > 1 and self.model in ATTENTION_MODELS:
            raise ValueError(
                f"tau={self.tau} > 1 leaves explicit Euler's stability region for a row-stochastic diffusivity "
                "(spectrum of S − I in [−2, 0] needs tau <= 1); choose tau in (0, 1]"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError(f"input_dropout must lie in [0, 1), got {self.input_dropout!r}")
        if self.input_dropout > 0 and self.model not in INPUT_DROPOUT_MODELS:
            raise ValueError(
                f"input_dropout applies to {', '.join(INPUT_DROPOUT_MODELS)}; model {self.model!r} "
                + ("has no encoder to drop features before" if self.model == "sgc" else "already drops its input features with dropout")
                + ", so leave input_dropout at 0"
            )
        if self.graph_weight is not None and not 0.0 < self.graph_weight < 1.0:
            raise ValueError(f"graph_weight must lie in (0, 1), or be None to sum the graph term, got {self.graph_weight!r}")
        if not 0.0 <= self.source_weight < 1.0:
            raise ValueError(f"source_weight must lie in [0, 1), got {self.source_weight!r}")
        if self.source_weight > 0 and self.model not in SOURCE_TERM_MODELS:
            raise ValueError(
                f"source_weight={self.source_weight}: model {self.model!r} "
                + ("has no propagation to add a source term to" if self.model == "mlp" else
                   "changes the width between its layers, so a source term towards Z⁰ is undefined")
                + "; leave source_weight at 0, or use model='appnp' (propagation with a source term) or a difformer_* model"
            )
        if self.qk_norm not in QK_NORMS:
            raise ValueError(f"qk_norm must be one of {', '.join(QK_NORMS)}, got {self.qk_norm!r}")
        if not isinstance(self.qk_bias, bool):
            raise ValueError(f"qk_bias must be True or False, got {self.qk_bias!r}")
        if self.encoder_bias not in ENCODER_BIAS_INITS:
            raise ValueError(f"encoder_bias must be one of {', '.join(ENCODER_BIAS_INITS)} (the encoder bias's initial "
                             f"value), got {self.encoder_bias!r}")
        if self.model == "difformer_s":
            check_qk_norm(self.qk_norm)
        if self.method not in solvers.available_methods():
            raise ValueError(f"unknown method {self.method!r}; valid methods: {', '.join(solvers.available_methods())}")
        if not (isinstance(self.t1, (int, float)) and math.isfinite(self.t1) and self.t1 > 0):
            raise ValueError(f"t1 (the integration time T) must be > 0, got {self.t1!r}")
        if not self.is_adaptive:
            if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int) or self.n_steps < 1:
                raise ValueError(f"fixed-step method {self.method!r} needs n_steps >= 1, got {self.n_steps!r}")
            if self.adjoint:
                raise ValueError(f"adjoint=True needs an adaptive method such as dopri5, not {self.method!r}")

    def solver_options(self) -> dict[str, object]:
        """Options of :func:`solvers.solve` for the continuous block."""
        if self.is_adaptive:
            return {"rtol": self.rtol, "atol": self.atol, "adjoint": self.adjoint}
        return {"n_steps": self.n_steps}

    @property
    def is_adaptive(self) -> bool:
        return self.method not in solvers.fixed_step_methods()

    def used_settings(self) -> tuple[str, ...]:
        """The settings this model reads, in field order: :data:`MODEL_SETTINGS`, ``num_layers``
        and ``tau`` at discrete depth, the settings of its method at continuous depth and
        ``graph_weight`` only with the graph term."""
        used = {"model", "depth", *MODEL_SETTINGS[self.model]}
        if self.depth == "discrete":
            used.update(DISCRETE_SETTINGS if self.model != "mlp" else ())
        else:
            used.update(("method", "t1", *(("rtol", "atol", "adjoint") if self.is_adaptive else ("n_steps",))))
        if not self.use_graph:
            used.discard("graph_weight")
        return tuple(f.name for f in dataclasses.fields(self) if f.name in used)

    def settings(self) -> dict[str, object]:
        """The settings this model reads (:meth:`used_settings`) and their values."""
        return {name: getattr(self, name) for name in self.used_settings()}

    def describe(self) -> str:
        """A one-line account of the architecture, naming only the settings the model uses."""
        if self.model == "mlp":
            shape = "no propagation"
        elif self.depth == "continuous":
            steps = f"{self.n_steps} steps" if not self.is_adaptive else f"rtol {self.rtol}, atol {self.atol}"
            shape = f"continuous, {self.method} over [0, {self.t1}], {steps}"
        else:
            shape = f"{self.num_layers} {'steps' if self.model in ('sgc', 'appnp') else 'layers'}, tau {self.tau}"
        if self.source_weight:
            shape += f", source weight {self.source_weight}"
        return shape if self.model == "sgc" else f"{shape}, hidden {self.hidden}"

    def replace(self, **changes: object) -> "ModelConfig":
        return dataclasses.replace(self, **changes)
