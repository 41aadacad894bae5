"""A private PostgreSQL cluster for tests: ``with PostgresCluster() as pg: pg.sqlalchemy_url``.

``initdb`` makes a cluster in a temporary folder; ``pg_ctl`` starts it on a free port of 127.0.0.1
(and its socket in the same folder), trust authentication, superuser ``airflow``, database
``airflow``. It is stopped and the folder deleted on exit. ``initdb`` and ``postgres`` refuse to run
as root: as root, every PostgreSQL command runs as the unprivileged ``nobody`` (``runuser``), which
owns the folder.

The server binaries are looked for in ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql``
package) and on ``PATH``; :func:`find_bin_dir` is None when they are missing.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support.deployment import free_port

UNPRIVILEGED_USER = "nobody"
SUPERUSER = "airflow"
DATABASE = "airflow"


def find_bin_dir() -> Path | None:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres`` (the newest Debian one first), or None."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name.split(".")[0] or 0),
        reverse=True,
    )
    for folder in candidates:
        if all((Path(folder) / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    return None


class PostgresError(RuntimeError):
    """A PostgreSQL command failed; the message ends with its output (and the server log's tail)."""


class PostgresCluster:
    """A throw-away PostgreSQL server; a context manager."""

    def __init__(self, bin_dir: Path | None = None, start_timeout: float = 60.0) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise PostgresError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bin_dir = found
        self.start_timeout = start_timeout
        self.run_as = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        # As root, in /tmp: the unprivileged user must reach the folder (TMPDIR may be root's own).
        self.root = Path(tempfile.mkdtemp(prefix="hitpaw-postgres-", dir="/tmp" if self.run_as else None))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = free_port()
        self._started = False

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _command(self, name: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / name), *args]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, name: str, *args: str, timeout: float = 120.0) -> str:
        done = subprocess.run(
            self._command(name, *args), capture_output=True, text=True, timeout=timeout, check=False,
            cwd=self.root, stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise PostgresError(
                f"{name} {' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}\n{log}"
            )
        return done.stdout

    def start(self) -> PostgresCluster:
        atexit.register(self.stop)
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        self._started = True
        self._pg_ctl_start()
        self._create_database()
        return self

    def _pg_ctl_start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w",
                  "-t", str(int(self.start_timeout)), "start", timeout=self.start_timeout + 10)

    def restart(self, down_seconds: float = 0.0, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``: every client connection is cut), stay down for
        ``down_seconds``, start it again on the same port with the same data."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", timeout=60)
        time.sleep(down_seconds)
        self._pg_ctl_start()

    def _create_database(self) -> None:
        import psycopg2

        end = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.3)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            conn.close()

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Run one statement in the ``airflow`` database; its rows (empty for a statement without)."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=DATABASE)
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(sql, params or None)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()

    def stop(self) -> None:
        atexit.unregister(self.stop)
        try:
            if self._started:
                self._started = False
                try:
                    self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", timeout=60)
                except (PostgresError, subprocess.TimeoutExpired):
                    pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
