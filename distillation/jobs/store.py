"""The job queue: JobStore launches one training subprocess at a time from a jobs folder, cancels, resumes and
deletes jobs, and stays right across app restarts.

    store = JobStore(Path("runs/jobs"), registry)          # the app's registry: students appear in it when done
    job = store.launch(PRESET, ["--max_steps=200"], name="my-student")
    store.progress(job.id).step;  store.cancel(job.id);  store.resume(job.id)

A job is a folder <jobs>/<id>/: job.json (its record, records.py), log.txt (the trainer's stdout and stderr) and what
`python -m distillation.train PRESET ... --out <folder>` writes there (status.json, metrics.jsonl, previews/,
checkpoints/). The folders are the truth: every JobStore on a folder reads the same records, and the one holding
<jobs>/.lock runs the queue: it starts the oldest queued job when none runs (argument lists, never a shell), watches
it, records its end from the exit code and status.json, and after a restart reconciles records whose process is gone.
Training processes run in their own session and write straight to log.txt, so they outlive the app; the next app
adopts a live one by pid (checked against the process start time, so a reused pid is not mistaken for the job).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distillation.config import JobConfig
from distillation.jobs.checks import check_data, check_overrides, check_preset, check_teacher, load_preset
from distillation.jobs.probe import PROBE_STEPS, Estimate, EstimateTimeout, probe_command, read_probe
from distillation.jobs.progress import Progress, checkpoint_step, failure_hint, last_event, log_tail, readable
from distillation.jobs.records import (
    ACTIVE,
    DONE,
    FAILED,
    ID_RE,
    INTERRUPTED,
    JOBS_DIR,
    LIVE,
    NAME_RE,
    QUEUED,
    RESUMABLE,
    ROOT,
    RUNNING,
    STOPPED,
    STOPPING,
    Job,
    JobError,
    read_job,
    read_json,
    toml_string,
    write_job,
)
from distillation.jobs.resources import MIN_FREE_DISK_GB, available_memory_gb, free_disk_bytes
from distillation.pids import process_alive, process_start
from distillation.trainer import EXIT_BAD_INPUT, EXIT_OK, EXIT_STOPPED
from pipelines.registry import Registry

log = logging.getLogger("sketchsprint.jobs")


class JobStore:
    """Job records under `folder`; launches `python -m distillation.train` (or `accelerate launch` over several
    GPUs) one job at a time; students are exported into `registry.models_dir` and the registry is refreshed when a
    job is done, then `on_finish(job)` runs. `start=False`: no scheduler thread (call `tick()` yourself)."""

    def __init__(
        self,
        folder: Path | str = JOBS_DIR,
        registry: Registry | None = None,
        *,
        on_finish: Callable[[Job], None] | None = None,
        python: str = sys.executable,
        poll_s: float = 0.5,
        memory: Callable[[bool], tuple[float, str]] = available_memory_gb,
        disk_free: Callable[[Path], int] = free_disk_bytes,
        gpus: int | None = None,
        start: bool = True,
    ):
        self.folder = Path(folder).resolve()
        self.registry = registry or Registry()
        self.on_finish = on_finish
        self.python = python
        self.poll_s = poll_s
        self.memory = memory
        self.disk_free = disk_free
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count()
        self.gpus = gpus
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._procs: dict[str, subprocess.Popen] = {}
        self._estimates: dict[tuple[str, tuple[str, ...]], Estimate] = {}
        self._metrics: dict[str, tuple[int, int, list[dict[str, Any]]]] = {}
        self._lock_file: Any = None
        self._closed = False
        self._thread = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="distill-jobs", daemon=True)
            self._thread.start()

    # -- records

    def job_folder(self, job_id: str) -> Path:
        if not ID_RE.fullmatch(job_id or ""):
            raise JobError(f"no job {job_id!r}")
        return self.folder / job_id

    def _save(self, job: Job) -> None:
        write_job(self.job_folder(job.id), job)

    def get(self, job_id: str) -> Job:
        """The record of `job_id`; JobError if there is none."""
        return read_job(self.job_folder(job_id))

    def jobs(self) -> list[Job]:
        """Every readable record, newest first (an unreadable job.json is skipped and logged)."""
        found = []
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if ID_RE.fullmatch(path.name) and (path / "job.json").is_file():
                    try:
                        found.append(self.get(path.name))
                    except JobError as error:
                        log.warning("%s", error)
        return sorted(found, key=lambda job: job.created, reverse=True)

    # -- launching

    def _checked(self, preset: str | Path, overrides: Sequence[str]) -> tuple[Path, list[str], JobConfig]:
        path, overrides = check_preset(preset), check_overrides(overrides)
        return path, overrides, load_preset(path, overrides)

    @staticmethod
    def _refuse_duplicate(jobs: list[Job], preset: str, overrides: list[str], exclude: str = "") -> None:
        """Two launches (or a double click) of the same settings queue one job, not two."""
        for job in jobs:
            if job.id != exclude and job.state in ACTIVE and (job.preset, job.overrides) == (preset, overrides):
                raise JobError(f"job {job.id} with the same settings is already {job.state}")

    def running(self) -> Job | None:
        """The job that holds the device now, if any."""
        return next((job for job in self.jobs() if job.state in LIVE), None)

    def estimate(self, preset: str | Path, overrides: Sequence[str] = (), *, timeout: float = 600.0) -> Estimate:
        """Probe these settings in a subprocess (PROBE_STEPS real steps) and remember the Estimate for launch()."""
        path, overrides, cfg = self._checked(preset, overrides)
        busy = self.running()
        if busy is not None and self.gpus > 0:
            raise JobError(f"the GPU is busy with job {busy.id}: estimate when it is done (or launch without one)")
        argv = probe_command(self.python, path, overrides)
        try:
            done = subprocess.run(argv, cwd=ROOT, env=self._env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            why = ""
            if cfg.data.kind == "image_folder":
                why = " (it prepares the image folder first, which takes long for many images: launch without one)"
            raise JobError(f"the probe took over {timeout:.0f} s; no estimate{why}") from error
        estimate = read_probe(done, f"these settings fail in a {PROBE_STEPS}-step probe")
        with self._lock:
            self._estimates[(str(path), tuple(overrides))] = estimate
        return estimate

    def quick_estimate(self, preset: str | Path, overrides: Sequence[str] = (), *, timeout: float = 60.0) -> Estimate:
        """A few seconds' estimate: a QUICK_PROBE_STEPS-step probe on synthetic samples of the job's shapes (the
        data is not prepared), remembered per preset and settings other than the data, step count and time limit, so
        a second folder or budget answers at once. JobError in plain words when it fails."""
        path, overrides, _ = self._checked(preset, overrides)
        varying = ("--data.path=", "--max_steps=", "--time_limit_s=")
        key = (str(path), "quick", tuple(o for o in overrides if not o.startswith(varying)))
        with self._lock:
            if key in self._estimates:
                return self._estimates[key]
        busy = self.running()
        if busy is not None and self.gpus > 0:
            raise JobError(f"the GPU is busy with job {busy.id}; the estimate can run when it is done")
        argv = probe_command(self.python, path, overrides, quick=True)
        try:
            done = subprocess.run(argv, cwd=ROOT, env=self._env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            why = f"measuring this machine's speed took over {timeout:.0f} s (is it very busy?)"
            raise EstimateTimeout(f"{why}; you can start anyway: the job stops at its time budget") from error
        estimate = read_probe(done, "a two-step trial of these settings failed")
        with self._lock:
            self._estimates[key] = estimate
        return estimate

    def known_estimate(self, preset: str | Path, overrides: Sequence[str]) -> Estimate | None:
        """The Estimate of an earlier estimate() with the same settings, if any."""
        return self._estimates.get((str(check_preset(preset)), tuple(overrides)))

    def launch(
        self, preset: str | Path, overrides: Sequence[str] = (), *, name: str = "", teacher_model: str = ""
    ) -> Job:
        """Check everything that can be checked before a process starts (config, teacher, data, memory against an
        earlier estimate of the same settings, disk, duplicates), then queue the job; JobError says what is wrong and
        nothing is written. Returns the queued record (the scheduler starts it when the device is free)."""
        path, overrides, cfg = self._checked(preset, overrides)
        check_teacher(cfg)
        check_data(cfg)
        name = name.strip()
        if name and not NAME_RE.fullmatch(name):
            raise JobError(f"student name {name!r}: letters, digits, '.', '_' and '-' (at most 64)")
        estimate = self.known_estimate(path, overrides)
        with self._lock:
            jobs = self.jobs()
            busy = any(job.state in LIVE for job in jobs)
            if estimate is not None:
                available, where = self.memory(busy)
                if estimate.memory_gb > available:
                    raise JobError(
                        f"not enough memory: these settings need about {estimate.memory_gb:.2f} GB (estimate) and "
                        f"{available:.2f} GB is {where}; lower the batch size, use LoRA (rank > 0) or a smaller rank"
                    )
            need = estimate.disk_gb if estimate is not None else MIN_FREE_DISK_GB
            free = self.disk_free(self.folder) / 2**30
            if free < need:
                raise JobError(
                    f"not enough disk space in {self.folder}: {free:.2f} GB free, the job needs about "
                    f"{need:.2f} GB (checkpoints and the exported student)"
                )
            self._refuse_duplicate(jobs, str(path), overrides)
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            name = name or f"{cfg.name}-{job_id[-6:]}"
            taken = set(self.registry.specs()) | {job.name for job in jobs if job.state != DONE}
            if name in taken:
                raise JobError(f"student name {name!r} is taken by a model or another job; choose another")
            now = time.time()
            job = Job(
                id=job_id,
                preset=str(path),
                overrides=overrides,
                name=name,
                created=now,
                total=cfg.max_steps,
                queued=now,
                teacher_model=teacher_model,
            )
            folder = self.folder / job_id
            try:
                folder.mkdir(parents=True)
                self._save(job)
            except OSError as error:
                shutil.rmtree(folder, ignore_errors=True)
                raise JobError(f"cannot write the job record in {self.folder}: {error}") from error
            self._wake.notify_all()
        return job

    # -- actions

    def cancel(self, job_id: str) -> Job:
        """SIGTERM to a running job (the trainer checkpoints after the current step, then stops: resumable), or take
        a queued job out of the queue."""
        with self._lock:
            job = self.get(job_id)
            if job.state == QUEUED:
                job.state, job.reason, job.finished = STOPPED, "cancelled before it started", time.time()
            elif job.state in LIVE:
                proc = self._procs.get(job.id)
                if proc is not None or process_alive(job.pid, job.pid_start):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid if proc is not None else job.pid, signal.SIGTERM)
                job.state, job.reason = STOPPING, "cancel requested: the trainer saves a checkpoint, then stops"
            else:
                raise JobError(f"job {job.id} is {job.state}: nothing to cancel")
            self._save(job)
            self._wake.notify_all()
            return job

    def resume(self, job_id: str) -> Job:
        """Queue a stopped, interrupted or failed job again in its folder: --resume latest from its newest checkpoint,
        or from the start when it has none."""
        with self._lock:
            job = self.get(job_id)
            if job.state not in RESUMABLE:
                raise JobError(f"job {job.id} is {job.state}: only stopped, interrupted or failed jobs resume")
            self._checked(job.preset, job.overrides)
            self._refuse_duplicate(self.jobs(), job.preset, job.overrides, job.id)
            folder = self.job_folder(job.id)
            job.resume = checkpoint_step(folder) is not None
            if not job.resume:  # starting over: rows of the lost run would repeat steps
                (folder / "metrics.jsonl").unlink(missing_ok=True)
                (folder / "status.json").unlink(missing_ok=True)
                self._metrics.pop(job.id, None)
            job.state, job.queued, job.reason, job.exit_code = QUEUED, time.time(), "", None
            self._save(job)
            self._wake.notify_all()
            return job

    def delete(self, job_id: str) -> None:
        """Remove a job's folder (not while it runs). Its exported student stays in the models folder."""
        with self._lock:
            job = self.get(job_id)
            if job.state in LIVE:
                raise JobError(f"job {job.id} is {job.state}: cancel it first")
            shutil.rmtree(self.job_folder(job.id))
            self._metrics.pop(job.id, None)

    # -- watching

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        """metrics.jsonl rows, read incrementally (a rewrite on resume is noticed by its new inode or smaller size)."""
        path = self.job_folder(job_id) / "metrics.jsonl"
        try:
            stat = path.stat()
        except OSError:
            return []
        with self._lock:
            inode, offset, rows = self._metrics.get(job_id, (-1, 0, []))
            if inode != stat.st_ino or stat.st_size < offset:
                offset, rows = 0, []
            if stat.st_size > offset:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                complete = data[: data.rfind(b"\n") + 1]
                rows = rows + [json.loads(line) for line in complete.decode().splitlines() if line.strip()]
                offset += len(complete)
            self._metrics[job_id] = (stat.st_ino, offset, rows)
            return list(rows)

    def progress(self, job_id: str) -> Progress:
        """Step/total, it/s and ETA (last progress event, else status.json), metrics, newest preview, log tail."""
        job = self.get(job_id)
        folder = self.job_folder(job.id)
        lines = log_tail(folder)
        event = last_event(lines, "progress") or {}
        status = read_json(folder / "status.json")
        previews = sorted((folder / "previews").glob("step_*.png"))
        return Progress(
            step=max(event.get("step", 0), status.get("step", 0)),
            total=event.get("total") or status.get("total") or job.total,
            it_s=event.get("it_s") if job.state in LIVE else None,
            eta_s=event.get("eta_s") if job.state in LIVE else None,
            checkpoint_step=checkpoint_step(folder),
            metrics=self.metrics(job.id),
            preview=previews[-1] if previews else None,
            log_tail="\n".join(readable(line) for line in lines[-40:]),
        )

    # -- the scheduler

    def _env(self) -> dict[str, str]:
        """The environment of the trainer and the probe: the project on PYTHONPATH; without GPUs, half the cores
        (OMP_NUM_THREADS, unless set) so the live canvas keeps the rest."""
        paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        if self.gpus == 0:
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
        return env

    def command(self, job: Job) -> list[str]:
        """The training command of `job` as an argument list (never a shell string)."""
        folder = self.job_folder(job.id)
        exports = [
            f"--export.models_dir={toml_string(str(self.registry.models_dir.resolve()))}",
            f"--export.name={toml_string(job.name)}",
        ]
        train = ["-m", "distillation.train", job.preset, *job.overrides, *exports, "--out", str(folder)]
        train += ["--progress", "json"] + (["--resume", "latest"] if job.resume else [])
        if self.gpus > 1:
            launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(self.gpus)]
            return [self.python, *launch, "--num_machines", "1", "--dynamo_backend", "no", *train]
        return [self.python, *train]

    def _start(self, job: Job) -> None:
        folder = self.job_folder(job.id)
        argv = self.command(job)
        try:
            with open(folder / "log.txt", "ab") as out:
                out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shlex.join(argv)}\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as error:
            job.state, job.reason, job.finished = FAILED, f"cannot start the trainer: {error}", time.time()
            self._save(job)
            return
        self._procs[job.id] = proc
        job.state, job.pid, job.pid_start = RUNNING, proc.pid, process_start(proc.pid)
        job.exit_code, job.reason = None, ""
        job.runs, job.started, job.finished = job.runs + 1, time.time(), None
        self._save(job)

    def _finish(self, job: Job, code: int | None) -> None:
        """Record how a job's process ended: its exit code (None: it ended unwatched) and status.json say which."""
        folder = self.job_folder(job.id)
        status = read_json(folder / "status.json")
        said = status.get("state")
        lines = log_tail(folder)
        step = max((last_event(lines, "progress") or {}).get("step", 0), status.get("step", 0))
        ckpt = checkpoint_step(folder)
        resumable = f"resumable from step {ckpt}" if ckpt is not None else "no checkpoint: resume starts over"
        cancelled = job.state == STOPPING
        if (code == EXIT_OK or code is None) and said == "done":
            state, reason = DONE, ""
        elif code in (EXIT_STOPPED, -signal.SIGTERM) or (code is None and said == "stopped"):
            verb = "cancelled" if cancelled else "stopped by SIGTERM"
            state, reason = STOPPED, f"{verb} at step {step}; {resumable}"
        elif code is None and said == "failed":
            state, reason = FAILED, f"{status.get('reason', 'failed')} (at step {step}; {resumable})"
        elif code is None:
            state = INTERRUPTED
            reason = f"the trainer ended while no app watched it (killed or crashed) at step {step}; {resumable}"
        elif code < 0:
            state, reason = FAILED, f"killed by {signal.Signals(-code).name} at step {step}; {resumable}"
        else:
            why = status.get("reason") if said == "failed" else failure_hint(lines) or f"exit code {code}"
            kind = "bad input" if code == EXIT_BAD_INPUT else "failed"
            state, reason = FAILED, f"{kind}: {why} (exit code {code}, step {step}; {resumable})"
        job.state, job.reason, job.exit_code, job.finished = state, reason, code, time.time()
        export = last_event(lines, "export")
        if state == DONE and export is not None:
            job.export = export.get("registry", "")
        self._save(job)
        if state == DONE:
            self.registry.refresh()
            if self.on_finish is not None:
                self.on_finish(job)

    def _own(self) -> bool:
        """Hold <folder>/.lock: only its holder runs the queue (several apps may share one jobs folder)."""
        if self._lock_file is not None:
            return True
        if not self.folder.is_dir():
            return False
        handle = open(self.folder / ".lock", "a")  # noqa: SIM115 - held open as long as this store runs the queue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def tick(self) -> None:
        """One scheduler pass: record ended processes, reconcile records whose process is gone, start the next job."""
        with self._lock:
            if self._closed or not self._own():
                return
            for job_id, proc in list(self._procs.items()):
                code = proc.poll()
                if code is not None:
                    del self._procs[job_id]
                    self._finish(self.get(job_id), code)
            jobs = self.jobs()
            for job in jobs:
                if job.state in LIVE and job.id not in self._procs and not process_alive(job.pid, job.pid_start):
                    self._finish(job, None)
            jobs = self.jobs()
            if not any(job.state in LIVE for job in jobs):
                queued = sorted((job for job in jobs if job.state == QUEUED), key=lambda job: job.queued)
                if queued:
                    self._start(queued[0])

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._wake.wait(self.poll_s)
            try:
                self.tick()
            except Exception:  # the queue must outlive any one bad record or full disk
                log.exception("job scheduler pass failed")

    def close(self) -> None:
        """Stop scheduling and release the queue (running training processes go on; the next store adopts them)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
