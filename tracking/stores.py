"""One reader per store: Sacred's file store and its MongoDB layout (GridFS artifacts), behind the same methods.

    store = open_store("runs")                                  # a file store's folder
    store = open_store("mongodb://127.0.0.1:27018/gtn_lab")     # a MongoDB
    store.records()                                             # every run: id, name, status, config, times, result
    store.metric_series(run_id)                                 # {name: (steps, values)}
    with store.local_artifact(run_id, "teacher.pt") as path:    # a file on disk (GridFS: a temporary download)
        ...

Run ids are the store's own: in MongoDB a run's id differs from its file-store id (`file_store_id`, recorded by
the experiments' MongoDB observer). Resume, the shuffle ablation's teacher lookup and the analysis all read
stores through this module.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

from tracking.settings import MONGO_URL_VARIABLE, default_runs_dir, is_mongo_url, mongo_settings, redact


class StoreError(RuntimeError):
    """A store that cannot be read, or holds no runs; the message names the store."""


@dataclass(frozen=True)
class RunRecord:
    """What every store keeps of one Sacred run (`name`: the Sacred experiment's name)."""

    run_id: str
    file_store_id: str
    name: str
    status: str
    config: dict
    start_time: datetime | None
    stop_time: datetime | None
    result: object


def _time(value) -> datetime | None:
    """A Sacred timestamp (ISO text in the file store, datetime in MongoDB) as a naive datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


class FileStore:
    """A Sacred file store: one folder per run, `runs/<id>/`."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self.location = str(self.runs_dir)
        self.label = f"file store {self.runs_dir}"

    def records(self, missing_ok: bool = False) -> list[RunRecord]:
        """Every readable run, oldest id first; a missing folder is StoreError, or no runs with `missing_ok`."""
        if not self.runs_dir.is_dir():
            if missing_ok:
                return []
            raise StoreError(f"{self.label} does not exist: run the study first (python experiments/run_tasks.py)")
        records = []
        for folder in sorted((p for p in self.runs_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
            try:
                run = json.loads((folder / "run.json").read_text())
                config = json.loads((folder / "config.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a run killed before Sacred wrote its files: not finished
            records.append(RunRecord(folder.name, folder.name, run["experiment"]["name"], run["status"], config,
                                     _time(run.get("start_time")), _time(run.get("stop_time")), run.get("result")))
        return records

    def document(self, run_id: str) -> dict:
        """Every file Sacred wrote for one run, decoded: run (run.json), config, info, metrics (metrics.json as
        written) and captured_out; ValueError naming the run and the store when run.json or config.json is unreadable."""
        folder = self.runs_dir / str(run_id)
        try:
            run = json.loads((folder / "run.json").read_text())
            config = json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"run {run_id!r}: not a readable run of the {self.label} ({error})") from None
        metrics = folder / "metrics.json"
        cout = folder / "cout.txt"
        return {"run": run, "config": config, "info": self.info(run_id),
                "metrics": json.loads(metrics.read_text()) if metrics.is_file() else {},
                "captured_out": cout.read_text() if cout.is_file() else ""}

    def metric_series(self, run_id: str) -> dict[str, tuple[list, list]]:
        """{metric name: (steps, values)} of one run."""
        path = self.runs_dir / str(run_id) / "metrics.json"
        if not path.is_file():
            return {}
        return {name: (series["steps"], series["values"]) for name, series in json.loads(path.read_text()).items()}

    def info(self, run_id: str) -> dict:
        """The run's info dict (Sacred's `run.info`); {} when it has none."""
        path = self.runs_dir / str(run_id) / "info.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def artifact_path(self, run_id: str, name: str) -> Path | None:
        """Where an artifact lies on disk, or None when the run has none of that name."""
        path = self.runs_dir / str(run_id) / name
        return path if path.is_file() else None

    def artifact(self, run_id: str, name: str) -> bytes:
        """The bytes of one artifact; KeyError naming the run and the store when it is missing."""
        return self._existing(run_id, name).read_bytes()

    @contextlib.contextmanager
    def local_artifact(self, run_id: str, name: str) -> Iterator[Path]:
        """The artifact as a file on disk (here: where it lies); KeyError naming the run and store when missing."""
        yield self._existing(run_id, name)

    def _existing(self, run_id: str, name: str) -> Path:
        path = self.artifact_path(run_id, name)
        if path is None:
            raise KeyError(f"run {run_id} of the {self.label} has no artifact {name!r}")
        return path

    def artifact_names(self, run_id: str) -> list[str]:
        """Names of the artifacts Sacred recorded for one run."""
        run = json.loads((self.runs_dir / str(run_id) / "run.json").read_text())
        return list(run.get("artifacts", []))

    def close(self) -> None:
        """Nothing to release for a folder."""


class MongoStore:
    """Sacred's MongoDB layout: `runs`, `metrics` and GridFS (`fs`) for artifacts."""

    def __init__(self, url: str):
        options, db_name = mongo_settings(url)
        self.location = url
        self.label = f"MongoDB {redact(url)} (database {db_name})"
        self.client = pymongo.MongoClient(url, **options)
        self.db = self.client[db_name]
        try:
            self.client.admin.command("ping")
        except PyMongoError as error:
            self.client.close()
            raise StoreError(f"{self.label} cannot be reached: {type(error).__name__}: "
                             f"{str(error).split(' (configured timeouts')[0]}") from None

    def records(self, missing_ok: bool = False) -> list[RunRecord]:
        """Every run, oldest id first (an empty database has none; `missing_ok` is for the file store's sake)."""
        fields = {"experiment.name": 1, "status": 1, "config": 1, "start_time": 1, "stop_time": 1, "result": 1,
                  "meta.file_store_id": 1}
        return [RunRecord(str(doc["_id"]), str(doc.get("meta", {}).get("file_store_id", doc["_id"])),
                          doc["experiment"]["name"], doc["status"], doc.get("config", {}), doc.get("start_time"),
                          doc.get("stop_time"), doc.get("result"))
                for doc in self.db.runs.find({}, fields).sort("_id", 1)]

    @staticmethod
    def _mongo_id(run_id: str):
        return int(run_id) if str(run_id).isdigit() else run_id

    def metric_series(self, run_id: str) -> dict[str, tuple[list, list]]:
        """{metric name: (steps, values)} of one run."""
        return {doc["name"]: (doc["steps"], doc["values"])
                for doc in self.db.metrics.find({"run_id": self._mongo_id(run_id)})}

    def info(self, run_id: str) -> dict:
        """The run's info dict (Sacred's `run.info`); {} when it has none."""
        doc = self.db.runs.find_one({"_id": self._mongo_id(run_id)}, {"info": 1}) or {}
        return doc.get("info", {})

    def _artifact_ids(self, run_id: str) -> dict:
        doc = self.db.runs.find_one({"_id": self._mongo_id(run_id)}, {"artifacts": 1}) or {}
        return {artifact["name"]: artifact["file_id"] for artifact in doc.get("artifacts", [])}

    def artifact_path(self, run_id: str, name: str) -> None:
        """MongoDB keeps artifacts in GridFS, never on disk: always None (use `artifact` or `local_artifact`)."""
        return None

    def _grid_file(self, run_id: str, name: str):
        import gridfs

        file_id = self._artifact_ids(run_id).get(name)
        if file_id is None:
            raise KeyError(f"run {run_id} of the {self.label} has no artifact {name!r}")
        return gridfs.GridFS(self.db).get(file_id)

    def artifact(self, run_id: str, name: str) -> bytes:
        """The bytes of one artifact from GridFS; KeyError naming the run and the store when it is missing."""
        return self._grid_file(run_id, name).read()

    @contextlib.contextmanager
    def local_artifact(self, run_id: str, name: str) -> Iterator[Path]:
        """The artifact downloaded from GridFS into a temporary file, removed afterwards; KeyError when missing."""
        grid_file = self._grid_file(run_id, name)
        handle, path = tempfile.mkstemp(prefix="gtn-artifact-", suffix=f"-{name}")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in iter(lambda: grid_file.read(1 << 22), b""):
                    out.write(chunk)
            yield Path(path)
        finally:
            os.unlink(path)

    def artifact_names(self, run_id: str) -> list[str]:
        """Names of the artifacts Sacred recorded for one run."""
        return list(self._artifact_ids(run_id))

    def close(self) -> None:
        """Close the client."""
        self.client.close()


Store = FileStore | MongoStore


def open_location(location: str | Path) -> Store:
    """The store at `location`: a MongoDB for a mongodb:// URL, else the file store of that folder."""
    return MongoStore(location) if is_mongo_url(location) else FileStore(location)


def open_store(runs_dir: str | Path | None = None, mongo_url: str | None = None) -> Store:
    """MongoDB at `mongo_url`, else the file store `runs_dir`; with neither, $GTN_MONGO_URL, else $GTN_RUNS_DIR/runs."""
    if mongo_url:
        return MongoStore(mongo_url)
    if runs_dir:
        return FileStore(runs_dir)
    url = os.environ.get(MONGO_URL_VARIABLE)
    return MongoStore(url) if url else FileStore(default_runs_dir())


def find_run(store: Store, run_id: str | int) -> RunRecord:
    """The run `run_id` of the store; ValueError naming the store when it is not there."""
    for record in store.records(missing_ok=True):
        if record.run_id == str(run_id):
            return record
    raise ValueError(f"run {run_id!r} not found in the {store.label}")


def names_run(record: RunRecord, source_id, where, in_mongo: bool) -> bool:
    """Whether `record` is the run that a stored reference names: `source_id` is an id of the store `where` (a
    MongoDB URL: that database's own ids, matched only when reading a MongoDB, `in_mongo`; a folder or None: a file
    store's ids, which a MongoDB keeps as `file_store_id`)."""
    if is_mongo_url(where):
        return in_mongo and record.run_id == str(source_id)
    return record.file_store_id == str(source_id)


def referenced_run(records, source_id, where, in_mongo: bool, name: str, before=None):
    """The run of experiment `name` that a stored reference (`source_id` in the store `where`, see `names_run`)
    names among `records` (RunRecords or rows with the same fields): in a MongoDB shared by several file stores
    file-store ids repeat, so the newest match that started no later than `before` (if given); None if absent."""
    matches = [record for record in records if record.name == name and names_run(record, source_id, where, in_mongo)
               and (before is None or record.start_time is None or record.start_time <= before)]
    return matches[-1] if matches else None


def _resumed_source(records: list[RunRecord], run: RunRecord, in_mongo: bool) -> RunRecord | None:
    """The run `run` was resumed from (`resume_from`, an id of `resume_store`), if this store holds it."""
    return referenced_run(records, run.config["resume_from"], run.config.get("resume_store"), in_mongo, run.name,
                          before=run.start_time)


def resume_chain(records: list[RunRecord], run_id: str, in_mongo: bool = False) -> list[RunRecord]:
    """The run `run_id` and the runs it was resumed from (`resume_from`), oldest first; `in_mongo`: the records
    are a MongoDB's."""
    by_id = {record.run_id: record for record in records}
    chain = [by_id[str(run_id)]]
    while chain[0].config.get("resume_from") is not None:
        earlier = _resumed_source(records, chain[0], in_mongo)
        if earlier is None or earlier in chain:
            break  # the source run is not in this store: the curve starts at the resumed step
        chain.insert(0, earlier)
    return chain
