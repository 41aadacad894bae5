"""A real Airflow 3 deployment on this machine, for tests and benchmarks: ``with Deployment(...) as d:``.

It prepares a temporary Airflow home (SQLite, LocalExecutor, the given DAG files), runs ``airflow db
migrate`` and starts ``airflow scheduler``, ``airflow triggerer``, ``airflow dag-processor`` and
``airflow api-server`` as separate processes, each in a session (process group) of its own with its
output in ``<home>/component-logs/``. It talks to the deployment through the REST API (the simple auth
manager with ``simple_auth_manager_all_admins``: ``GET /auth/token`` hands out a token).

Everything it starts is stopped on exit, also after a failure: SIGTERM to each process group and to
every descendant, SIGKILL for whatever is left after a grace period. Every wait is bounded by the
deployment's overall ``deadline``; a failed wait raises :class:`DeploymentError` with the tails of the
component logs.

The Airflow home is its own, passed to the subprocesses through their environment: the test session's
throw-away ``AIRFLOW_HOME`` (``tests/airflow_home.py``) is neither used nor touched.

SQLite and LocalExecutor: Airflow 3 accepts the pair (``airflow standalone`` runs just that); the
scheduler, LocalExecutor workers, triggerer and DAG processor share the one database file.

With ``celery_workers`` (and a database server in ``env``, a ``broker_url``) it runs CeleryExecutor
instead: ``airflow celery worker`` processes named ``celery-worker-N``. With ``triggerers`` above one it
runs ``triggerer-1``... one after the other, each one's job id known (:meth:`Deployment.start_triggerer`),
so that a test can kill the one running a given trigger. :meth:`Deployment.restarting_exited` acts as a
process supervisor for a while (Airflow's components exit when their database goes away), and
:meth:`Deployment.restore_components` starts again whatever is down (``tests/system/``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = PROJECT / "example_dags"

COMPONENTS = ("scheduler", "triggerer", "dag-processor", "api-server")
#: What a Celery worker prints once it consumes tasks (``celery@<hostname> ready.``).
CELERY_READY_LOG = " ready."
#: Health entries of ``GET /api/v2/monitor/health`` that must be healthy before the deployment is used.
HEALTH_KEYS = {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}
FINISHED_RUN_STATES = ("success", "failed")
TAIL_LINES = 40
STOP_GRACE_SECONDS = 10.0
#: At the end nothing needs a clean shutdown (the home is thrown away): a short grace, then SIGKILL.
FINAL_STOP_GRACE_SECONDS = 3.0

#: Fast heartbeats and polls for a small deployment on one machine. ``triggerer_health_check_threshold``
#: is short so that the triggers of a killed triggerer are handed to a new one within seconds.
FAST_SETTINGS = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
    "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
    "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
}


class DeploymentError(AssertionError):
    """Something in the deployment failed or took too long; the message ends with the log tails."""


@dataclass
class Component:
    """One ``airflow <name>`` process (the latest start of it)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    starts: int = 1
    #: stopped on purpose: its exit is no error
    expected_down: bool = False
    #: a triggerer's job id (``/api/v2/jobs``), known when several triggerers run
    job_id: int | None = None
    started_at: float = field(default_factory=time.monotonic)


