"""Tracking: the observer helper, Sacred -> MongoDB (SecantusDB) -> Omniboard -> headless Chromium, the compose file.

Tests marked `stack` start their servers on free 127.0.0.1 ports and stop them (`pytest -m stack` runs only
those). Omniboard and Chromium come from `make test` (its `stack-tools` step); a test that needs a missing one
skips on a developer machine and fails when CI is set.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import gridfs
import pymongo
import pytest
import yaml
from sacred import Experiment

from experiments import board, mnist_experiment, observers
from experiments.observers import attach_observers
from tracking import settings
from tracking.settings import mongo_settings, read_env_file, redact
from gtn_core.data import default_data_root, prepare

REPO = Path(__file__).resolve().parents[1]
SACRED_DIR = REPO / "sacred"
ARTIFACTS = REPO / "tests" / "artifacts"  # git-ignored: the browser test's screenshots
stack = pytest.mark.stack


def require(found, what: str) -> None:
    """Skip a test whose tool is missing, or fail it under CI, where `make test` must have installed the tool."""
    if not found:
        message = f"{what}; `make stack-tools` installs it"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)


def http_json(url: str):
    """GET `url` and decode its JSON."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def http_bytes(url: str) -> bytes:
    """GET `url`'s body."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses (hex, as in /proc/net/tcp*) with a socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address)
    return found


# --- the observer helper, no server -----------------------------------------------------------------------------

@pytest.fixture
def env_file(tmp_path, monkeypatch):
    """Point the helper at an empty `sacred/.env` in tmp_path, with no tracking variables in the environment."""
    path = tmp_path / ".env"
    monkeypatch.setattr(settings, "ENV_FILE", path)
    for name in ("GTN_MONGO_URL", "GTN_MONGO_DB", "GTN_MONGO_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_env_file_reads_keys_and_skips_comments_and_quotes(env_file):
    env_file.write_text("# a comment\n\nGTN_MONGO_DB = 'quoted'\nGTN_MONGO_PASSWORD=\"p=w\"\nnot a pair\n")
    assert read_env_file(env_file) == {"GTN_MONGO_DB": "quoted", "GTN_MONGO_PASSWORD": "p=w"}


def test_env_file_is_read_by_python_dotenv_with_export_and_inline_comments(env_file):
    env_file.write_text("export GTN_MONGO_DB=exported  # the database\nGTN_MONGO_PASSWORD='a#b'\nEMPTY\n")
    assert read_env_file(env_file) == {"GTN_MONGO_DB": "exported", "GTN_MONGO_PASSWORD": "a#b"}


def test_an_unwritable_runs_dir_is_named_before_any_run_starts(tmp_path):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    probe = Experiment("tracking_probe")
    with pytest.raises(ValueError, match=f"file store {blocked / 'runs'}: not writable"):
        attach_observers(probe, blocked / "runs")
    assert probe.observers == []


def test_database_name_comes_from_the_url_then_the_environment_then_env_file(env_file, monkeypatch):
    assert mongo_settings("mongodb://127.0.0.1:1")[1] == "gtn_lab"
    env_file.write_text("GTN_MONGO_DB=from_file\n")
    assert mongo_settings("mongodb://127.0.0.1:1/")[1] == "from_file"
    monkeypatch.setenv("GTN_MONGO_DB", "from_env")
    assert mongo_settings("mongodb://127.0.0.1:1")[1] == "from_env"
    assert mongo_settings("mongodb://127.0.0.1:1/from_url")[1] == "from_url"


def test_a_url_naming_a_user_takes_the_password_from_the_environment_or_env_file(env_file, monkeypatch):
    with pytest.raises(ValueError, match="names user 'gtn' but GTN_MONGO_PASSWORD is set neither"):
        mongo_settings("mongodb://gtn@127.0.0.1:1/db")
    env_file.write_text("GTN_MONGO_PASSWORD=from_file\n")
    options, _ = mongo_settings("mongodb://gtn@127.0.0.1:1/db")
    assert (options["password"], options["authSource"]) == ("from_file", "admin")
    monkeypatch.setenv("GTN_MONGO_PASSWORD", "from_env")
    assert mongo_settings("mongodb://gtn@127.0.0.1:1/db?authSource=other")[0]["authSource"] == "other"
    assert mongo_settings("mongodb://gtn@127.0.0.1:1/db")[0]["password"] == "from_env"
    assert "password" not in mongo_settings("mongodb://127.0.0.1:1/db")[0]


def test_a_malformed_url_fails_early_without_showing_its_password(env_file):
    assert redact("mongodb://gtn:s3cret@host:1/db") == "mongodb://gtn:***@host:1/db"
    with pytest.raises(ValueError, match=r"'http://gtn:\*\*\*@host:1/db'.*expected e.g. mongodb://") as error:
        mongo_settings("http://gtn:s3cret@host:1/db")
    assert "s3cret" not in str(error.value)


def test_unreachable_mongodb_is_reported_and_the_run_still_lands_in_the_file_store(tmp_path, caplog, env_file):
    probe = Experiment("tracking_probe")

    @probe.main
    def answer():
        return 42

    port = board.free_port()  # nothing listens there
    attach_observers(probe, tmp_path / "runs", mongo_url=f"mongodb://gtn:s3cret@127.0.0.1:{port}/gtn_lab")
    assert f"MongoDB at mongodb://gtn:***@127.0.0.1:{port}/gtn_lab cannot be used" in caplog.text
    assert "Connection refused" in caplog.text and "file store" in caplog.text and "s3cret" not in caplog.text
    assert [type(observer) for observer in probe.observers] == [observers.AtomicFileStorageObserver]
    run = probe.run()
    assert run.result == 42
    assert json.loads((tmp_path / "runs" / run._id / "run.json").read_text())["status"] == "COMPLETED"


# --- docker-compose.yml, checked as YAML (no Docker engine here) ------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    """sacred/docker-compose.yml, parsed."""
    return yaml.safe_load((SACRED_DIR / "docker-compose.yml").read_text())


def test_compose_publishes_both_ports_on_localhost_only(compose):
    services = compose["services"]
    assert set(services) == {"mongo", "omniboard"}
    for name, service in services.items():
        assert service["ports"] and all(port.startswith("127.0.0.1:") for port in service["ports"]), name


def test_compose_pins_its_images_and_keeps_the_data_in_a_named_volume(compose):
    mongo, omniboard = compose["services"]["mongo"], compose["services"]["omniboard"]
    assert re.fullmatch(r"mongo:\d+\.\d+\.\d+", mongo["image"])
    # Omniboard's image is built from the lock file `make board` installs from, on a pinned Node image.
    build = SACRED_DIR / omniboard["build"]
    assert omniboard["image"] == "gtn-lab/omniboard:2.16.1"
    assert re.search(r"^FROM node:\d+\.\d+\.\d+-\S+$", (build / "Dockerfile").read_text(), re.M)
    lock = json.loads((build / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/omniboard"]["version"] == "2.16.1"
    assert "latest" not in (SACRED_DIR / "docker-compose.yml").read_text()
    volume, target = mongo["volumes"][0].split(":")
    assert target == "/data/db" and volume in compose["volumes"] and "/" not in volume  # named, not a host path


def test_compose_takes_credentials_from_env_and_points_omniboard_at_the_same_database(compose):
    text = (SACRED_DIR / "docker-compose.yml").read_text()
    env = compose["services"]["mongo"]["environment"]
    assert re.fullmatch(r"\$\{GTN_MONGO_USER(:\?[^}]*)?\}", env["MONGO_INITDB_ROOT_USERNAME"])
    assert re.fullmatch(r"\$\{GTN_MONGO_PASSWORD(:\?[^}]*)?\}", env["MONGO_INITDB_ROOT_PASSWORD"])
    uri = compose["services"]["omniboard"]["environment"]["MONGO_URI"]
    assert re.fullmatch(r"mongodb://\$\{GTN_MONGO_USER\}:\$\{GTN_MONGO_PASSWORD\}@mongo:27017/"
                        r"\$\{GTN_MONGO_DB:-gtn_lab\}\?authSource=admin", uri)
    # No password literal anywhere: every URL's credentials are ${VAR}s, and so is every *PASSWORD* value.
    assert all(re.fullmatch(r"\$\{\w+\}:\$\{\w+\}", userinfo) for userinfo in re.findall(r"//([^@/\s]+)@", text))
    assert all(re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", value.strip().strip("\"'"))
               for value in re.findall(r"PASSWORD\w*:(.*)", text))
    # Every variable the file uses is documented in .env.example, which itself holds no password.
    example = read_env_file(SACRED_DIR / ".env.example")
    assert set(re.findall(r"\$\{(\w+)", text)) <= set(example)
    assert example["GTN_MONGO_PASSWORD"] == ""


def test_sacred_folder_holds_no_python_and_its_env_file_is_git_ignored():
    assert not list(SACRED_DIR.glob("*.py")), "a module in sacred/ would shadow the sacred package"
    ignored = subprocess.run(["git", "check-ignore", "-q", "sacred/.env"], cwd=REPO)
    assert ignored.returncode == 0


def test_compose_config_validates_where_compose_exists(compose):
    command = (["docker", "compose"] if shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0 else
        ["docker-compose"] if shutil.which("docker-compose") else None)
    if command is None:  # `make test` installs Debian's docker-compose when root; the YAML tests above suffice
        pytest.skip("neither `docker compose` nor docker-compose here: the YAML tests above check the file")
    env = {**os.environ, "GTN_MONGO_USER": "user", "GTN_MONGO_PASSWORD": "pw", "MONGO_PORT": "27017",
           "OMNIBOARD_PORT": "9000"}
    result = subprocess.run([*command, "config"], cwd=SACRED_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    for name, published in (("mongo", "27017"), ("omniboard", "9000")):
        (port,) = resolved[name]["ports"]  # compose v1 prints "HOST:PUBLISHED:TARGET/tcp", v2 a mapping
        if isinstance(port, dict):
            assert (port["host_ip"], str(port["published"])) == ("127.0.0.1", published), name
        else:
            assert port.startswith(f"127.0.0.1:{published}:"), name


# --- the stack: SecantusDB, the experiment logging to it, Omniboard, Chromium -----------------------------------

@pytest.fixture(scope="module")
def client(mongo_base):
    """A pymongo client of the test server."""
    with pymongo.MongoClient(mongo_base, serverSelectionTimeoutMS=5000) as connection:
        yield connection


@pytest.fixture(scope="module")
def logged(mongo_base, tmp_path_factory):
    """The smoke experiment and a failing run, recorded through attach_observers with $GTN_MONGO_URL set."""
    prepare("mnist", default_data_root())  # a no-op when `make` prepared it
    runs_dir = tmp_path_factory.mktemp("runs")
    ex = mnist_experiment.ex
    saved = list(ex.observers)
    ex.observers[:] = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GTN_MONGO_URL", f"{mongo_base}/gtn_test")
            attach_observers(ex, runs_dir)
        completed = ex.run(named_configs=["smoke"], config_updates={"progress": False})
        with pytest.raises(ValueError, match="variant='learnt'"):
            ex.run(named_configs=["smoke"], config_updates={"progress": False, "variant": "learnt"})
    finally:
        ex.observers[:] = saved
    return SimpleNamespace(runs_dir=runs_dir, run=completed)


def mongo_run(database, file_store_id) -> dict:
    """The MongoDB record of the run stored as runs/<file_store_id>."""
    (record,) = database.runs.find({"meta.file_store_id": str(file_store_id)})
    return record


@stack
def test_smoke_run_is_in_mongodb_with_its_config_status_and_result(logged, client):
    record = mongo_run(client.gtn_test, logged.run._id)
    stored = logged.runs_dir / logged.run._id
    assert record["status"] == "COMPLETED" and record["experiment"]["name"] == "gtn_mnist"
    assert record["config"] == json.loads((stored / "config.json").read_text())
    assert (record["config"]["variant"], record["config"]["outer_steps"]) == ("learned", 6)
    assert record["result"] == logged.run.result


@stack
def test_every_metric_series_is_in_mongodb_with_its_steps_and_values(logged, client):
    record = mongo_run(client.gtn_test, logged.run._id)
    expected = json.loads((logged.runs_dir / logged.run._id / "metrics.json").read_text())
    series = {doc["name"]: doc for doc in client.gtn_test.metrics.find({"run_id": record["_id"]})}
    assert set(series) == set(expected) and len(series) == 11
    for name, logged_series in expected.items():
        assert series[name]["steps"] == logged_series["steps"], name
        assert series[name]["values"] == pytest.approx(logged_series["values"]), name
    assert len(series["meta_loss"]["values"]) == 6 and series["test_accuracy"]["steps"] == [3, 6]


@stack
def test_every_artifact_is_in_gridfs_once_byte_identical_to_the_file_store(logged, client):
    record = mongo_run(client.gtn_test, logged.run._id)
    files = gridfs.GridFS(client.gtn_test)
    artifacts = {artifact["name"]: files.get(artifact["file_id"]).read() for artifact in record["artifacts"]}
    assert len(record["artifacts"]) == 3  # training.pt, written at steps 3 and 6, is uploaded once at the end
    assert set(artifacts) == {"teacher.pt", "curriculum.png", "training.pt"}
    for name, content in artifacts.items():
        assert content == (logged.runs_dir / logged.run._id / name).read_bytes(), name


@stack
def test_a_failing_run_is_recorded_as_failed_with_its_traceback(logged, client):
    (record,) = client.gtn_test.runs.find({"config.variant": "learnt"})
    assert record["status"] == "FAILED"
    assert "ValueError" in "".join(record["fail_trace"]) and "variant='learnt'" in "".join(record["fail_trace"])


@stack
def test_mongo_option_logs_the_docstring_command_without_clashing_with_older_runs(mongo_base, client, tmp_path):
    (tmp_path / "1").mkdir()  # an older run in the file store: this run becomes runs/2, and run 1 of the database
    env = {key: value for key, value in os.environ.items() if key != "GTN_MONGO_URL"}
    env["GTN_RUNS_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "experiments/mnist_experiment.py", "with", "smoke", "progress=False",
                             "--mongo", f"{mongo_base}/gtn_cli"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"Also logged to MongoDB at {mongo_base}/gtn_cli: database gtn_cli, run 1" in result.stderr
    record = mongo_run(client.gtn_cli, 2)
    assert (record["_id"], record["status"]) == (1, "COMPLETED")
    assert json.loads((tmp_path / "2" / "run.json").read_text())["status"] == "COMPLETED"


@pytest.fixture(scope="module")
def omniboard(mongo_base, tmp_path_factory):
    """Omniboard on a free 127.0.0.1 port showing database gtn_test; its base URL (…/sacred)."""
    require(board.omniboard_installed() and shutil.which("node"), "Omniboard is not installed (needs node and npm)")
    port = board.free_port()
    log = tmp_path_factory.mktemp("omniboard") / "omniboard.log"
    server = board.start_omniboard(port, f"{mongo_base}/gtn_test", log)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}{board.BASE_PATH}", port=port)
    board.stop(server)


@stack
def test_servers_listen_on_127_0_0_1_only(omniboard, mongo_base):
    localhost = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, also as IPv4-mapped IPv6
    for port in (omniboard.port, int(mongo_base.rsplit(":", 1)[1])):
        addresses = listening_addresses(port)
        assert addresses and addresses <= localhost, (port, addresses)


@stack
def test_omniboard_api_lists_the_run_its_metric_names_and_serves_its_artifacts(omniboard, logged, client):
    record = mongo_run(client.gtn_test, logged.run._id)
    listed = {run["_id"]: run for run in http_json(f"{omniboard.url}/api/v1/Runs")}
    assert listed[record["_id"]]["experiment"]["name"] == "gtn_mnist"
    assert listed[record["_id"]]["status"] == "COMPLETED"
    run = http_json(f"{omniboard.url}/api/v1/Runs/{record['_id']}")
    metrics = json.loads((logged.runs_dir / logged.run._id / "metrics.json").read_text())
    assert sorted(metric["name"] for metric in run["info"]["metrics"]) == sorted(metrics)
    for artifact in run["artifacts"]:  # the download links of the Artifacts tab
        content = http_bytes(f"{omniboard.url}/api/v1/files/download/{artifact['file_id']}/{artifact['name']}")
        assert content == (logged.runs_dir / logged.run._id / artifact["name"]).read_bytes(), artifact["name"]


def chromium(url: str, option: str, profile: Path) -> str:
    """Render `url` in headless Chromium with a fresh profile; `option` is --dump-dom or --screenshot=FILE."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    require(binary, "Chromium is not installed (Debian: apt-get install chromium)")
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--virtual-time-budget=15000",
               f"--user-data-dir={profile}", "--window-size=1400,900", option, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@stack
