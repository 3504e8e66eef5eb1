"""Tracking settings: the file store's folder and the MongoDB URL, database and password.

The file store is `runs/` (or $GTN_RUNS_DIR). MongoDB comes from a URL (`--mongo URL` or $GTN_MONGO_URL); its
database is the URL's path, else $GTN_MONGO_DB, else `gtn_lab`. A URL never needs a password in it: one that
names a user (`mongodb://gtn@127.0.0.1:27017/gtn_lab`) takes the password from $GTN_MONGO_PASSWORD or
`sacred/.env`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from dotenv import dotenv_values
from pymongo import uri_parser
from pymongo.errors import PyMongoError

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = REPO_ROOT / "sacred" / ".env"
RUNS_DIR_VARIABLE = "GTN_RUNS_DIR"
MONGO_URL_VARIABLE = "GTN_MONGO_URL"
MONGO_DB_VARIABLE = "GTN_MONGO_DB"
MONGO_PASSWORD_VARIABLE = "GTN_MONGO_PASSWORD"
DEFAULT_MONGO_DB = "gtn_lab"
CONNECT_TIMEOUT_MS = 2000  # a missing server costs this much, once
MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")


def default_runs_dir() -> Path:
    """The file store: $GTN_RUNS_DIR if set, else <repo>/runs."""
    return Path(os.environ.get(RUNS_DIR_VARIABLE, REPO_ROOT / "runs"))


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` pairs of a dotenv file, read by python-dotenv (keys without a value left out); {} if absent."""
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def setting(name: str) -> str | None:
    """A tracking setting: the environment first, then `sacred/.env`; None when neither has a non-empty value."""
    return os.environ.get(name) or read_env_file(ENV_FILE).get(name) or None


def redact(url: str) -> str:
    """`url` with any password replaced by ***, fit for messages and logs."""
    return re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", url)


def is_mongo_url(location: object) -> bool:
    """Whether a store location is a MongoDB URL (else it is a file store's folder)."""
    return isinstance(location, str) and location.startswith(MONGO_SCHEMES)


def mongo_settings(url: str) -> tuple[dict, str]:
    """MongoClient options for `url` (a password from the environment if it names a user) and the database."""
    try:
        parsed = uri_parser.parse_uri(url)
    except PyMongoError as error:
        raise ValueError(f"MongoDB URL {redact(url)!r}: {error}; "
                         "expected e.g. mongodb://127.0.0.1:27017/gtn_lab") from None
    options = {"serverSelectionTimeoutMS": CONNECT_TIMEOUT_MS}
    if parsed["username"] and not parsed["password"]:
        password = setting(MONGO_PASSWORD_VARIABLE)
        if password is None:
            raise ValueError(f"MongoDB URL {redact(url)!r} names user {parsed['username']!r} but "
                             f"{MONGO_PASSWORD_VARIABLE} is set neither in the environment nor in {ENV_FILE}")
        options.update(password=password, authSource=parsed["options"].get("authSource", "admin"))
    return options, parsed["database"] or setting(MONGO_DB_VARIABLE) or DEFAULT_MONGO_DB
