"""The Fine-tune-on-my-pictures path: a folder of pictures checked, a time budget turned into the steps that fit at
the measured speed, and the job queued."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from distillation.data import FOLDER_SUFFIXES, DataError, caption_from_name, list_images, read_caption
from distillation.jobs import FINETUNE_PRESET, Estimate, EstimateTimeout, Job, JobError, JobStore, toml_string
from pipelines.registry import Registry
from ui.distill_form import DEFAULT_TEACHER

# what the job spends before its trainer is set up (python start and imports: 5-9 s on an idle 2-core CPU, 15 s on a
# loaded one), what the budget keeps back for the app to start the process, and the headroom asked of the step count
# so the wall-clock stop (counted from the process's start) rarely has to act
STARTUP_S = 10.0
STOP_MARGIN_S = 2.0
STEP_HEADROOM = 1.1
UNMEASURED_STEPS = 100_000  # the fine-tune's step count when the estimate could not measure: the time budget decides
FINETUNE_NAME = "my-style"


@dataclass(frozen=True)
class FolderCheck:
    """What a folder of pictures holds for fine-tuning, found without preparing it."""

    folder: str
    images: int  # pictures that open (header read)
    captioned: int  # of those, with a non-empty same-name .txt caption
    named: int  # without one, captioned from the file name instead
    unreadable: list[str]

    def text(self) -> str:
        """The check in one plain sentence."""
        if not self.images:
            return f"No usable pictures in {self.folder}."
        plural = "s" if self.images != 1 else ""
        parts = [
            f"**{self.images} usable picture{plural}** in {self.folder}: {self.captioned} with a caption (.txt "
            f"beside it), {self.named} captioned from the file name"
        ]
        rest = self.images - self.captioned - self.named
        if rest:
            parts.append(f", {rest} with no caption (trained with an empty prompt)")
        if self.unreadable:
            names = ", ".join(self.unreadable[:3])
            parts.append(f"; {len(self.unreadable)} cannot be opened and are skipped: {names}")
        if self.images < 8:
            parts.append("; 8 or more pictures give a clearer style (20-50 is a good size)")
        return "".join(parts) + "."


def check_folder(path: str) -> FolderCheck:
    """Count a folder's usable pictures and captions (the fine-tune path's validation); JobError says what is wrong
    with the path itself."""
    text = (path or "").strip()
    if not text:
        raise JobError("give the folder that holds your pictures (png, jpg, webp or bmp; subfolders too)")
    root = Path(text).expanduser()
    try:
        images = list_images(root)
    except DataError as error:
        raise JobError(str(error)) from error
    usable, captioned, named, unreadable = 0, 0, 0, []
    for image in images:
        try:
            with Image.open(image) as opened:
                opened.size  # noqa: B018 - the header is read: a file that is not a picture fails here
        except Exception:
            unreadable.append(image.relative_to(root).as_posix())
            continue
        usable += 1
        caption, _ = read_caption(image)
        if caption:
            captioned += 1
        elif caption_from_name(image):
            named += 1
    if not images:
        raise JobError(
            f"no pictures in {root} (looked for {'/'.join(FOLDER_SUFFIXES)} files there and in its subfolders)"
        )
    return FolderCheck(str(root.resolve()), usable, captioned, named, unreadable)


def check_ok(folder: str) -> bool:
    """Whether a folder path names a folder with at least one picture (the estimate is worth running)."""
    try:
        return check_folder(folder).images > 0
    except JobError:
        return False


def finetune_overrides(folder: str, *, minutes: float, estimate: Estimate | None) -> list[str]:
    """The fine-tune path as overrides of FINETUNE_PRESET: the folder, a wall-clock stop at the budget (less the
    process start) and, with an estimate, max_steps = the steps that fit at its measured s/step."""
    if not minutes or minutes <= 0:
        raise JobError("the time budget must be more than 0 minutes")
    limit = max(1.0, minutes * 60 - STOP_MARGIN_S)
    out = [
        f"--data.path={toml_string(str(Path(folder.strip()).expanduser().resolve()))}",
        f"--time_limit_s={limit:.1f}",
    ]
    if estimate is not None:
        train_s = limit - STARTUP_S - estimate.setup_s - 5.0
        out.append(f"--max_steps={max(1, int(train_s / (estimate.s_per_step * STEP_HEADROOM)))}")
    return out


def estimate_words(estimate: Estimate, steps: int, minutes: float | None = None) -> str:
    """An estimate as a person reads it: "about N minutes for M steps on this CPU"."""
    where = (
        "this CPU"
        if estimate.device == "cpu"
        else "this GPU"
        if estimate.device.startswith("cuda")
        else (estimate.device)
    )
    total = estimate.setup_s + STARTUP_S + steps * estimate.s_per_step
    minutes_text = (
        f"About {round(total / 60)} minute{'s' if round(total / 60) > 1 else ''}"
        if total >= 90
        else ("About 1 minute" if total >= 45 else "Under a minute")
    )
    text = f"**{minutes_text} for {steps} steps** on {where} ({estimate.s_per_step:.2f} s a step, measured just now)"
    if minutes:
        text += f"; the job stops at {minutes:g} minutes whatever happens, and keeps what it learnt by then"
    return text + "."


def free_name(registry: Registry, jobs: JobStore, base: str = FINETUNE_NAME) -> str:
    """`base`, or `base-2`, `base-3`... : the first name no model and no job has."""
    taken = set(registry.specs()) | {job.name for job in jobs.jobs()}
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}-{k}"
    return name


def finetune_check(folder: str) -> str:
    """The folder box's answer: usable pictures and captions, or what is wrong, in plain words."""
    if not (folder or "").strip():
        return "Give the folder that holds your pictures (png, jpg, webp or bmp; subfolders too)."
    try:
        return check_folder(folder).text()
    except JobError as error:
        return f"**Not usable:** {error}"


def finetune_estimate(jobs: JobStore, folder: str, minutes: float | None) -> str:
    """ "About N minutes for M steps on this CPU" for the fine-tune path (a few seconds the first time, then at once),
    or why not."""
    try:
        check = check_folder(folder)
        if not check.images:
            raise JobError(f"no usable pictures in {check.folder}")
        minutes = float(minutes or 0)
        estimate = jobs.quick_estimate(FINETUNE_PRESET, finetune_overrides(folder, minutes=minutes, estimate=None))
        steps = int(finetune_overrides(folder, minutes=minutes, estimate=estimate)[-1].split("=")[1])
        return estimate_words(estimate, steps, minutes)
    except JobError as error:
        return f"**No estimate:** {error}"


def finetune_launch(jobs: JobStore, registry: Registry, folder: str, name: str, minutes: float | None) -> Job:
    """Queue the fine-tune path's job: the folder, the name and the budget turned into steps by the estimate."""
    check = check_folder(folder)
    if not check.images:
        raise JobError(f"no usable pictures in {check.folder}")
    minutes = float(minutes or 0)
    try:
        estimate = jobs.quick_estimate(FINETUNE_PRESET, finetune_overrides(folder, minutes=minutes, estimate=None))
        overrides = finetune_overrides(folder, minutes=minutes, estimate=estimate)
    except EstimateTimeout:  # a busy machine: no step count, the wall-clock stop alone ends the job
        overrides = [*finetune_overrides(folder, minutes=minutes, estimate=None), f"--max_steps={UNMEASURED_STEPS}"]
    teacher = DEFAULT_TEACHER if DEFAULT_TEACHER in registry.specs() else ""
    return jobs.launch(FINETUNE_PRESET, overrides, name=(name or "").strip(), teacher_model=teacher)
