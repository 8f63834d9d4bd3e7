"""Where a search's trials start: the framework's COCO-pretrained weights by default, from scratch by choice.

Users fine-tune: Ultralytics' CLI starts from `yolo11n-seg.pt`, torchvision users from
`MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1`, Detectron2 users from a model-zoo checkpoint. A search
that trains from scratch by default compares something else, and its early epochs (AP 0 in every
trial) tell ASHA nothing. The rule, the same for every framework:

- `--weights none`: from scratch (the from-scratch default model, the from-scratch space);
- `--weights W`, or a `--model` that is itself a weights file: fine-tuning from that;
- neither: the framework's COCO-pretrained weights of the model (`adapter.pretrained_weights`).
  Already where the framework looks: used. Downloadable: downloaded now, once, before any trial,
  into the framework's own cache (`adapter.fetch_pretrained`). Neither (offline) or the download
  fails: from scratch, and the header line says what was wanted, why not, and how to give a local
  file. A search never fails for that reason alone, and never claims weights it does not have.
- the default search space follows the starting point: `search_spaces/<framework>[_finetune][_cpu].yaml`
  (`--space` overrides it); so do the default epochs and trials (runners/plan/budget.py).

No Ray, no printing: the adapter's two class methods are the only calls out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segtune.core.errors import ConfigError
from segtune.search_spaces.space import SPACES_DIR, default_space_path
from segtune.trainers.base import TrainerAdapter
from segtune.trainers.pretrained import PretrainedWeights

if TYPE_CHECKING:
    from segtune.runners.request import FrameworkRequest

FROM_SCRATCH = "none"  # --weights none


@dataclass(frozen=True)
class StartingPoint:
    """The model and weights every trial starts from, where they came from, and the space for them."""

    model: str  # the model every trial trains ("" never)
    weights: str | None  # as the trials get them; None: from scratch, or the model file holds them
    pretrained: bool  # fine-tuning (the fine-tuning space and defaults) rather than from scratch
    source: str  # where the starting point came from, in a few words
    note: str | None  # pretrained weights were wanted but cannot be had: what, why not, how to give them
    space_path: Path  # the search space: the user's --space, or the default for this starting point

    def header(self, models: tuple[str, ...] = ()) -> str:
        """The one header line that names the starting point and where it came from (`models`: the model
        choices of a search over several frameworks, when they are not just `model`)."""
        space = self.space_path
        shown = f"search_spaces/{space.name}" if space.parent == SPACES_DIR else str(space)
        if self.pretrained:
            start = f"starting from {self.weights or self.model} ({self.source})"
        else:
            start = f"from scratch ({self.note or self.source})"
        named = f"models {', '.join(models)}" if len(models) > 1 else f"model {models[0] if models else self.model}"
        return f"{named}, {start}; search space {shown}"


def given_weights(weights: str | None) -> str | None:
    """The weights the user gave as the framework gets them: None for `--weights none` (or none given)."""
    return None if weights is None or weights.strip().lower() == FROM_SCRATCH else weights


def scratch_model(adapter: type[TrainerAdapter], model: str, has_gpu: bool) -> str:
    """The model a from-scratch search trains: the user's, or the adapter's from-scratch default
    (a smaller one without a GPU)."""
    return model or (adapter.default_model if has_gpu else adapter.default_model_cpu or adapter.default_model)


def from_scratch(
    adapter: type[TrainerAdapter], model: str, has_gpu: bool, space: Path | None, why: str, note: str | None = None
) -> StartingPoint:
    """A from-scratch starting point (`why`: the reason, for the header)."""
    return StartingPoint(
        model=scratch_model(adapter, model, has_gpu),
        weights=None,
        pretrained=False,
        source=why,
        note=note,
        space_path=space or default_space_path(adapter.framework, cpu_only=not has_gpu, finetune=False),
    )


def starting_point(
    adapter: type[TrainerAdapter], *, model: str, weights: str | None, space: Path | None, has_gpu: bool
) -> StartingPoint:
    """The starting point of a search (see the module docstring for the rule).

    Args:
        adapter: the framework's adapter class.
        model: --model as given ("" for the default).
        weights: --weights as given (None: not given; "none": from scratch).
        space: --space as given, or None for the default of the starting point.
        has_gpu: whether the trials get GPUs.

    Returns:
        The StartingPoint; `note` is set when pretrained weights were wanted and could not be had.

    Raises:
        ConfigError: `model` is not one of the framework's.
    """

    def finetuning(model_: str, weights_: str | None, source: str) -> StartingPoint:
        path = space or default_space_path(adapter.framework, cpu_only=not has_gpu, finetune=True)
        return StartingPoint(model_, weights_, True, source, None, path)

    if weights is not None and given_weights(weights) is None:
        return from_scratch(adapter, model, has_gpu, space, f"--weights {FROM_SCRATCH}")
    if weights is not None:
        return finetuning(scratch_model(adapter, model, has_gpu), weights, "--weights")
    found = adapter.pretrained_weights(model, has_gpu)
    if found.in_model:
        return finetuning(found.model, None, "--model: the file holds the weights")
    if found.wanted is None:
        return from_scratch(adapter, model, has_gpu, space, found.why_not)
    if not found.available:
        return from_scratch(adapter, model, has_gpu, space, "", note=_missing_note(found, found.why_not))
    try:
        ready = adapter.fetch_pretrained(found)
    except (ConfigError, OSError) as exc:
        why = f"the download failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        return from_scratch(adapter, model, has_gpu, space, "", note=_missing_note(found, why))
    where = f"found at {found.found_at}" if found.found_at else f"downloaded into {found.cache_path}"
    return finetuning(found.model, ready, f"COCO-pretrained {found.wanted}, {where}")


def _missing_note(found: PretrainedWeights, why: str) -> str:
    """What was wanted, why not, and how to give a local file: the one line a search that falls back
    to training from scratch prints."""
    place = f"place the file at {found.cache_path} or " if found.cache_path else ""
    return (
        f"wanted COCO-pretrained {found.wanted} for {found.model}, but {why}; to fine-tune, {place}"
        f"pass --weights FILE (--weights {FROM_SCRATCH}: from scratch, without this note)"
    )


def starting_point_of_choices(
    adapter: type[TrainerAdapter], *, models: tuple[str, ...], weights: str | None, space: Path | None, has_gpu: bool
) -> StartingPoint:
    """The starting point of one framework of a search over several (`models`: its --model choices,
    empty for the default): as `starting_point`; several model choices without --weights train from
    scratch, since each model would need weights of its own."""
    if len(models) > 1 and weights is None:
        return from_scratch(
            adapter,
            models[0],
            has_gpu,
            space,
            "several --model choices; give one --model FRAMEWORK=MODEL to fine-tune it",
        )
    return starting_point(adapter, model=models[0] if models else "", weights=weights, space=space, has_gpu=has_gpu)


def search_starting_points(
    wanted: tuple[FrameworkRequest, ...],
    adapters: dict[str, type[TrainerAdapter]],
    has_gpu: bool,
    config: Path | None = None,
) -> dict[str, StartingPoint]:
    """Each framework's starting point for a new search, by framework name: `starting_point` for one
    framework (`config`: a --config file stands for its space), `starting_point_of_choices` for each of
    several. May download the framework's pretrained weights, once, into its own cache."""
    if len(wanted) > 1:
        return {
            f.name: starting_point_of_choices(
                adapters[f.name], models=f.models, weights=f.weights, space=f.space, has_gpu=has_gpu
            )
            for f in wanted
        }
    (only,) = wanted
    return {
        only.name: starting_point(
            adapters[only.name],
            model=only.models[0] if only.models else "",
            weights=only.weights,
            space=only.space or config,
            has_gpu=has_gpu,
        )
    }
