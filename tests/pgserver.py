"""A real PostgreSQL server for the tests: `initdb` and `pg_ctl` into a temporary
folder, once per test session, stopped at the end.

Fixtures:
- `postgres_dsn` (session): the server's base URL (the `postgres` database of
  the superuser `postgres`, trust authentication over a Unix socket in the
  temporary folder, so no port on the machine can collide with it);
- `postgres_url` (function): the URL of an empty database of the test's own
  (made from template0, or one an earlier test used and that was emptied:
  sessions ended, schemas dropped, settings reset; see `Databases`).

The binaries are found through `pg_config --bindir`, then
/usr/lib/postgresql/<newest>/bin, then PATH. When they are missing the tests
are skipped, except in CI (the `CI` environment variable is set): there a
missing server is a failure, because `.ci/run` installs it.

`initdb` refuses to run as root; as root the server runs as the `postgres`
user (Debian's package creates it) or else `nobody`, and owns the folder.

The server keeps `fsync` on, as a production server does. Setting
`FLOWLANG_TEST_PG_FAST=1` trades that for speed (`fsync`,
`synchronous_commit` and `full_page_writes` off): fine for the engine suite,
not for reliability tests that mean to say something about durability.
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import pytest

SUPERUSER = "postgres"
FAST = os.environ.get("FLOWLANG_TEST_PG_FAST", "") not in ("", "0")


#: Run as the server's user with (pytest's pid, pg_ctl, data folder, folder):
#: once pytest is gone without stopping the server, stop it and clean up.
#: (/proc, not `kill -0`: the server's user may not signal a root process.)
WATCHDOG = ('while [ -d "/proc/$1" ]; do sleep 1; done; '
            '"$2" stop -m immediate -D "$3" >/dev/null 2>&1; rm -rf "$4"')


def _version_key(path: str) -> tuple:
    name = Path(path).parent.name
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def find_bindir() -> Path | None:
    """The folder holding `initdb`, `pg_ctl` and `postgres`, or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.strip()
            candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for folder in candidates:
        if all((Path(folder) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}. .ci/run installs the Debian "
                    "`postgresql` package when `initdb` is missing; see that the install worked.",
                    pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason} (in CI this is a failure)")


def _server_user() -> pwd.struct_passwd | None:
    """The user to run the server as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    _unavailable("running as root, and there is neither a `postgres` nor a `nobody` user to "
                 "run the server as (initdb refuses root)")


def _free_port() -> int:
    # the server listens on a Unix socket only; the port just names the socket file
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """One throw-away cluster: `start()`, `url(database)`, `stop()`."""

    def __init__(self, bindir: Path, root: Path, user: pwd.struct_passwd | None, fast: bool = FAST):
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.user = user
        self.fast = fast
        self.port = _free_port()
        self._watchdog: subprocess.Popen | None = None

    def _as_server_user(self) -> dict:
        """subprocess arguments that run a program as the server's user."""
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        options: dict = {"cwd": self.root, "env": env}
        if self.user is not None:
            env["HOME"] = str(self.root)
            env["USER"] = env["LOGNAME"] = self.user.pw_name
            options.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return options

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True,
                                text=True, timeout=timeout, **self._as_server_user())
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}"
                               f"\n{result.stderr}\n{log}")
        return result

    def start(self) -> None:
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o755)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C", *(["--no-sync"] if self.fast else []))
        options = [f"-k {self.root}", "-c listen_addresses=''", f"-p {self.port}",
                   "-c max_connections=200", "-c unix_socket_permissions=0777"]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "start", "-w", "-t", "120", "-D", str(self.data), "-l", str(self.log),
                  "-o", " ".join(options))
        # pg_ctl detaches the server: should this process be killed (a CI
        # timeout, kill -9), a watchdog stops it and removes the folder
        self._watchdog = subprocess.Popen(
            ["/bin/sh", "-c", WATCHDOG, "watchdog", str(os.getpid()), str(self.bindir / "pg_ctl"),
             str(self.data), str(self.root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, **self._as_server_user())

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                try:
                    self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data))
                except (RuntimeError, subprocess.SubprocessError):
                    self._run("pg_ctl", "stop", "-m", "immediate", "-D", str(self.data))
        finally:
            if self._watchdog is not None:
                self._watchdog.terminate()
                self._watchdog.wait(10)
                self._watchdog = None

    def url(self, database: str = "postgres") -> str:
        query = urllib.parse.urlencode({"host": str(self.root), "port": self.port})
        return f"postgresql://{SUPERUSER}@/{database}?{query}"


@pytest.fixture(scope="session")
def postgres_server():
    """The running `LocalServer` (for tests that need its folder or log)."""
    bindir = find_bindir()
    if bindir is None:
        _unavailable("no PostgreSQL server binaries (initdb, pg_ctl) found via pg_config, "
                     "/usr/lib/postgresql/*/bin or PATH")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install '.[postgres]')")
    user = _server_user()
    # in /tmp: a short path (a Unix socket's is limited to ~100 bytes) that the
    # server's user can reach when we are root (pytest's own folders are 0700)
    root = Path(tempfile.mkdtemp(prefix="flowlang-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    server = LocalServer(bindir, root, user)
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server) -> str:
    """The base URL of the session's server (its `postgres` database)."""
    return postgres_server.url()


class Databases:
    """Empty databases for tests. `CREATE DATABASE` writes and syncs a copy of
    template0 (a few tenths of a second with fsync on, whole seconds on a busy
    disk), so a database a test is done with is emptied and used again: its
    sessions are ended, its schemas dropped, `public` made anew and its settings
    reset; one that cannot be emptied is dropped."""

    def __init__(self, server: LocalServer):
        self.server = server
        self._numbers = itertools.count(1)
        self._free: list[str] = []

    def take(self) -> str:
        if self._free:
            return self._free.pop()
        import psycopg
        name = f"flowlang_test_{os.getpid()}_{next(self._numbers)}"
        with psycopg.connect(self.server.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def give_back(self, name: str) -> None:
        import psycopg
        try:
            self._empty(name)
        except psycopg.Error:
            with psycopg.connect(self.server.url(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        self._free.append(name)

    def _empty(self, name: str) -> None:
        import psycopg
        with psycopg.connect(self.server.url(), autocommit=True) as admin:
            # whatever is still connected (a killed worker's session, a leak)
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            admin.execute(f'ALTER DATABASE "{name}" RESET ALL')
        with psycopg.connect(self.server.url(name), autocommit=True) as db:
            with db.transaction():
                db.execute("SET LOCAL lock_timeout = '10s'")  # rather dropped than stuck
                schemas = [row[0] for row in db.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname <> 'information_schema' "
                    "AND nspname NOT LIKE 'pg\\_%'")]
                for schema in schemas:
                    db.execute(f'DROP SCHEMA "{schema}" CASCADE')
                db.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
                db.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")


@pytest.fixture(scope="session")
def _postgres_databases(postgres_server):
    return Databases(postgres_server)


@pytest.fixture
def postgres_url(postgres_server, _postgres_databases):
    """The URL of an empty database of its own for one test, dropped afterwards
    (with whatever is still connected to it: a killed worker's session too)."""
    name = _postgres_databases.take()
    try:
        yield postgres_server.url(name)
    finally:
        _postgres_databases.give_back(name)
