"""The tracking stack without Docker: SecantusDB (a MongoDB-wire server) and Omniboard, both on 127.0.0.1 only.

    make board                                   # = python experiments/board.py
    python experiments/board.py --port 9001 --db-port 27019 --data-dir /tmp/gtn-board

It prints Omniboard's address and the URL to log to; then, in another terminal:

    python experiments/mnist_experiment.py with smoke --mongo mongodb://127.0.0.1:27018/gtn_lab

Runs are kept on disk in the data directory (default `.board/db`) between sessions; server logs go to
`.board/logs/`. Ctrl-C stops both servers. Omniboard comes from npm, at the exact versions of
`tools/omniboard/package-lock.json` (~530 MB), installed into `tools/omniboard/node_modules` on first use.
SecantusDB (GPL) only ever runs as a separate process: a development tool, imported by nothing here.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = REPO_ROOT / ".board"
OMNIBOARD_DIR = REPO_ROOT / "tools" / "omniboard"
OMNIBOARD_START = OMNIBOARD_DIR / "node_modules" / "omniboard" / "dist" / "start.js"
LISTEN_PRELOAD = OMNIBOARD_DIR / "listen_localhost.js"  # Omniboard itself would listen on all interfaces
HOST = "127.0.0.1"
BASE_PATH = "/sacred"  # Omniboard serves its UI and API (e.g. /sacred/api/v1/Runs) under the database's path
DEFAULT_DB = "gtn_lab"  # observers.DEFAULT_MONGO_DB, not imported: this script needs no Sacred


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def http_ok(url: str) -> bool:
    """Whether `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a server log, for error messages."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def start_process(command: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None):
    """Start a server in its own session (Ctrl-C reaches only us, and we stop it), output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, what: str, log_path: Path,
               timeout: float) -> None:
    """Poll `ready` until true; if the process exits, time runs out or we are interrupted, stop it and raise."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with code {process.returncode}; {log_path} ends with:\n"
                                   f"{log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer within {timeout:.0f} s; {log_path} ends with:\n"
                                   f"{log_tail(log_path)}")
            time.sleep(0.2)
    except BaseException:
        stop(process)
        raise


def start_database(port: int, storage: Path, log_path: Path, timeout: float = 60) -> subprocess.Popen:
    """SecantusDB on 127.0.0.1:`port`, data on disk in `storage`; returns once it accepts connections."""
    storage.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "secantus", "--host", HOST, "--port", str(port),
               "--storage-path", str(storage), "--cache-size", "256M", "--log-level", "WARNING"]
    # cwd: SecantusDB reads ./secantusd.toml when there is one; the storage folder holds none.
    process = start_process(command, log_path, cwd=storage)
    wait_until(lambda: port_open(port), process, f"SecantusDB on port {port}", log_path, timeout)
    return process


def omniboard_installed() -> bool:
    """Whether Omniboard is installed in tools/omniboard/node_modules."""
    return OMNIBOARD_START.is_file()


def install_omniboard() -> None:
    """`npm ci` Omniboard at the locked versions into tools/omniboard/node_modules."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: Omniboard needs Node.js >= 20 and npm (Debian: apt-get install nodejs npm)")
    print(f"Installing Omniboard from npm into {OMNIBOARD_DIR / 'node_modules'} (~530 MB, about a minute)...",
          flush=True)
    subprocess.run([npm, "ci", "--prefix", str(OMNIBOARD_DIR), "--no-audit", "--no-fund"], check=True)


def start_omniboard(port: int, mongo_url: str, log_path: Path, timeout: float = 90) -> subprocess.Popen:
    """Omniboard on 127.0.0.1:`port` showing the database of `mongo_url`; returns once its API answers."""
    node = shutil.which("node")
    if node is None or not omniboard_installed():
        raise RuntimeError("Omniboard needs node and `npm ci --prefix tools/omniboard` (make board does it)")
    env = {**os.environ, "PORT": str(port), "BIND_HOST": HOST, "MONGO_URI": mongo_url}
    process = start_process([node, "-r", str(LISTEN_PRELOAD), str(OMNIBOARD_START)], log_path, env=env)
    # The runs count needs the database, so a 200 means Omniboard is up and connected.
    api = f"http://{HOST}:{port}{BASE_PATH}/api/v1/Runs/count"
    wait_until(lambda: http_ok(api), process, f"Omniboard on port {port}", log_path, timeout)
    return process


def build_parser() -> argparse.ArgumentParser:
    """The command line of `make board`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=9000, help="Omniboard's port (default 9000)")
    parser.add_argument("--db-port", type=int, default=27018, help="SecantusDB's port (default 27018)")
    parser.add_argument("--db-name", default=DEFAULT_DB, help=f"database the runs go to (default {DEFAULT_DB})")
    parser.add_argument("--data-dir", type=Path, default=STATE_DIR / "db", help="database files (default .board/db)")
    return parser


def raise_interrupt(signum, frame):
    """SIGTERM handler: stop the servers as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start both servers, print where to look and what to log to, stop both on Ctrl-C or SIGTERM."""
    args = build_parser().parse_args(argv)
    busy = [f"{name} port {port}" for name, port in (("--port", args.port), ("--db-port", args.db_port))
            if port_open(port)]
    if busy:
        print(f"Already in use on {HOST}: {', '.join(busy)}; pick free ones, e.g. make board BOARD_ARGS='--port 9001'",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, raise_interrupt)
    mongo_url = f"mongodb://{HOST}:{args.db_port}/{args.db_name}"
    logs = STATE_DIR / "logs"
    servers: list[tuple[str, subprocess.Popen]] = []
    try:
        if not omniboard_installed():
            install_omniboard()
        servers.append(("SecantusDB", start_database(args.db_port, args.data_dir, logs / "secantusdb.log")))
        servers.append(("Omniboard", start_omniboard(args.port, mongo_url, logs / "omniboard.log")))
        print(f"\nOmniboard:  http://{HOST}:{args.port}{BASE_PATH}\n"
              f"Log a run:  python experiments/mnist_experiment.py with smoke --mongo {mongo_url}\n"
              f"   or set:  export GTN_MONGO_URL={mongo_url}\n"
              f"Data in {args.data_dir}, logs in {logs}. Ctrl-C stops both.", flush=True)
        while True:
            for name, process in servers:
                if process.poll() is not None:
                    print(f"{name} stopped (exit code {process.returncode}); see {logs}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping Omniboard and SecantusDB...", flush=True)
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        for _, process in reversed(servers):
            stop(process)


if __name__ == "__main__":
    sys.exit(main())