@dataclass
class RunWatch:
    """What :meth:`Deployment.wait_for_runs` saw of one DAG run."""

    dag_id: str
    run_id: str
    state: str = "queued"
    #: task key (``task_id`` or ``task_id[map_index]``) -> every state seen, in order, without repeats.
    task_states: dict[str, list[str]] = field(default_factory=dict)
    task_instances: list[dict[str, Any]] = field(default_factory=list)
    #: task key -> trigger classpaths seen on it while deferred
    trigger_classpaths: dict[str, set[str]] = field(default_factory=dict)
    #: task key -> ids of the triggerer jobs seen running its trigger
    triggerer_ids: dict[str, set[int]] = field(default_factory=dict)
    #: task key -> the task instance (REST API reply) when it was first seen deferred
    first_deferred: dict[str, dict[str, Any]] = field(default_factory=dict)

    def saw(self, task_key: str, state: str) -> bool:
        return state in self.task_states.get(task_key, [])

    def keys_of(self, task_id: str) -> list[str]:
        return [k for k in self.task_states if k == task_id or k.startswith(f"{task_id}[")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _celery_result_backend(database_url: str) -> str:
    """Celery's result backend in the metadata database: ``db+`` and its SQLAlchemy URL, driver kept."""
    return f"db+{database_url}"


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the component if the test process dies without cleaning up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a snapshot from /proc)."""
    children = _children_map()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_trees(processes: Iterable[subprocess.Popen[bytes]], sig: int = signal.SIGTERM,
               grace: float = STOP_GRACE_SECONDS) -> None:
    """Send ``sig`` to each process's group and descendants at once; SIGKILL what is left after ``grace`` s."""
    processes = list(processes)
    pids = {p.pid: set(process_tree(p.pid)) for p in processes}

    def signal_all(signum: int) -> None:
        # The group first; then, once each, the descendants that left it (a signal twice over makes
        # Airflow components skip their graceful shutdown).
        for process in processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signum)
            for pid in pids[process.pid] | set(process_tree(process.pid)):
                try:
                    if os.getpgid(pid) != process.pid:
                        os.kill(pid, signum)
                except (ProcessLookupError, PermissionError):
                    pass

    def leftovers() -> bool:
        for process in processes:
            process.poll()
        return any(_alive(pid) for group in pids.values() for pid in group)

    if not leftovers():
        return
    signal_all(sig)
    end = time.monotonic() + (0 if sig == signal.SIGKILL else grace)
    while leftovers() and time.monotonic() < end:
        time.sleep(0.1)
    if leftovers():
        signal_all(signal.SIGKILL)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)


def kill_tree(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = STOP_GRACE_SECONDS) -> None:
    """Send ``sig`` to a process's group and every descendant; SIGKILL all of them after ``grace`` s."""
    kill_trees([process], sig, grace)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text.splitlines()[-lines:]) or "    (empty)"