def test_chromium_renders_the_runs_page_and_the_run_with_its_metric_plot(omniboard, logged, client, tmp_path):
    record = mongo_run(client.gtn_test, logged.run._id)
    runs_page = chromium(omniboard.url, "--dump-dom", tmp_path / "profile-runs")
    cells = re.findall(r'public_fixedDataTableCell_cellContent">([^<]*?)(?:&nbsp;)?<', runs_page)
    assert str(record["_id"]) in cells and "COMPLETED" in cells and "FAILED" in cells
    assert re.search(r'status-text[^>]*>gtn_mnist<', runs_page)
    detail = f"{omniboard.url}?showDrillDownRunModal=true&runIdToExpand={record['_id']}&runIdStatus=COMPLETED"
    detail_page = chromium(detail, "--dump-dom", tmp_path / "profile-detail")
    assert f"Details for Run Id: {record['_id']}" in detail_page
    plotted = set(re.findall(r'class="legendtext[^"]*"[^>]*data-unformatted="(\w+)"', detail_page))
    assert plotted == set(json.loads((logged.runs_dir / logged.run._id / "metrics.json").read_text()))
    ARTIFACTS.mkdir(exist_ok=True)
    for name, url in (("omniboard_runs.png", omniboard.url), ("omniboard_run.png", detail)):
        chromium(url, f"--screenshot={ARTIFACTS / name}", tmp_path / f"profile-{name}")
        assert (ARTIFACTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@stack
def test_a_run_outlives_mongodb_going_away_and_the_reimport_makes_mongodb_whole(tmp_path):
    """SecantusDB stopped half-way through a run: the run completes in the file store, Sacred pickles its record
    there, and experiments/reimport.py then gives MongoDB every metric and artifact of it."""
    import time

    port, storage = board.free_port(), tmp_path / "db"
    url, runs = f"mongodb://127.0.0.1:{port}/gtn_outage", tmp_path / "runs"
    server = board.start_database(port, storage, tmp_path / "db.log")
    env = {**{k: v for k, v in os.environ.items() if k != "GTN_MONGO_URL"}, "GTN_RUNS_DIR": str(runs),
           "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen([sys.executable, "experiments/mnist_experiment.py", "with", "smoke", "outer_steps=80",
                            "eval_every=20", "progress=False", "--mongo", url], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (runs / "1" / "training.pt").exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)  # the first checkpoint (step 20): the run is half-way in, MongoDB has its start
        board.stop(server)
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    stored = runs / "1"
    assert json.loads((stored / "run.json").read_text())["status"] == "COMPLETED"
    metrics = json.loads((stored / "metrics.json").read_text())
    assert metrics["meta_loss"]["steps"] == list(range(1, 81))
    assert {"teacher.pt", "curriculum.png", "training.pt"} <= set(json.loads((stored / "run.json").read_text())
                                                                 ["artifacts"])
    assert list(runs.glob("sacred_mongo_fail_*.pickle")), "Sacred pickles the record it could not save"

    server = board.start_database(port, storage, tmp_path / "db2.log")
    try:
        database = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000).gtn_outage
        (before,) = database.runs.find({"meta.file_store_id": "1"})
        assert before["status"] != "COMPLETED"  # what MongoDB got before it went away
        result = subprocess.run([sys.executable, "experiments/reimport.py", "--mongo", url, "--runs-dir", str(runs),
                                 "--all"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert f"run 1 of {runs}: updated as run {before['_id']}" in result.stdout
        (after,) = database.runs.find({"meta.file_store_id": "1"})
        assert after["_id"] == before["_id"] and after["status"] == "COMPLETED"
        assert after["config"] == json.loads((stored / "config.json").read_text())
        series = {doc["name"]: doc for doc in database.metrics.find({"run_id": after["_id"]})}
        assert set(series) == set(metrics) and series["meta_loss"]["steps"] == list(range(1, 81))
        assert series["meta_loss"]["values"] == pytest.approx(metrics["meta_loss"]["values"])
        files = gridfs.GridFS(database)
        for artifact in after["artifacts"]:
            assert files.get(artifact["file_id"]).read() == (stored / artifact["name"]).read_bytes()
        again = subprocess.run([sys.executable, "experiments/reimport.py", "--mongo", url, "--runs-dir", str(runs),
                                "--all"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and again.stdout == ""  # nothing left to copy
    finally:
        board.stop(server)
