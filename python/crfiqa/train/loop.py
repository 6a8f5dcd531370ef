"""The CR-FIQA training loop: iResNet backbone + fused margin head + CR regression (DESIGN §2).

Exact resume: a checkpoint holds the backbone, head, optimizer, scheduler and grad scaler, the
global torch RNG (dropout), the flip generator, and the position (epoch, batches done in it). The
data order is a function of ``(seed, epoch)`` (DistributedSampler), so a resumed run skips the
batches already done and continues with the very batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

import crfiqa_kernels as ck

from ..data import SkipLog, Skipped, collate, dataset_size, random_horizontal_flip
from ..models import build_iresnet
from . import distributed
from .checkpoint import load_checkpoint, save_atomic
from .config import TrainConfig, upgrade
from .interrupt import StopRequests, TrainingInterrupted
from .losses import loss_parameters
from .output_folder import move_run_aside, run_files
from .run_log import RunLog

CHECKPOINT_FORMAT = 1
# Options that may change between a run and its resumption without changing the steps already
# taken (more epochs extend the run exactly as if it had been planned that long).
RESUMABLE_CHANGES = {"epochs", "num_workers", "log_every", "checkpoint_every", "checkpoint_minutes", "tensorboard"}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    step: int
    epoch: int
    history: list[dict] = field(default_factory=list)  # the logged scalars, one dict per log point
    skipped: int = 0
    checkpoint: str = ""
    backbone: str = ""


@dataclass
class _Position:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


class _ResumedBatches:
    """An epoch's batches after the first ``skip`` ones (index lists only: nothing is loaded)."""

    def __init__(self, batches: BatchSampler, skip: int) -> None:
        self.batches, self.skip = batches, skip

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.skip, None)

    def __len__(self) -> int:
        return len(self.batches) - self.skip


def checkpoint_path(output_dir: str, placement: distributed.Placement) -> str:
    name = "checkpoint.pt" if placement.world_size == 1 else f"checkpoint-rank{placement.rank}.pt"
    return os.path.join(output_dir, name)


def _num_classes(config: TrainConfig, dataset: Dataset) -> int:
    found = getattr(dataset, "num_identities", None)
    if config.num_classes is None:
        if found is None:
            raise ValueError("num_classes is not set and the dataset does not say how many identities it has")
        return found
    if found is not None and found != config.num_classes:
        raise ValueError(f"num_classes is {config.num_classes} but the dataset has {found} identities")
    return config.num_classes


