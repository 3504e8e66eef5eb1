"""Where Sacred runs are recorded: one helper used by every experiment script.

Every run goes to the file store `runs/` (or $GTN_RUNS_DIR). It also goes to MongoDB, for Omniboard, when a URL
is given: `--mongo URL` on an experiment's command line, `attach_observers(ex, mongo_url=URL)`, or $GTN_MONGO_URL
(settings: `tracking.settings`; reading runs back: `tracking.stores`). A MongoDB that cannot be reached at start
is reported and skipped: the run still goes to the file store, so nothing is lost. In MongoDB a run takes the database's next id; the file store's id of the same
run is in its `meta.file_store_id`.

Artifacts written more than once in a run (the training checkpoint `training.pt`) replace their file-store copy
atomically, so a run killed while saving keeps its previous checkpoint; MongoDB gets such an artifact once, when
the run ends (completed, interrupted or failed), since it can be tens of MB.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError
from sacred import Experiment
from sacred.commandline_options import cli_option
from sacred.observers import FileStorageObserver, MongoObserver
from sacred.observers.file_storage import DEFAULT_FILE_STORAGE_PRIORITY as FILE_STORE_PRIORITY

from gtn_core.distributed import current_world
from tracking.settings import MONGO_URL_VARIABLE, default_runs_dir, mongo_settings, redact

log = logging.getLogger(__name__)


def check_writable(runs_dir: str | Path) -> Path:
    """`runs_dir`, created if needed; ValueError naming it when this process cannot write a file there."""
    runs_dir = Path(runs_dir)
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs_dir, prefix=".write-check-"):
            pass
    except OSError as error:
        raise ValueError(f"file store {runs_dir}: not writable ({error.strerror or error}); expected a folder this "
                         "user can write (set $GTN_RUNS_DIR or --runs-dir)") from None
    return runs_dir


REPLACED_ARTIFACTS = ("training.pt",)  # written again and again during a run: replaced, uploaded once at the end


class AtomicFileStorageObserver(FileStorageObserver):
    """A FileStorageObserver whose artifacts replace their previous copy atomically and are listed once."""

    def artifact_event(self, name, filename, metadata=None, content_type=None):
        """Copy to a temp file in the run folder, os.replace it over `name`, list `name` once in run.json."""
        handle, temporary = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.")
        os.close(handle)
        try:
            shutil.copyfile(filename, temporary)
            os.replace(temporary, os.path.join(self.dir, name))
        except BaseException:
            os.unlink(temporary)
            raise
        if name not in self.run_entry["artifacts"]:
            self.run_entry["artifacts"].append(name)
        self.save_json(self.run_entry, "run.json")


class NumberingMongoObserver(MongoObserver):
    """A MongoObserver that numbers runs in its own database instead of reusing the file store's run id.

    The file store (higher priority) names the run `runs/<id>`; reusing that id in a database shared by several
    file stores, or the database's id in a file store with older runs, would collide and fail the run at start.
    So this observer takes its database's next free id and records the file store's as `meta.file_store_id`.
    """

    def __init__(self, url: str, **kwargs):
        super().__init__(priority=FILE_STORE_PRIORITY - 10, **kwargs)
        self.url = redact(url)
        self.held = {}  # name -> (private copy, metadata, content type) of REPLACED_ARTIFACTS not yet uploaded

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        """Insert the run under the database's next id; the file store's id goes into its meta info."""
        mongo_id = super().started_event(ex_info, command, host_info, start_time, config,
                                         {**meta_info, "file_store_id": _id}, _id=None)
        log.info("Also logged to MongoDB at %s: database %s, run %s", self.url, self.runs.database.name, mongo_id)
        return mongo_id

    def artifact_event(self, name, filename, metadata=None, content_type=None):
        """Upload an artifact to GridFS; one of REPLACED_ARTIFACTS only keeps its latest copy until the run ends."""
        if name not in REPLACED_ARTIFACTS:
            return super().artifact_event(name, filename, metadata, content_type)
        if name not in self.held:
            handle, copy = tempfile.mkstemp(prefix=f"gtn-{name}-")
            os.close(handle)
            self.held[name] = (copy, metadata, content_type)
        shutil.copyfile(filename, self.held[name][0])

    def _upload_held(self) -> None:
        # A MongoDB gone away must not stop the final record (Sacred then pickles it into the file store); the
        # file store holds the artifact, and `experiments/reimport.py` copies it over later.
        try:
            for name, (copy, metadata, content_type) in self.held.items():
                super().artifact_event(name, copy, metadata, content_type)
        except PyMongoError as error:
            log.warning("MongoDB at %s: could not upload %s (%s); the file store has it (experiments/reimport.py "
                        "copies it over)", self.url, ", ".join(self.held), type(error).__name__)
        finally:
            for copy, _, _ in self.held.values():
                os.unlink(copy)
            self.held = {}

    def completed_event(self, stop_time, result):
        """Upload the held artifacts, then record COMPLETED."""
        self._upload_held()
        super().completed_event(stop_time, result)

    def interrupted_event(self, interrupt_time, status):
        """Upload the held artifacts (the checkpoint to resume from), then record the interruption."""
        self._upload_held()
        super().interrupted_event(interrupt_time, status)

    def failed_event(self, fail_time, fail_trace):
        """Upload the held artifacts (the last good checkpoint), then record FAILED."""
        self._upload_held()
        super().failed_event(fail_time, fail_trace)


def mongo_observer(url: str, runs_dir: str | Path) -> MongoObserver | None:
    """A MongoObserver for `url`, or None (with a warning naming the URL) when MongoDB does not answer a ping."""
    options, db_name = mongo_settings(url)
    client = pymongo.MongoClient(url, **options)
    try:
        client.admin.command("ping")
    except PyMongoError as error:
        client.close()
        reason = str(error).split(" (configured timeouts")[0].split(", full error")[0]  # pymongo's first clause
        log.warning("MongoDB at %s cannot be used (%s: %s); this run is recorded in the file store %s only",
                    redact(url), type(error).__name__, reason, runs_dir)
        return None
    # failure_dir: where Sacred pickles the run's record if MongoDB goes away before the run ends
    return NumberingMongoObserver(url, client=client, db_name=db_name, failure_dir=str(runs_dir))


def use_mongo(observers: list, url: str, runs_dir: str | Path) -> None:
    """Make `url` the one MongoDB that `observers` report to (dropped if unreachable); the file store stays."""
    observer = mongo_observer(url, runs_dir)
    observers[:] = [existing for existing in observers if not isinstance(existing, MongoObserver)]
    if observer is not None:
        observers.append(observer)


def attach_observers(ex: Experiment, runs_dir: str | Path | None = None, mongo_url: str | None = None) -> None:
    """Record `ex` in the file store (checked writable now) and in MongoDB at `mongo_url` or $GTN_MONGO_URL."""
    runs_dir = check_writable(runs_dir or default_runs_dir())
    if not any(isinstance(observer, FileStorageObserver) for observer in ex.observers):
        ex.observers.append(AtomicFileStorageObserver(str(runs_dir)))
    url = mongo_url or os.environ.get(MONGO_URL_VARIABLE)
    if url and not any(isinstance(observer, MongoObserver) for observer in ex.observers):
        use_mongo(ex.observers, url, runs_dir)


@cli_option("-M", "--mongo")
def mongo_option(url, run):
    """Also log this run to MongoDB at URL, e.g. mongodb://127.0.0.1:27018/gtn_lab (replaces $GTN_MONGO_URL)."""
    if not current_world().is_main:
        return  # under torchrun only rank 0 records the run
    file_stores = [observer.basedir for observer in run.observers if isinstance(observer, FileStorageObserver)]
    use_mongo(run.observers, url, file_stores[0] if file_stores else default_runs_dir())