class Deployment:
    """An Airflow deployment in a temporary home; a context manager.

    :param dag_files: DAG files copied into the DAGs folder (default: every ``example_dags/*.py``).
    :param dag_sources: more DAG files given as ``{file name: source text}``.
    :param env: extra environment of every Airflow process (connections, settings).
    :param parallelism: ``[core] parallelism``: the LocalExecutor's worker slots.
    :param deadline_seconds: the overall budget from construction on; every wait stops at it.
    :param python: the interpreter whose venv's ``airflow`` is run (default: this one).
    :param start_timeout: seconds allowed for migrating the database and starting up.
    :param keep_home: keep the Airflow home (and logs) after exit, for debugging.
    :param triggerers: how many ``airflow triggerer`` processes; with more than one they are named
        ``triggerer-1``, ``triggerer-2``... (else ``triggerer``), each serving its logs on its own port.
    :param celery_workers: 0 for LocalExecutor; else CeleryExecutor with this many ``airflow celery
        worker`` processes, ``celery-worker-1``..., each with ``parallelism`` slots. Needs
        ``broker_url`` and a database other than SQLite (``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` in ``env``),
        which is also Celery's result backend.
    :param broker_url: the Celery broker (``redis://127.0.0.1:PORT/0``).
    """

    def __init__(
        self,
        *,
        dag_files: Iterable[Path] | None = None,
        dag_sources: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        parallelism: int = 4,
        deadline_seconds: float = 360.0,
        python: str | os.PathLike[str] | None = None,
        start_timeout: float = 180.0,
        keep_home: bool = False,
        triggerers: int = 1,
        celery_workers: int = 0,
        broker_url: str | None = None,
    ) -> None:
        if celery_workers and not broker_url:
            raise ValueError("CeleryExecutor needs a broker_url")
        self.started_at = time.monotonic()
        self.deadline = self.started_at + deadline_seconds
        self.dag_files = list(dag_files) if dag_files is not None else sorted(EXAMPLE_DAGS.glob("*.py"))
        self.dag_sources = dict(dag_sources or {})
        self.extra_env = dict(env or {})
        self.parallelism = parallelism
        self.bin_dir = Path(python or sys.executable).parent
        self.airflow = str(self.bin_dir / "airflow")
        self.start_timeout = start_timeout
        self.triggerers = triggerers
        self.celery_workers = celery_workers
        self.broker_url = broker_url
        self.stop_grace = FINAL_STOP_GRACE_SECONDS
        self.keep_home = keep_home or bool(os.environ.get("HITPAW_KEEP_DEPLOYMENT"))
        self.home = Path(tempfile.mkdtemp(prefix="hitpaw-deployment-"))
        self.dags_folder = self.home / "dags"
        self.logs_dir = self.home / "component-logs"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.components: dict[str, Component] = {}
        self._retired_logs: list[Path] = []
        self._token: str | None = None
        self._stopped = False
        #: restarts per component while :meth:`restarting_exited` is on, else None
        self._restarts: dict[str, int] | None = None
        self._restart_backoff = 1.0
        self.env = self._environment()
        #: per component: environment on top of :attr:`env` (each its own log server port)
        self.component_env: dict[str, dict[str, str]] = {}
        for name in self.triggerer_names:
            self.component_env[name] = {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
        for name in self.worker_names:
            self.component_env[name] = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}

    @property
    def triggerer_names(self) -> list[str]:
        if self.triggerers == 1:
            return ["triggerer"]
        return [f"triggerer-{n}" for n in range(1, self.triggerers + 1)]

    @property
    def worker_names(self) -> list[str]:
        return [f"celery-worker-{n}" for n in range(1, self.celery_workers + 1)]

    @property
    def component_names(self) -> list[str]:
        return ["scheduler", *self.triggerer_names, "dag-processor", "api-server", *self.worker_names]

    def command(self, name: str) -> list[str]:
        """The ``airflow`` arguments that start component ``name``."""
        if name.startswith("celery-worker-"):
            number = name.rsplit("-", 1)[1]
            return [
                "celery", "worker", "--concurrency", str(self.parallelism),
                "--celery-hostname", f"worker{number}@%h", "--without-mingle", "--without-gossip",
            ]
        if name.startswith("triggerer"):
            return ["triggerer"]
        return [name]

    # -- set-up ----------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_HOME", "PYTEST_"))
        }
        env.update(
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            PYTHONWARNINGS="ignore",
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags_folder),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM=str(self.parallelism),
            AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG="256",
            AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG="16",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.base_url}/execution/",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.home / 'airflow.db'}",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=self.base_url,
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(24),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
            # The triggerer and the workers serve their logs over HTTP: free ports, not 8794 and 8793,
            # so that deployments can run side by side.
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            **FAST_SETTINGS,
        )
        if self.celery_workers:
            database = self.extra_env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
            if not database or database.startswith("sqlite"):
                raise ValueError("CeleryExecutor needs a database server (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)")
            env.update(
                AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
                AIRFLOW__CELERY__BROKER_URL=str(self.broker_url),
                AIRFLOW__CELERY__RESULT_BACKEND=_celery_result_backend(database),
                AIRFLOW__CELERY__WORKER_CONCURRENCY=str(self.parallelism),
                # One task per free slot: a worker does not hoard queued tasks that another could run.
                AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER="1",
                AIRFLOW__CELERY__SYNC_PARALLELISM="1",
            )
        env.update(self.extra_env)
        return env

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Fill the DAGs folder, migrate the database, start every component and wait until healthy."""
        atexit.register(self.stop)  # a safety net: stop() is idempotent
        self.dags_folder.mkdir(parents=True)
        self.logs_dir.mkdir()
        for path in self.dag_files:
            shutil.copy(path, self.dags_folder / Path(path).name)
        for name, source in self.dag_sources.items():
            (self.dags_folder / name).write_text(source, encoding="utf-8")
        self.run_cli("db", "migrate", timeout=self.start_timeout)
        several_triggerers = len(self.triggerer_names) > 1
        for name in self.component_names:
            if not (several_triggerers and name in self.triggerer_names):
                self.start_component(name)
        if several_triggerers:
            # One after the other, each once the API answers: each one's job id is then the new one.
            self.wait_healthy(["scheduler", "dag-processor"], timeout=self.start_timeout)
            for name in self.triggerer_names:
                self.start_triggerer(name)
        self.wait_healthy(timeout=self.start_timeout)
        for name in self.worker_names:
            self.wait_worker_ready(name, timeout=self.start_timeout)

    def triggerer_jobs(self, alive_only: bool = False) -> dict[int, dict[str, Any]]:
        """The triggerer jobs the REST API knows (``GET /api/v2/jobs``), by job id."""
        query = "job_type=TriggererJob&limit=100" + ("&is_alive=true" if alive_only else "")
        return {int(job["id"]): job for job in self.api("GET", f"/api/v2/jobs?{query}")["jobs"]}

    def start_triggerer(self, name: str, timeout: float = 120.0) -> Component:
        """Start (or restart) triggerer ``name`` and learn its job id: the one job that is new."""
        known = set(self.triggerer_jobs())
        component = self.start_component(name)

        def new_job() -> set[int]:
            return set(self.triggerer_jobs()) - known

        found = self.wait_until(new_job, timeout, f"{name} to register its job", 0.5)
        if len(found) != 1:
            raise self.error(f"{name}: several new triggerer jobs {sorted(found)}; started one at a time?")
        component.job_id = found.pop()
        return component

    def restore_components(self) -> list[str]:
        """Start again every component that is not running (killed on purpose or not); their names.

        Triggerers learn their new job id, Celery workers are waited for until they consume tasks. With
        several triggerers, one whose job id is not known (started again by :meth:`restarting_exited`
        at the same time as another) is restarted too, on its own, to learn it.
        """
        restored = []
        several_triggerers = len(self.triggerer_names) > 1
        for name in self.component_names:
            component = self.components.get(name)
            unknown_job = several_triggerers and name in self.triggerer_names and component is not None \
                and component.job_id is None
            if unknown_job and component is not None and component.process.poll() is None:
                self.expect_down(name)
                self.stop_component(name)
            elif component is not None and component.process.poll() is None:
                continue
            if several_triggerers and name in self.triggerer_names:
                self.start_triggerer(name)
            else:
                self.start_component(name)
            if name in self.worker_names:
                self.wait_worker_ready(name)
            self.components[name].expected_down = False
            restored.append(name)
        return restored

    def component_of_triggerer_job(self, job_id: int) -> str | None:
        """The name of the triggerer process whose (latest) job is ``job_id``.

        A triggerer restarted by :meth:`restarting_exited` learns its new job id here: when it is the
        only running triggerer without one and ``job_id`` is the only live job no other one has.
        """
        found = next((c.name for c in self.components.values() if c.job_id == job_id), None)
        if found is not None:
            return found
        running = [self.components[name] for name in self.triggerer_names if name in self.components]
        unknown = [c for c in running if c.job_id is None and c.process.poll() is None]
        known = {c.job_id for c in running}
        alive = set(self.triggerer_jobs(alive_only=True)) - known
        if len(unknown) == 1 and alive == {job_id}:
            unknown[0].job_id = job_id
            return unknown[0].name
        return None

    def wait_worker_ready(self, name: str, timeout: float = 120.0) -> None:
        """Wait until Celery worker ``name`` (its latest start) consumes tasks."""
        component = self.components[name]
        self.wait_until(
            lambda: CELERY_READY_LOG in component.log_path.read_text(encoding="utf-8", errors="replace"),
            timeout, f"{name} to be ready", 0.5,
        )

    def run_cli(self, *args: str, timeout: float = 120.0) -> str:
        """Run ``airflow args...`` with the deployment's environment; its output, or DeploymentError."""
        log_path = self.logs_dir / f"cli-{'-'.join(args[:2])}.log"
        try:
            done = subprocess.run(
                [self.airflow, *args], env=self.env, cwd=self.home, capture_output=True,
                timeout=self._bounded(timeout), check=False,
            )
        except subprocess.TimeoutExpired as err:
            output = (err.stdout or b"") + (err.stderr or b"")
            log_path.write_bytes(output)
            raise self.error(f"`airflow {' '.join(args)}` did not finish in {timeout:.0f} s") from None
        log_path.write_bytes(done.stdout + done.stderr)
        if done.returncode != 0:
            raise self.error(f"`airflow {' '.join(args)}` exited with {done.returncode}", extra=[log_path])
        return done.stdout.decode("utf-8", "replace")

    def start_component(self, name: str) -> Component:
        """Start ``airflow <name>`` (again, after :meth:`stop_component`)."""
        old = self.components.get(name)
        if old is not None and old.process.poll() is None:
            raise RuntimeError(f"{name} is already running")
        starts = old.starts + 1 if old else 1
        log_path = self.logs_dir / f"{name}-{starts}.log"
        if old is not None:
            self._retired_logs.append(old.log_path)
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [self.airflow, *self.command(name)], env={**self.env, **self.component_env.get(name, {})},
                cwd=self.home, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_set_parent_death_signal,
            )
        component = Component(name, process, log_path, starts)
        self.components[name] = component
        return component

    def stop_component(self, name: str, sig: int = signal.SIGTERM, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop one component: ``sig`` to its process group and descendants, SIGKILL after ``grace`` s."""
        kill_tree(self.components[name].process, sig, grace)

    def stop(self) -> None:
        """Stop every component (all at once, SIGKILL after a grace period); delete the home unless kept."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        try:
            kill_trees([c.process for c in self.components.values()], signal.SIGTERM, self.stop_grace)
        finally:
            self._cleanup_home()

    def _cleanup_home(self) -> None:
        if self.keep_home:
            print(f"deployment home kept: {self.home}", file=sys.stderr)
        else:
            shutil.rmtree(self.home, ignore_errors=True)

    # -- errors and time -------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Seconds since the deployment began."""
        return time.monotonic() - self.started_at

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _bounded(self, timeout: float) -> float:
        return max(0.0, min(timeout, self.remaining))

    def logs_report(self, extra: Iterable[Path] = ()) -> str:
        parts = []
        paths = [*self._retired_logs, *(c.log_path for c in self.components.values()), *extra]
        for path in paths:
            parts.append(f"--- last {TAIL_LINES} lines of {path.name} ---\n{tail(path)}")
        return "\n".join(parts)

    def error(self, message: str, extra: Iterable[Path] = ()) -> DeploymentError:
        elapsed = time.monotonic() - self.started_at
        status = ", ".join(
            f"{c.name}: {'running' if c.process.poll() is None else f'exited {c.process.returncode}'}"
            for c in self.components.values()
        )
        return DeploymentError(
            f"{message} ({elapsed:.0f} s after the deployment began; components: {status or 'none'}; "
            f"home {self.home}, deleted at the end unless HITPAW_KEEP_DEPLOYMENT=1)\n{self.logs_report(extra)}"
        )

    def wait_until(self, check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
        """Call ``check`` until it returns something truthy; DeploymentError after ``timeout`` s."""
        end = time.monotonic() + self._bounded(timeout)
        last_error: Exception | None = None
        while True:
            self._check_components()
            try:
                result = check()
            except (OSError, ValueError, DeploymentApiError) as err:
                result, last_error = None, err  # type: ignore[assignment]
            if result:
                return result
            if time.monotonic() >= end:
                hint = f" (last error: {last_error!r})" if last_error else ""
                limit = "the overall deadline passed" if self.remaining <= 0 else f"{timeout:.0f} s passed"
                raise self.error(f"timed out waiting for {what}: {limit}{hint}")
            time.sleep(interval)

    def _check_components(self) -> None:
        for component in list(self.components.values()):
            code = component.process.poll()
            if code is None or component.expected_down:
                continue
            if self._restarts is None:
                raise self.error(f"airflow {component.name} exited unexpectedly with {code}")
            if time.monotonic() - component.started_at >= self._restart_backoff:
                self.start_component(component.name)
                self._restarts[component.name] = self._restarts.get(component.name, 0) + 1

    @contextlib.contextmanager
    def restarting_exited(self, backoff: float = 1.0) -> Iterator[dict[str, int]]:
        """Within the block, act as a process supervisor does (systemd's ``Restart=always``, a
        Kubernetes pod's ``restartPolicy``): a component that exits is started again, at most once per
        ``backoff`` s, instead of failing the wait. Airflow's scheduler, triggerer and DAG processor
        exit when their database goes away and count on that. Yields the restarts per component.

        :param backoff: the least time between two starts of a component.
        """
        self._restarts, self._restart_backoff = {}, backoff
        try:
            yield self._restarts
        finally:
            self._restarts = None

    def expect_down(self, name: str, down: bool = True) -> None:
        """Mark a component as stopped on purpose (no error for its exit) or back up."""
        self.components[name].expected_down = down

    # -- REST API --------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """Call the REST API (``/api/v2/...``) and return the decoded JSON reply."""
        if self._token is None and not path.startswith("/auth/"):
            self._token = self.api("GET", "/auth/token")["access_token"]
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:800]
            raise DeploymentApiError(f"{method} {path} -> HTTP {err.code}: {detail}", err.code) from None
        return json.loads(raw) if raw else None

    def health(self) -> dict[str, Any]:
        return self.api("GET", "/api/v2/monitor/health")

    def is_healthy(self, components: Iterable[str] = HEALTH_KEYS) -> bool:
        health = self.health()
        return all(
            (health.get(HEALTH_KEYS[name]) or {}).get("status") == "healthy" for name in components
        )

    def wait_healthy(self, components: Iterable[str] = HEALTH_KEYS, timeout: float = 120.0) -> None:
        names = list(components)
        self.wait_until(lambda: self.is_healthy(names), timeout, f"{', '.join(names)} to be healthy", 1.0)

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.api("GET", "/api/v2/dags?limit=1000")["dags"]}

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        wanted = set(dag_ids)

        def parsed() -> bool:
            missing = wanted - self.dag_ids()
            if missing:
                return False
            errors = self.api("GET", "/api/v2/importErrors")
            if errors.get("total_entries"):
                self._raise_import_errors(errors)
            return True

        self.wait_until(parsed, timeout, f"the DAG processor to parse {sorted(wanted)}", 1.0)

    def _raise_import_errors(self, errors: dict[str, Any]) -> None:
        texts = "\n".join(f"{e.get('filename')}: {e.get('stack_trace', '')[-1500:]}" for e in errors["import_errors"])
        raise self.error(f"DAG import errors:\n{texts}")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id)}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> RunWatch:
        """Trigger a DAG run through the REST API; a :class:`RunWatch` for :meth:`wait_for_runs`."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        reply = self.api("POST", f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns", body)
        return RunWatch(dag_id, reply["dag_run_id"], reply.get("state") or "queued")

    def run_state(self, run: RunWatch) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{urllib.parse.quote(run.dag_id)}/dagRuns/{urllib.parse.quote(run.run_id)}")

    def task_instances(self, run: RunWatch) -> list[dict[str, Any]]:
        path = (
            f"/api/v2/dags/{urllib.parse.quote(run.dag_id)}/dagRuns/{urllib.parse.quote(run.run_id)}"
            "/taskInstances?limit=1000"
        )
        return self.api("GET", path)["task_instances"]

    def observe(self, runs: Iterable[RunWatch]) -> None:
        """Record the current state of each run and of its task instances."""
        for run in runs:
            run.state = self.run_state(run)["state"]
            run.task_instances = self.task_instances(run)
            for ti in run.task_instances:
                key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
                seen = run.task_states.setdefault(key, [])
                state = str(ti.get("state"))
                if not seen or seen[-1] != state:
                    seen.append(state)
                if state == "deferred":
                    run.first_deferred.setdefault(key, ti)
                trigger = ti.get("trigger") or {}
                if trigger.get("classpath"):
                    run.trigger_classpaths.setdefault(key, set()).add(trigger["classpath"])
                if trigger.get("triggerer_id") is not None:
                    run.triggerer_ids.setdefault(key, set()).add(int(trigger["triggerer_id"]))

    def wait_for_runs(
        self,
        runs: list[RunWatch],
        timeout: float,
        until: Callable[[list[RunWatch]], bool] | None = None,
        what: str = "the DAG runs to finish",
        interval: float = 0.5,
    ) -> list[RunWatch]:
        """Poll runs and task instances (recording every state seen) until ``until`` holds.

        By default until every run is finished (success or failed).
        """
        done = until or (lambda rs: all(r.state in FINISHED_RUN_STATES for r in rs))

        def check() -> bool:
            self.observe(runs)
            return done(runs)

        try:
            self.wait_until(check, timeout, what, interval)
        except DeploymentError as err:
            summary = "\n".join(f"  {r.dag_id} {r.run_id}: {r.state}; tasks {r.task_states}" for r in runs)
            raise DeploymentError(f"{err.args[0].split(chr(10))[0]}\nruns:\n{summary}\n{self.logs_report()}") from None
        return runs

    def event_logs(self, run: RunWatch, task_id: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        """The audit log entries of a run (``GET /api/v2/eventLogs``), optionally of one task and event.

        A worker starting a task instance (``PATCH /execution/task-instances/{id}/run``) writes one
        ``running`` entry each time: the first start and every resumption after a deferral.
        """
        query = {"dag_id": run.dag_id, "run_id": run.run_id, "limit": "1000", "order_by": "when"}
        if task_id is not None:
            query["task_id"] = task_id
        if event is not None:
            query["event"] = event
        return self.api("GET", f"/api/v2/eventLogs?{urllib.parse.urlencode(query)}")["event_logs"]

    def _task_folder(self, run: RunWatch, task_key: str) -> Path:
        task_id, _, index = task_key.partition("[")
        folder = self.home / "logs" / f"dag_id={run.dag_id}" / f"run_id={run.run_id}" / f"task_id={task_id}"
        return folder / f"map_index={index.rstrip(']')}" if index else folder

    def task_log(self, run: RunWatch, task_key: str, try_number: int = 1) -> str:
        """The workers' log of a task instance's try (every start of it appends to the same file)."""
        path = self._task_folder(run, task_key) / f"attempt={try_number}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def trigger_logs(self, run: RunWatch, task_key: str, try_number: int = 1) -> dict[int, str]:
        """The trigger's log of a task instance, per triggerer job id that ran it.

        The triggerer writes them next to the task's log, as ``attempt=N.log.trigger.<job id>.log``
        (Airflow's default ``log_filename_template``).
        """
        logs = {}
        for path in self._task_folder(run, task_key).glob(f"attempt={try_number}.log.trigger.*.log"):
            job_id = path.name.rsplit(".", 2)[-2]
            if job_id.isdigit():
                logs[int(job_id)] = path.read_text(encoding="utf-8", errors="replace")
        return logs

    def component_log(self, name: str, all_starts: bool = True) -> str:
        """The output of a component (of all its starts, by default)."""
        paths = sorted(self.logs_dir.glob(f"{name}-*.log")) if all_starts else [self.components[name].log_path]
        return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in paths)


class DeploymentApiError(RuntimeError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
