"""What an implementation is to the harness, and the steps built from a loss function.

An implementation turns a :class:`Setting` into a *step*: a callable taking one
:class:`~bench.problems.Problem` and returning what a caller would keep (the loss and statistics
for ``fwd``; the gradients for ``fwd_bwd``). The harness times steps and measures their memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from crfiqa_kernels import Margin

from ..problems import DtypeSetting, Problem

MODES = ("fwd", "fwd_bwd")
# What each mode means for a loss: ``fwd`` is the forward of a training step (autograd records
# what the backward needs); ``fwd_bwd`` adds the backward to the gradients of E and W.

Step = Callable[[Problem], object]
LossFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple]


class Unavailable(RuntimeError):
    """The implementation cannot run here (not installed, needs CUDA, unsupported setting)."""


@dataclass(frozen=True)
class Setting:
    device: torch.device
    dtype: DtypeSetting
    mode: str
    margin: Margin
    problems: list[Problem]
    compile_backend: str = "inductor"


@dataclass(frozen=True)
class Semantics:
    """Which float64 oracle a loss implementation matches (DESIGN §2).

    ``margin``: the ArcFace margin, or none (a plain softmax cross-entropy of ``s·c``);
    ``margin_grad``: how the margin is differentiated; ``stats``: whether the loss function also
    returns CCS and NNCCS after the loss; ``row_loss_cap``: a bound the implementation puts on
    each row's loss before the mean (the value only; the gradient is not capped).
    """

    margin: bool = True
    margin_grad: str = "exact"
    stats: bool = False
    row_loss_cap: float = math.inf

    def oracle_margin(self, margin: Margin) -> Margin:
        return margin if self.margin else Margin(s=margin.s, m1=1.0, m2=0.0, m3=0.0)


@dataclass(frozen=True)
class Implementation:
    """``kind``: ``loss`` (a margin/cross-entropy loss; ``build_loss`` is set), ``floor`` or ``search``.

    ``torch_memory``: whether everything it allocates goes through PyTorch's allocator, so that
    its peak extra memory can be measured (faiss allocates on its own).
    """

    name: str
    kind: str
    summary: str
    prepare: Callable[[Setting], Step]
    modes: tuple[str, ...] = MODES
    build_loss: Callable[[Setting], LossFunction] | None = None
    semantics: Semantics | None = None
    torch_memory: bool = True


def loss_implementation(name: str, summary: str, build_loss, semantics: Semantics) -> Implementation:
    """An implementation whose steps run ``build_loss(setting)`` under the setting's autocast.

    The loss function returns a tuple whose first element is the scalar loss.
    """

    def prepare(setting: Setting) -> Step:
        loss_fn = build_loss(setting)
        autocast = setting.dtype.autocast
        if setting.mode == "fwd":

            def forward(problem: Problem):
                with autocast(setting.device):
                    return tuple(loss_fn(problem.embeddings, problem.weight, problem.labels))

            return forward

        def forward_backward(problem: Problem):
            with autocast(setting.device):
                loss, *stats = loss_fn(problem.embeddings, problem.weight, problem.labels)
            grads = torch.autograd.grad(loss, (problem.embeddings, problem.weight))
            return (loss.detach(), *grads, *stats)

        return forward_backward

    return Implementation(name, "loss", summary, prepare, build_loss=build_loss, semantics=semantics)
