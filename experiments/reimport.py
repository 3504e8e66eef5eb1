"""Copy runs of the file store into MongoDB: what a run could not send there while MongoDB was away.

    python experiments/reimport.py --mongo mongodb://127.0.0.1:27018/gtn_lab 12 13
    python experiments/reimport.py --mongo mongodb://127.0.0.1:27018/gtn_lab --runs-dir bench/out/study --all

The file store always holds every metric and artifact of a run; MongoDB is the extra copy. When MongoDB goes away
during a run, the run carries on: Sacred marks the MongoDB observer failed, stops sending it metrics, and at the end
pickles the run's record into the file store (`sacred_mongo_fail_<id>_*.pickle`, the record only: no metric and
no artifact logged after the failure). This command makes MongoDB's copy of each named run equal to the file
store's: its record (config, status, result, info, captured output, times), every metric series and every artifact
(GridFS). A run MongoDB already holds (same `meta.file_store_id` and start time) is updated under its own id; any
other is inserted under the database's next id. `--all` takes every run of the file store that MongoDB lacks or
holds with another status.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from pathlib import Path

import gridfs
import pymongo

from tracking.settings import default_runs_dir, mongo_settings, redact
from tracking.stores import FileStore

RECORD_KEYS = ("experiment", "command", "host", "start_time", "stop_time", "heartbeat", "status", "result",
               "resources", "fail_trace", "meta")
TIMES = ("start_time", "stop_time", "heartbeat")


def file_store_run(runs_dir: Path, run_id: str) -> dict:
    """A file-store run as MongoObserver would have written it: record, metrics and artifact paths."""
    store = FileStore(runs_dir)
    document = store.document(run_id)
    run = document["run"]
    record = {key: run.get(key) for key in RECORD_KEYS if key in run}
    for key in TIMES:
        if record.get(key):
            record[key] = datetime.fromisoformat(record[key])
    record["meta"] = {**record.get("meta", {}), "file_store_id": str(run_id)}
    record.update(config=document["config"], info=document["info"], captured_out=document["captured_out"],
                  format="MongoObserver-0.7.0")
    artifacts = {name: store.runs_dir / str(run_id) / name for name in run.get("artifacts", [])}
    return {"record": record, "metrics": document["metrics"], "artifacts": artifacts}


def existing_run(database, stored: dict) -> dict | None:
    """MongoDB's copy of a file-store run: same file_store_id, start time equal to BSON's millisecond precision."""
    record = stored["record"]
    query = {"meta.file_store_id": record["meta"]["file_store_id"]}
    if record.get("start_time"):
        start = record["start_time"]
        query["start_time"] = {"$gte": start - timedelta(milliseconds=1), "$lte": start + timedelta(milliseconds=1)}
    return database.runs.find_one(query)


def reimport(database, stored: dict) -> tuple[int, str]:
    """Write one file-store run into `database`; (its MongoDB id, 'updated' or 'inserted')."""
    current = existing_run(database, stored)
    if current is None:
        last = database.runs.find_one(sort=[("_id", pymongo.DESCENDING)], projection={"_id": 1})
        run_id, action, uploaded = (last["_id"] + 1 if last else 1), "inserted", {}
    else:
        run_id, action = current["_id"], "updated"
        uploaded = {artifact["name"]: artifact for artifact in current.get("artifacts", [])}
    files = gridfs.GridFS(database)
    artifacts = []
    for name, path in stored["artifacts"].items():
        if name in uploaded and files.exists(uploaded[name]["file_id"]):
            files.delete(uploaded[name]["file_id"])  # the file store's copy is the final one
        with path.open("rb") as handle:
            file_id = files.put(handle, filename=f"artifact://{stored['record']['experiment']['name']}/{run_id}/{name}")
        artifacts.append({"name": name, "file_id": file_id})
    database.metrics.delete_many({"run_id": run_id})
    series = [{"run_id": run_id, "name": name, "steps": values["steps"], "values": values["values"],
               "timestamps": [datetime.fromisoformat(t) for t in values.get("timestamps", [])]}
              for name, values in stored["metrics"].items()]
    if series:
        inserted = database.metrics.insert_many(series).inserted_ids
        stored["record"]["info"]["metrics"] = [{"name": doc["name"], "id": str(doc_id)}
                                               for doc, doc_id in zip(series, inserted)]
    database.runs.replace_one({"_id": run_id}, {"_id": run_id, **stored["record"], "artifacts": artifacts},
                              upsert=True)
    return run_id, action


def runs_to_reimport(database, runs_dir: Path) -> list[str]:
    """Every run of the file store that MongoDB lacks or holds with another status."""
    chosen = []
    for run_id in (record.run_id for record in FileStore(runs_dir).records()):
        stored = file_store_run(runs_dir, run_id)
        current = existing_run(database, stored)
        if current is None or current.get("status") != stored["record"].get("status"):
            chosen.append(run_id)
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Copy the named (or all missing) file-store runs into MongoDB; print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongo", metavar="URL", required=True, help="the MongoDB to copy the runs into")
    parser.add_argument("--runs-dir", type=Path, default=None, help="file store (default: $GTN_RUNS_DIR or runs/)")
    parser.add_argument("--all", action="store_true", help="every run MongoDB lacks or holds with another status")
    parser.add_argument("run_ids", nargs="*", help="file-store ids of the runs to copy")
    args = parser.parse_args(argv)
    if bool(args.run_ids) == args.all:
        parser.error("name the runs to copy, or pass --all (not both)")
    runs_dir = args.runs_dir or default_runs_dir()
    options, db_name = mongo_settings(args.mongo)
    client = pymongo.MongoClient(args.mongo, **options)
    try:
        database = client[db_name]
        run_ids = runs_to_reimport(database, runs_dir) if args.all else args.run_ids
        stored = [file_store_run(runs_dir, run_id) for run_id in run_ids]  # every run readable before any write
        for run_id, run in zip(run_ids, stored):
            mongo_id, action = reimport(database, run)
            print(f"run {run_id} of {runs_dir}: {action} as run {mongo_id} of {redact(args.mongo)} "
                  f"({run['record'].get('status')}, {len(run['metrics'])} metrics, {len(run['artifacts'])} artifacts)")
    except pymongo.errors.PyMongoError as error:
        print(f"MongoDB at {redact(args.mongo)}: {type(error).__name__}: {str(error).split(', full error')[0]}",
              file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
