"""Training configuration and the presets of the CR-FIQA recipe.

The recipe (Boutros et al., CVPR 2023, and the authors' released training code): SGD with momentum
0.9 and weight decay 5e-4, lr 0.1 × global batch / 512, multiplied by 0.1 from each epoch listed in
``lr_steps`` on (1-based, as the authors' ``lr_step_func``), backbone gradients clipped at norm 5,
ArcFace margin s = 64, m = 0.5 (``loss``: any family of ``crfiqa.options.LOSSES``), CR-FIQA loss
α = 10, β = 0.5, dropout 0.4 before the embedding.
Checkpoints every ``checkpoint_every`` steps and at least every ``checkpoint_minutes`` of training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from crfiqa_kernels.options import CR_FORMULAS, MARGIN_GRADS

from ..models import STAGE_DEPTHS
from ..models.iresnet import AUTHORS_WIDTHS
from ..options import AMP_MODES, LOSS_PARAMETERS, LOSS_SWITCHES, LOSSES


@dataclass
class TrainConfig:
    """Every knob of a training run; stored in checkpoints as a plain dict.

    The backbone is the :class:`crfiqa.models.IResNet` with these ``depths`` and ``widths`` (the
    authors' iresnet50 by default; ``STAGE_DEPTHS`` names the others), ``embedding_size``,
    ``image_size`` and ``dropout``. ``num_classes`` None means: the dataset's number of identities.
    The margin family is ``loss`` (a name of ``crfiqa.options.LOSSES``) with ``loss_options`` over
    its defaults, by the family's argument names (``{"m": 0.35}``; ``LOSS_PARAMETERS`` lists those of
    each family); ``sample_rate < 1`` samples each rank's class centers (the sharded head, more than
    one process).
    """

    depths: list[int] = field(default_factory=lambda: list(STAGE_DEPTHS["iresnet50"]))
    widths: list[int] = field(default_factory=lambda: list(AUTHORS_WIDTHS))
    embedding_size: int = 512
    image_size: int = 112
    num_classes: int | None = None
    epochs: int = 34
    lr_steps: list[int] = field(default_factory=lambda: [20, 28, 32])
    base_lr: float = 0.1
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_norm: float = 5.0
    dropout: float = 0.4
    loss: str = "arcface"
    loss_options: dict[str, float | bool] = field(default_factory=dict)
    margin_grad: str = "exact"
    sample_rate: float = 1.0
    alpha: float = 10.0
    beta: float = 0.5
    cr: str = "paper"
    amp: str = "none"
    backend: str = "auto"
    seed: int = 0
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 5.0
    log_every: int = 50
    num_workers: int = 4
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.cr not in CR_FORMULAS:
            raise ValueError(f"cr must be one of {CR_FORMULAS}, got {self.cr!r}")
        if self.margin_grad not in MARGIN_GRADS:
            raise ValueError(f"margin_grad must be one of {MARGIN_GRADS}, got {self.margin_grad!r}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must lie in (0, 1], got {self.sample_rate}")
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every", "embedding_size", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 2):
            raise ValueError(f"num_classes must be an int ≥ 2 or None, got {self.num_classes!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be non-negative, got {self.num_workers}")
        self._check_loss()
        for name in ("base_lr", "clip_norm", "beta", "checkpoint_minutes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self.depths, self.widths = [int(d) for d in self.depths], [int(w) for w in self.widths]
        self.lr_steps = sorted(int(step) for step in self.lr_steps)

    def _check_loss(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not isinstance(self.loss_options, dict):
            raise TypeError(f"loss_options must be a dict, got {type(self.loss_options).__name__}")
        for name, value in self.loss_options.items():
            if name not in LOSS_PARAMETERS[self.loss]:
                raise ValueError(f"loss_options: {self.loss} takes {LOSS_PARAMETERS[self.loss]}, not {name!r}")
            switch = name in LOSS_SWITCHES
            if isinstance(value, bool) != switch or not isinstance(value, (bool, int, float)):
                kind = "a bool" if switch else "a real number"
                raise TypeError(f"loss_options[{name!r}] must be {kind}, got {value!r}")
        options = self.loss_options.items()
        self.loss_options = {name: value if isinstance(value, bool) else float(value) for name, value in options}

    def model_config(self) -> dict:
        """The :class:`crfiqa.models.IResNet` config of the backbone to train."""
        return {
            "depths": list(self.depths),
            "num_features": self.embedding_size,
            "widths": list(self.widths),
            "input_size": self.image_size,
            "dropout": self.dropout,
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


LEGACY_MARGIN = ("margin_s", "margin_m1", "margin_m2", "margin_m3")


def upgrade(saved: dict) -> dict:
    """A config dict written with the combined margin's ``margin_s, margin_m1, margin_m2,
    margin_m3`` (before ``loss``), as ``loss`` and ``loss_options``: ArcFace where ``m1 = 1, m3 = 0``,
    CosFace where ``m1 = 1, m2 = 0``; any other combination is a ValueError (no ``--loss`` trains it)."""
    if not any(name in saved for name in LEGACY_MARGIN):
        return dict(saved)
    config = {name: value for name, value in saved.items() if name not in LEGACY_MARGIN}
    defaults = (64.0, 1.0, 0.5, 0.0)
    s, m1, m2, m3 = (saved.get(name, default) for name, default in zip(LEGACY_MARGIN, defaults, strict=True))
    if m1 == 1.0 and m3 == 0.0:
        config.update(loss="arcface", loss_options={"s": s, "m": m2})
    elif m1 == 1.0 and m2 == 0.0:
        config.update(loss="cosface", loss_options={"s": s, "m": m3})
    else:
        raise ValueError(
            f"the checkpoint was trained with the combined margin m1={m1}, m2={m2}, m3={m3}, which no --loss "
            "trains; it cannot be resumed"
        )
    return config


PRESETS = {
    # CR-FIQA(S): iResNet-50 on CASIA-WebFace (501,195 images of 10,572 identities).
    "crfiqa-s": TrainConfig(
        depths=list(STAGE_DEPTHS["iresnet50"]), num_classes=10572, epochs=34, lr_steps=[20, 28, 32]
    ),
    # CR-FIQA(L): iResNet-100 on MS1MV2 (5,822,653 images of 85,742 identities).
    "crfiqa-l": TrainConfig(
        depths=list(STAGE_DEPTHS["iresnet100"]), num_classes=85742, epochs=18, lr_steps=[8, 14, 20, 25]
    ),
    # A few-minute CPU run on small inputs (32×32) to try the pipeline; identities from the data.
    "tiny": TrainConfig(
        depths=[1, 1, 1, 1],
        widths=[16, 32, 64, 128],
        embedding_size=64,
        image_size=32,
        epochs=4,
        lr_steps=[3],
        batch_size=32,
        checkpoint_every=100,
        log_every=10,
        num_workers=0,
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A preset's config with some fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name].replace(**overrides)
