"""The job store: real training subprocesses launched, watched, cancelled, resumed, adopted after the app dies,
failed with their reason; bad input refused before anything starts; students served on the live canvas."""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from distillation.config import load_config
from distillation.jobs import (
    DONE,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    STOPPED,
    Job,
    JobError,
    JobStore,
    records,
)
from pipelines.engine import Request
from pipelines.host import LiveHost
from pipelines.registry import Registry
from pipelines.tiny import SketchTinyNet, TinyConfig, save_tiny
from ui.distill_form import job_overrides

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "distillation" / "presets" / "tiny_scm_ladd.toml"
TEACHER_MANIFEST = """name = "tiny-teacher"
title = "Tiny random SketchTinyNet teacher (16 px)"
backend = "tiny"
resolution = 16
steps = 8
allowed_steps = [1, 2, 4, 8]
dtype = "float32"
min_vram_gb = 0

[components]
weights = "./tiny-teacher"
"""


def tiny_net(seed: int) -> SketchTinyNet:
    """A 16 px SketchTinyNet with seeded random weights, output layers included (they start at zero: v = 0)."""
    torch.manual_seed(seed)
    net = SketchTinyNet(TinyConfig(resolution=16, channels=(8, 16), blocks=1, attention=False, emb_dim=32))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def make_teacher_models(folder: Path) -> Path:
    """A models folder with one flow-matching teacher the trainer and TinyEngine both read (random, 16 px)."""
    save_tiny(tiny_net(seed=0), folder / "tiny-teacher")
    (folder / "tiny-teacher.toml").write_text(TEACHER_MANIFEST)
    return folder


def tiny_student_overrides(registry: Registry, steps: int, *extra: str) -> list[str]:
    """The tab's choice "teacher: a model of this app (tiny-teacher), method sCM" with no previews."""
    overrides = job_overrides(
        PRESET, registry, teacher="model", teacher_model="tiny-teacher", method="scm", steps=steps
    )
    return [*overrides, "--preview.every=0", *extra]