class Trainer:
    """Builds every part of a run from a :class:`TrainConfig`; :meth:`run` trains."""

    def __init__(
        self, config: TrainConfig, dataset: Dataset, output_dir: str, *, device: str | torch.device | None = None
    ) -> None:
        if dataset_size(dataset) == 0:
            raise ValueError("dataset is empty")
        self.config, self.dataset, self.output_dir = config, dataset, os.fspath(output_dir)
        self.placement = distributed.setup(device)
        rank, device = self.placement.rank, self.placement.device
        torch.manual_seed(config.seed + rank)
        self.num_classes = _num_classes(config, dataset)
        self.backbone = build_iresnet(config.model_config()).to(device)
        self.head = distributed.build_head(config, self.num_classes, self.placement)
        self.criterion = ck.CRFIQALoss(self.head, alpha=config.alpha, beta=config.beta, cr=config.cr)
        global_batch = config.batch_size * self.placement.world_size
        self.optimizer = torch.optim.SGD(
            [{"params": self.backbone.parameters()}, {"params": self.head.parameters()}],
            lr=config.base_lr * global_batch / 512,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        # lr × 0.1 from each (1-based) epoch of lr_steps on: milestones are 0-based epoch indices.
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=[step - 1 for step in config.lr_steps], gamma=0.1
        )
        self.scaler = distributed.grad_scaler(config.amp == "fp16", self.placement)
        self.flip_generator = torch.Generator().manual_seed(config.seed + rank)
        self.sampler: DistributedSampler = DistributedSampler(
            dataset, num_replicas=self.placement.world_size, rank=rank, shuffle=True, seed=config.seed, drop_last=True
        )
        self.steps_per_epoch = len(self.sampler) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the dataset's {dataset_size(dataset)} images give no full batch of {config.batch_size} per process"
            )
        self.position = _Position()
        self.skips = SkipLog()
        self.model = distributed.wrap_backbone(self.backbone, self.placement)

    # ---- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "flip": self.flip_generator.get_state()}
        if self.placement.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.placement.device)
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "model_config": self.backbone.config,
            "num_classes": self.num_classes,
            "world_size": self.placement.world_size,
            "rank": self.placement.rank,
            "position": vars(self.position).copy(),
            "backbone": self.backbone.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "skipped": [list(item) for item in self.skips.items],
        }

    def save(self) -> str:
        path = checkpoint_path(self.output_dir, self.placement)
        save_atomic(self.state(), path)
        return path

    def restore(self, path: str) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped."""
        state = load_checkpoint(path, map_location=self.placement.device)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: unknown checkpoint format {state.get('format')!r}")
        saved, current = upgrade(state["config"]), self.config.to_dict()
        defaults = TrainConfig().to_dict()  # for options added since the checkpoint was written
        changed = [
            k
            for k in current
            if k not in RESUMABLE_CHANGES and k != "loss_options" and saved.get(k, defaults[k]) != current[k]
        ]
        # The family's hyperparameters compare with their defaults filled in ({} is {"m": 0.5} for arcface).
        saved_loss = saved.get("loss", defaults["loss"])
        if loss_parameters(saved_loss, saved.get("loss_options", {})) != loss_parameters(
            self.config.loss, self.config.loss_options
        ):
            changed.append("loss_options")
        changed.sort()
        if changed:
            raise ValueError(f"{path} was trained with other values of {changed}; resume with the same options")
        if state["world_size"] != self.placement.world_size:
            raise ValueError(f"{path} comes from {state['world_size']} processes, not {self.placement.world_size}")
        self.backbone.load_state_dict(state["backbone"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.flip_generator.set_state(state["rng"]["flip"].cpu())
        if "cuda" in state["rng"] and self.placement.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.placement.device)
        self.position = _Position(**state["position"])
        self.skips.add([Skipped(*item) for item in state["skipped"]])

    # ---- training ----------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.position.epoch)
        batches = BatchSampler(self.sampler, self.config.batch_size, drop_last=True)
        return DataLoader(
            self.dataset,
            batch_sampler=_ResumedBatches(batches, self.position.batch_in_epoch),
            collate_fn=collate,
            num_workers=self.config.num_workers,
            pin_memory=self.placement.device.type == "cuda",
            # Its own generator: creating the iterator must not draw from the global RNG.
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        device = self.placement.device
        images = random_horizontal_flip(images.to(device, non_blocking=True), self.flip_generator)
        labels = labels.to(device, non_blocking=True)
        amp = self.config.amp
        with torch.autocast(device.type, dtype=AMP_DTYPES.get(amp), enabled=amp != "none"):
            embeddings, quality = self.model(images)
            total, parts = self.criterion(embeddings, quality, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), max_norm=self.config.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": total.detach(), "ce": parts.ce, "quality": parts.quality, "mean_cr": parts.mean_cr}

    def _advance(self) -> None:
        position = self.position
        position.step += 1
        position.batch_in_epoch += 1
        if position.batch_in_epoch == self.steps_per_epoch:
            self.scheduler.step()
            position.epoch += 1
            position.batch_in_epoch = 0

    def run(self, *, max_steps: int | None = None, progress: bool = True) -> TrainResult:
        """Train to the end of the last epoch (or to global step ``max_steps``); checkpoint on the way.

        SIGINT/SIGTERM stop the run at the next step boundary: a checkpoint is saved and
        :class:`TrainingInterrupted` raised."""
        config, placement = self.config, self.placement
        total_steps = config.epochs * self.steps_per_epoch
        if max_steps is not None:
            total_steps = min(total_steps, max_steps)
        log = RunLog(self.output_dir, enabled=placement.is_main, tensorboard=config.tensorboard)
        result = TrainResult(step=self.position.step, epoch=self.position.epoch)
        log.info(f"config {config.to_dict()} classes={self.num_classes} processes={placement.world_size}")
        parameters = loss_parameters(config.loss, config.loss_options)
        log.info(f"loss {config.loss} " + " ".join(f"{name}={value}" for name, value in parameters.items()))
        bar = tqdm(
            total=total_steps,
            initial=self.position.step,
            disable=not (progress and placement.is_main),
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        self.model.train()
        self.head.train()
        last_time, last_step = time.perf_counter(), self.position.step
        last_save = time.monotonic()
        try:
            with StopRequests() as stop:
                while self.position.step < total_steps:
                    for batch in self._batches(stop, log):
                        self.skips.add(batch.skipped)
                        if distributed.every_rank_has_images(batch.images is not None, placement):
                            metrics = self._step(batch.images, batch.targets)
                        else:
                            metrics = None
                            log.warning(f"step {self.position.step + 1}: a batch with no readable image was skipped")
                        self._advance()
                        bar.update(1)
                        step = self.position.step
                        if metrics is not None and (step % config.log_every == 0 or step == total_steps):
                            now = time.perf_counter()
                            images = (step - last_step) * config.batch_size * placement.world_size
                            values = {name: value.item() for name, value in metrics.items()}
                            values["lr"] = self.optimizer.param_groups[0]["lr"]
                            values["images_per_s"] = images / max(now - last_time, 1e-9)
                            last_time, last_step = now, step
                            log.scalars(step, values)
                            result.history.append({"step": step, **values})
                            bar.set_postfix(
                                loss=f"{values['loss']:.3f}",
                                ce=f"{values['ce']:.3f}",
                                q=f"{values['quality']:.4f}",
                                cr=f"{values['mean_cr']:.3f}",
                                img_s=f"{values['images_per_s']:.0f}",
                                refresh=False,
                            )
                        if distributed.any_rank(stop.signum is not None, placement):
                            self._stop(stop, log)
                        minutes = (time.monotonic() - last_save) / 60
                        if step % config.checkpoint_every == 0 or distributed.any_rank(
                            minutes >= config.checkpoint_minutes, placement
                        ):
                            result.checkpoint, last_save = self.save(), time.monotonic()
                        if step >= total_steps:
                            break
                result.checkpoint = self.save()
                if placement.is_main:
                    result.backbone = os.path.join(self.output_dir, "backbone.pth")
                    save_atomic(self.backbone.state_dict(), result.backbone)
        finally:
            bar.close()
            if self.skips.count:
                log.warning(self.skips.summary())
            log.close()
        result.step, result.epoch, result.skipped = self.position.step, self.position.epoch, self.skips.count
        return result

    def _batches(self, stop: StopRequests, log: RunLog):
        """The epoch's remaining batches; a loader that fails because a signal stopped its workers
        ends the run at this step boundary (the position is saved, nothing is lost)."""
        batches = iter(self._loader())
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except RuntimeError:
                if stop.signum is None:
                    raise
                self._stop(stop, log)
            yield batch

    def _stop(self, stop: StopRequests, log: RunLog) -> None:
        """Save, then raise :class:`TrainingInterrupted` (on every rank: one of them was signalled)."""
        path = self.save()
        signum = stop.signum if stop.signum is not None else signal.SIGINT
        log.warning(f"interrupted at step {self.position.step}; checkpoint {path}")
        raise TrainingInterrupted(signum, self.position.step, self.position.epoch, path)


def train(
    config: TrainConfig,
    dataset: Dataset,
    output_dir: str,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    echo=None,
) -> TrainResult:
    """Train CR-FIQA on ``dataset`` (items ``(image tensor, label)``), writing into ``output_dir``.

    An ``output_dir`` that holds a run (a checkpoint or backbone) is never replaced silently:
    ``resume=True`` continues it from its checkpoint, ``overwrite=True`` moves it into
    ``output_dir/previous-N`` and starts again; otherwise ``FileExistsError``. ``echo`` (e.g.
    ``print``) is told where a resumed run starts and where an old run was moved.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    trainer = Trainer(config, dataset, output_dir, device=device)
    placement, say = trainer.placement, (echo if echo is not None and trainer.placement.is_main else None)
    try:
        found = run_files(trainer.output_dir)
        if found and not resume and not overwrite:
            raise FileExistsError(
                f"{trainer.output_dir} holds a run ({', '.join(path.name for path in found)}): continue it with "
                "--resume, start again with --overwrite (the old run is moved into a previous-N folder there), "
                "or choose another --output"
            )
        distributed.barrier(placement)  # every rank has looked before anything moves
        if found and overwrite and placement.is_main:
            aside = move_run_aside(trainer.output_dir)
            if say:
                say(f"moved the previous run into {aside}")
        distributed.barrier(placement)
        if resume:
            path = checkpoint_path(trainer.output_dir, placement)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no checkpoint to resume from: {path}")
            trainer.restore(path)
            if say:
                say(
                    f"resuming from step {trainer.position.step} (epoch {trainer.position.epoch}, "
                    f"batch {trainer.position.batch_in_epoch} of {trainer.steps_per_epoch}) of {path}"
                )
        return trainer.run(max_steps=max_steps, progress=progress)
    finally:
        distributed.teardown(placement)