def wait_for(store: JobStore, job_id: str, done, timeout: float = 240.0, what: str = "") -> Job:
    """Poll the record until `done(job, progress)`; fails with the record and the log tail on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job, progress = store.get(job_id), store.progress(job_id)
        if done(job, progress):
            return job
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {store.get(job_id)}\n{store.progress(job_id).log_tail}")


def metric_steps(store: JobStore, job_id: str) -> list[int]:
    return [row["step"] for row in store.metrics(job_id)]


def frame_for(host: LiveHost, model: str):
    sketch = np.full((64, 64, 3), 255, np.uint8)
    sketch[20:44, 30:34] = 0
    return host.draw(Request(session="jobs-test", version=time.time_ns(), model=model, prompt="", sketch=sketch))


@pytest.fixture
def models(tmp_path) -> Registry:
    return Registry(make_teacher_models(tmp_path / "models"))


@pytest.fixture
def make_store(tmp_path, models, monkeypatch):
    """JobStores on one jobs folder (closed at the end); training processes get one thread each."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    stores = []

    def make(**kwargs) -> JobStore:
        kwargs.setdefault("gpus", 0)
        store = JobStore(tmp_path / "jobs", models, poll_s=0.1, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def test_jobs_tiny_job_runs_in_a_subprocess_reports_progress_and_its_student_draws_on_the_live_canvas(
    make_store, models
):
    finished = []
    store = make_store(on_finish=finished.append)
    overrides = tiny_student_overrides(models, 4, "--checkpoint_every=2")
    job = store.launch(PRESET, overrides, teacher_model="tiny-teacher")
    assert job.state == QUEUED and job.total == 4 and job.name.startswith("tiny-scm-ladd-")
    running = wait_for(store, job.id, lambda j, p: j.state == RUNNING, what="the start")
    cmdline = Path(f"/proc/{running.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:3] == [b"-m", b"distillation.train"] and b"--out" in cmdline  # an argument list, no shell
    with pytest.raises(JobError, match="cancel it first"):
        store.delete(job.id)
    seen = []
    while store.get(job.id).state == RUNNING:
        progress = store.progress(job.id)
        if progress.it_s is not None:
            seen.append((progress.step, progress.total))
        time.sleep(0.05)
    job = store.get(job.id)
    assert job.state == DONE and job.exit_code == 0 and job.reason == "", job.reason
    assert seen and all(0 < step <= total == 4 for step, total in seen), seen
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert metric_steps(store, job.id) == [1, 2, 3, 4] and store.progress(job.id).checkpoint_step == 4
    assert job.export == "listed" and [j.id for j in finished] == [job.id]
    assert job.name in models.specs()  # the store refreshed the app's registry: no restart
    shown = store.progress(job.id).log_tail  # the log pane reads as words; the raw JSON stays in log.txt
    assert '{"event"' not in shown and "step 4/4 · losses: " in shown and "done at step 4" in shown
    assert '{"event": "done", "step": 4}' in (store.folder / job.id / "log.txt").read_text()

    host = LiveHost(models, "cpu")
    try:
        frame = frame_for(host, job.name)
        assert frame.status == "ok" and frame.image is not None, frame.message
        assert host.engine(job.name).model.config.kind == "trigflow"  # the distilled student, not the teacher
    finally:
        host.close()
    store.delete(job.id)
    assert not (store.folder / job.id).exists() and job.name in Registry(models.models_dir).specs()


def test_jobs_cancel_then_resume_continues_from_the_checkpoint_and_the_sana_student_is_listed(make_store, models):
    store = make_store()
    job = store.launch(PRESET, ["--max_steps=8", "--preview.every=0", "--checkpoint_every=0"])
    wait_for(store, job.id, lambda j, p: j.state == RUNNING and p.step >= 1, what="the first step")
    assert store.cancel(job.id).state == "stopping"
    job = wait_for(store, job.id, lambda j, p: j.state == STOPPED, what="the stop")
    stopped_at = store.progress(job.id).checkpoint_step
    assert job.exit_code == 143 and 1 <= stopped_at < 8
    assert f"cancelled at step {stopped_at}; resumable from step {stopped_at}" in job.reason
    assert metric_steps(store, job.id) == list(range(1, stopped_at + 1))
    with pytest.raises(JobError, match="nothing to cancel"):
        store.cancel(job.id)

    assert store.resume(job.id).state == QUEUED
    job = wait_for(store, job.id, lambda j, p: j.state in (DONE, FAILED), what="the resumed run")
    assert job.state == DONE and job.runs == 2, job.reason
    steps = metric_steps(store, job.id)
    assert steps == list(range(1, 9))  # strictly increasing and complete: no step repeated or lost
    log = (store.folder / job.id / "log.txt").read_text()
    starts = [json.loads(line) for line in log.splitlines() if line.startswith('{"event": "start"')]
    assert [s["step"] for s in starts] == [0, stopped_at] and log.count("--resume latest") == 1

    # The tiny Sana student is exported, but the Sana backend serves a student's 'transformer' only beside a 'base'
    # (tokenizer, Gemma, DC-AE), which the tiny preset's export does not name: never "ready", the job says why, and
    # drawing with it anyway is a clear error, not a KeyError.
    assert models.get(job.name).backend == "sana" and models.status(models.get(job.name)).state == "missing"
    assert job.export.startswith("not usable: cannot draw: the manifest names no 'base' component"), job.export
    host = LiveHost(models, "cpu")
    try:
        frame = frame_for(host, job.name)
    finally:
        host.close()
    assert frame.status == "error" and "base" in frame.message


APP = """
import sys, time
from pathlib import Path
from distillation.jobs import JobStore
from pipelines.registry import Registry
store = JobStore(Path(sys.argv[1]), Registry(Path(sys.argv[2])), gpus=0, poll_s=0.1)
job = store.launch(sys.argv[3], sys.argv[4:])
while store.progress(job.id).step < 1:
    time.sleep(0.1)
print(job.id, flush=True)
time.sleep(600)
"""


def test_jobs_killing_the_app_leaves_the_job_running_and_a_new_store_shows_its_true_state(
    make_store, models, tmp_path
):
    overrides = tiny_student_overrides(models, 12, "--checkpoint_every=1")
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(tmp_path / "jobs"), str(models.models_dir), str(PRESET), *overrides],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        job_id = app.stdout.readline().strip()
    finally:
        app.kill()  # the app dies mid-job (SIGKILL: no clean-up of any kind)
        app.wait()
    store = make_store()
    job = store.get(job_id)
    assert job.state == RUNNING and store.progress(job_id).step >= 1
    store.tick()
    assert store.get(job_id).state == RUNNING  # adopted: its process is alive and is the same process
    before = store.progress(job_id).step
    wait_for(store, job_id, lambda j, p: p.step > before, what="progress under the new store")
    store.close()

    os.killpg(job.pid, signal.SIGKILL)  # now the job dies too, with no app watching
    time.sleep(0.5)
    store = make_store()
    store.tick()
    job = store.get(job_id)
    ckpt = store.progress(job_id).checkpoint_step
    assert job.state == INTERRUPTED and job.exit_code is None and ckpt is not None and ckpt >= 1
    assert "ended while no app watched it" in job.reason and f"resumable from step {ckpt}" in job.reason

    store.resume(job_id)
    job = wait_for(store, job_id, lambda j, p: j.state in (DONE, FAILED), what="the resumed run")
    assert job.state == DONE, job.reason
    assert metric_steps(store, job_id) == list(range(1, 13))


def test_jobs_a_job_that_fails_after_start_or_is_killed_is_marked_failed_with_the_reason(make_store, models):
    store = make_store()
    bad = store.launch(PRESET, ["--max_steps=4", "--preview.every=0", "--teacher.feature_blocks=[99]"])
    victim = store.launch(PRESET, tiny_student_overrides(models, 40, "--checkpoint_every=0"))
    wait_for(store, bad.id, lambda j, p: j.state == RUNNING, what="the first job's start")
    assert store.get(victim.id).state == QUEUED  # one job at a time: the second waits in the queue
    bad = wait_for(store, bad.id, lambda j, p: j.state == FAILED, what="the failure")
    assert bad.exit_code == 2 and "bad input: teacher.feature_blocks: [99] out of range" in bad.reason

    wait_for(store, victim.id, lambda j, p: j.state == RUNNING and p.step >= 1, what="the second job's first step")
    os.kill(store.get(victim.id).pid, signal.SIGKILL)
    victim = wait_for(store, victim.id, lambda j, p: j.state == FAILED, what="the crash")
    assert victim.exit_code == -9 and "killed by SIGKILL at step" in victim.reason
    assert "no checkpoint: resume starts over" in victim.reason


def test_jobs_launches_at_once_queue_distinct_jobs_and_refuse_a_duplicate(make_store, models):
    store = make_store(start=False)
    overrides = ["--max_steps=3"]
    results, barrier = [], threading.Barrier(4)

    def launch(extra):
        barrier.wait()
        try:
            results.append(store.launch(PRESET, [*overrides, *extra]).id)
        except JobError as error:
            results.append(str(error))

    threads = [threading.Thread(target=launch, args=(extra,)) for extra in ([], [], ["--seed=1"], ["--seed=1"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [r for r in results if records.ID_RE.fullmatch(r)]
    refusals = [r for r in results if r not in ids]
    assert len(ids) == 2 and len(refusals) == 2, results
    assert all("with the same settings is already queued" in r for r in refusals)
    assert sorted(j.id for j in store.jobs()) == sorted(ids) and {j.state for j in store.jobs()} == {QUEUED}


@pytest.fixture
def pairs_folder(tmp_path):
    def make(kind: str) -> Path:
        folder = tmp_path / f"data-{kind}"
        folder.mkdir()
        if kind == "images":
            for i in range(3):
                (folder / f"cat{i}.png").write_bytes(b"\x89PNG not really")
                (folder / f"cat{i}.txt").write_text("a cat")
        elif kind == "unreadable":
            (folder / "train.npz").write_bytes(b"this is not a zip archive")
            (folder / "captions.npz").write_bytes(b"nor this")
        elif kind == "zero":
            empty = {"sketch": (0, 8, 8), "image": (0, 8, 8, 3), "caption_index": (0,)}
            np.savez(folder / "train.npz", **{key: np.zeros(shape, np.uint8) for key, shape in empty.items()})
            np.savez(folder / "captions.npz", text=np.array(["a"]), embedding=np.zeros((1, 384), np.float16))
        return folder

    return make


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown key", "unknown key 'optim.lrr'"),
        ("trainer flag", "unknown key 'out'"),
        ("reserved key", "--export.models_dir: set by the app"),
        ("not an override", "write it as --key=value"),
        ("empty data folder", "no data in"),
        (
            "image folder",
            "holds 3 images but no prepared pairs (train.npz.: to train on them, choose the data 'a "
            "folder of images' (data.kind = 'image_folder'.",
        ),
        ("image folder without images", "no images in"),
        ("image folder that is prepared pairs", "(it holds prepared pairs: choose those instead."),
        ("missing image folder", "nowhere does not exist"),
        ("unreadable data", "cannot read train.npz"),
        ("zero pairs", "train.npz holds 0 pairs"),
        ("teacher without a model", "holds no model (no config.json"),
        ("uncached hub teacher offline", "is not in the local cache and the hub is offline"),
        ("malformed hub id", "is neither a folder"),
        ("batch below the method's minimum", "batch_size: scm_ladd needs at least 2"),
        ("bad student name", "student name '../evil'"),
        ("taken student name", "student name 'tiny-teacher' is taken"),
        ("full disk", "not enough disk space"),
        ("disk full while writing", "cannot write the job record"),
    ],
)
def test_jobs_bad_input_is_refused_with_a_clear_message_and_nothing_starts(
    make_store, models, pairs_folder, tmp_path, monkeypatch, case, message
):
    store = make_store(start=False)
    kwargs, overrides = {}, ["--max_steps=2"]
    if case == "unknown key":
        overrides.append("--optim.lrr=1")
    elif case == "trainer flag":
        overrides.append("--out=/tmp/elsewhere")
    elif case == "reserved key":
        overrides.append("--export.models_dir=/tmp")
    elif case == "not an override":
        overrides.append("; rm -rf ~")
    elif case in ("empty data folder", "image folder", "unreadable data", "zero pairs"):
        kinds = {"empty data folder": "empty", "image folder": "images", "unreadable data": "unreadable"}
        kind = kinds.get(case, "zero")
        overrides += ["--data.kind=sketch_pairs", f"--data.path={json.dumps(str(pairs_folder(kind)))}"]
    elif case in ("image folder without images", "image folder that is prepared pairs", "missing image folder"):
        folder = {
            "image folder without images": pairs_folder("empty"),
            "image folder that is prepared pairs": pairs_folder("zero"),
            "missing image folder": tmp_path / "nowhere",
        }[case]
        overrides += job_overrides(
            PRESET,
            models,
            teacher="model",
            teacher_model="tiny-teacher",
            method="scm",
            data="image_folder",
            data_path=str(folder),
        )
    elif case == "teacher without a model":
        (tmp_path / "not-a-model").mkdir()
        overrides += job_overrides(PRESET, models, teacher="folder", teacher_path=str(tmp_path / "not-a-model"))
    elif case == "uncached hub teacher offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        overrides += job_overrides(PRESET, models, teacher="hub", teacher_path="someone/not-cached-teacher")
    elif case == "malformed hub id":
        overrides += ['--teacher.random=""', "--teacher.controlnet=false", '--teacher.path="a/b/../c"']
    elif case == "batch below the method's minimum":
        overrides.append("--batch_size=1")
    elif case == "bad student name":
        kwargs["name"] = "../evil"
    elif case == "taken student name":
        kwargs["name"] = "tiny-teacher"
    elif case == "full disk":
        store = make_store(start=False, disk_free=lambda path: 10 * 2**20)
    else:

        def full(path, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(records, "atomic_write", full)
    with pytest.raises(JobError, match=message.replace("(", r"\(").replace("[", r"\[")):
        store.launch(PRESET, overrides, **kwargs)
    assert store.jobs() == [] and not [
        p for p in (store.folder.iterdir() if store.folder.exists() else []) if p.name != ".lock"
    ]
    host = LiveHost(models, "cpu")  # the live canvas is unaffected
    try:
        assert frame_for(host, "tiny-teacher").status == "ok"
    finally:
        host.close()


def test_jobs_estimate_probes_the_settings_and_launch_refuses_too_little_memory(make_store):
    store = make_store(start=False, memory=lambda busy: (0.01, "host memory (available)"))
    overrides = ["--max_steps=50"]
    estimate = store.estimate(PRESET, overrides)
    assert estimate.device == "cpu" and estimate.max_steps == 50 and estimate.trainable_params > 0
    assert 0 < estimate.s_per_step and estimate.time_s == pytest.approx(
        estimate.setup_s + 50 * estimate.s_per_step, abs=0.2
    )
    assert estimate.memory_gb >= estimate.peak_memory_gb > 0.01 and estimate.disk_gb > 0
    with pytest.raises(JobError, match=r"not enough memory: these settings need about .* GB \(estimate\) and 0.01 GB"):
        store.launch(PRESET, overrides)
    assert store.jobs() == []
    with pytest.raises(JobError, match=r"fail in a 3-step probe: .*feature_blocks: \[99\] out of range"):
        store.estimate(PRESET, ["--teacher.feature_blocks=[99]"])


def test_jobs_paths_and_names_reach_the_trainer_as_single_arguments(make_store, models, tmp_path):
    weird = tmp_path / "a folder; $(touch pwned) 'quoted' \"too\""
    make_teacher_models(weird)
    overrides = job_overrides(
        PRESET,
        models,
        teacher="folder",
        teacher_path=str(weird / "tiny-teacher"),
        teacher_kind="sketch_tiny",
        method="scm",
        steps=2,
    )
    assert load_config(PRESET, overrides).teacher.path == str(weird / "tiny-teacher")
    store = make_store(start=False)
    job = store.launch(PRESET, overrides, name="weird.name_1")
    command = store.command(job)
    assert command[:3] == [sys.executable, "-m", "distillation.train"]
    assert f"--teacher.path={json.dumps(str(weird / 'tiny-teacher'))}" in command
    assert command[command.index("--out") + 1] == str(store.folder / job.id)
    multi = make_store(start=False, gpus=2).command(job)
    assert multi[1:6] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    assert multi[multi.index("-m", 2) : multi.index("-m", 2) + 2] == ["-m", "distillation.train"]
    with pytest.raises(JobError, match="no job"):
        store.get("../../etc")


def test_jobs_an_image_folder_is_estimated_and_reaches_the_trainer_as_one_argument(make_store, models, tmp_path):
    """The tab's data choice "a folder of images": the probe prepares it (into data.cache, where the job will find
    it) and runs the job's steps; the launched command carries the folder as a single argument, never a shell."""
    from tests.distillation.test_data_folders import image_folder

    folder = image_folder(tmp_path / "my photos; $(touch pwned) 'q'")
    cache = tmp_path / "cache"
    overrides = job_overrides(
        PRESET,
        models,
        teacher="model",
        teacher_model="tiny-teacher",
        method="scm",
        steps=2,
        data="image_folder",
        data_path=str(folder),
        sketch="lineart",
    )
    assert overrides[-5:-1] == [
        "--data.kind=image_folder",
        f"--data.path={json.dumps(str(folder))}",
        '--data.sketch="lineart"',
        "--data.augment=false",
    ]
    overrides += [f"--data.cache={json.dumps(str(cache))}", "--preview.every=0"]
    cfg = load_config(PRESET, overrides)
    assert (cfg.data.kind, cfg.data.path, cfg.data.sketch) == ("image_folder", str(folder), "lineart")
    store = make_store(start=False)
    estimate = store.estimate(PRESET, overrides)
    assert estimate.trainable_params > 0 and estimate.s_per_step > 0
    (prepared,) = cache.iterdir()  # the probe's preparation, kept for the job
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert (
        manifest["counts"]["used"] == 5 and manifest["resolution"] == 16 and manifest["sketch"]["method"] == "lineart"
    )
    job = store.launch(PRESET, overrides)
    command = store.command(job)
    assert f"--data.path={json.dumps(str(folder))}" in command and not (ROOT / "pwned").exists()
    with pytest.raises(JobError, match="give the folder of your images"):
        job_overrides(PRESET, models, data="image_folder", data_path="  ")
    with pytest.raises(JobError, match="sketch extractor 'sobel': one of canny, lineart, hed"):
        job_overrides(PRESET, models, data="image_folder", data_path=str(folder), sketch="sobel")
