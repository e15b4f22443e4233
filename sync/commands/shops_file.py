"""`pslab serve --shops FILE`: the shops one process serves (docs/design/service.md#many-shops).

One TOML table per shop, named by the path segment it is served under:

    [shops.alpha]
    secret_key_env = "ALPHA_KEY"           # or secret_key_file = "/run/secrets/alpha_key"
    write_key_env = "ALPHA_WRITE_KEY"      # and/or shared_secret_env; each has a _file form

The file says where each secret is, never the secret, so it can be kept with the
deployment's other settings. Every error names the shop and the variable or file;
none quotes what a variable or file holds.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postscript_audience_lab.sync.service.intake import Credentials

__all__ = ["SHOP_NAME", "ShopEntry", "ShopsFileError", "read_shops"]

SHOP_NAME = re.compile(r"[a-z0-9_-]{1,64}")  # a URL path segment and a file name, as is
SECRETS = ("secret_key", "write_key", "shared_secret")
KEYS = tuple(f"{secret}_{form}" for secret in SECRETS for form in ("env", "file"))


class ShopsFileError(Exception):
    """The shops file cannot be served as written; the message says where and what to do."""


@dataclass(frozen=True)
class ShopEntry:
    """One shop of the file, its secrets read."""

    name: str
    secret_key: str = field(repr=False)
    credentials: Credentials


def read_shops(
    path: Path, environ: Mapping[str, str] = os.environ, *, insecure: bool = False
) -> list[ShopEntry]:
    """Every shop of the TOML file at `path`, in the file's order; `ShopsFileError` saying why not.

    A `_file` path is taken from the shops file's folder when relative. A shop needs a
    Postscript key and, unless `insecure`, a write key or a shared secret.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ShopsFileError(f"cannot read --shops {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ShopsFileError(f"--shops {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:  # its message gives a position, not the text
        raise ShopsFileError(f"--shops {path} is not TOML ({exc})") from None
    unknown = sorted(set(document) - {"shops"})
    if unknown:
        raise ShopsFileError(
            f"--shops {path}: unknown key {unknown[0]!r}; only [shops.NAME] tables"
        )
    tables = document.get("shops")
    if not isinstance(tables, dict) or not tables:
        raise ShopsFileError(f"--shops {path} names no shop; add a [shops.NAME] table per shop")
    entries = [
        _entry(name, table, path.parent, environ, insecure) for name, table in tables.items()
    ]
    _refuse_shared_keys(entries)
    return entries


def _entry(
    name: str, table: object, folder: Path, environ: Mapping[str, str], insecure: bool
) -> ShopEntry:
    if not SHOP_NAME.fullmatch(name):
        raise ShopsFileError(
            f"shop name {name!r} is not a path segment: use 1 to 64 of a-z, 0-9, _ and -"
        )
    if not isinstance(table, dict):
        raise ShopsFileError(f"shop {name}: write it as a table, [shops.{name}]")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ShopsFileError(
            f"shop {name}: unknown key {unknown[0]!r}; the keys are {', '.join(KEYS)}"
        )
    secrets = {secret: _secret(name, secret, table, folder, environ) for secret in SECRETS}
    key = secrets["secret_key"]
    if key is None:
        raise ShopsFileError(
            f"shop {name}: no Postscript key; set secret_key_env or secret_key_file"
        )
    credentials = Credentials(
        write_key=secrets["write_key"], shared_secret=secrets["shared_secret"]
    )
    if not credentials.required and not insecure:
        raise ShopsFileError(
            f"shop {name}: no credential for Segment; set write_key_env or shared_secret_env (or"
            " their _file forms) so that only Segment can post, or serve with --insecure-no-auth"
        )
    return ShopEntry(name, key, credentials)


def _secret(
    shop: str, secret: str, table: Mapping[str, Any], folder: Path, environ: Mapping[str, str]
) -> str | None:
    """The secret named by `<secret>_env` or `<secret>_file`, or None when neither is given."""
    by_env, by_file = table.get(f"{secret}_env"), table.get(f"{secret}_file")
    if by_env is not None and by_file is not None:
        raise ShopsFileError(f"shop {shop}: give {secret}_env or {secret}_file, not both")
    for given, form in ((by_env, "env"), (by_file, "file")):
        if given is not None and (not isinstance(given, str) or not given):
            what = "the name of an environment variable" if form == "env" else "a file's path"
            raise ShopsFileError(f"shop {shop}: {secret}_{form} must be {what}, as a string")
    if isinstance(by_env, str):
        value = environ.get(by_env, "").strip()
        if not value:
            raise ShopsFileError(
                f"shop {shop}: environment variable {by_env} ({secret}_env) is not set or empty"
            )
        return value
    if isinstance(by_file, str):
        return _first_line(shop, f"{secret}_file", folder / by_file)
    return None


def _first_line(shop: str, key: str, path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ShopsFileError(f"shop {shop}: cannot read {key} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:  # its message would quote a byte of the secret
        raise ShopsFileError(f"shop {shop}: {key} {path} is not UTF-8 text") from None
    value = lines[0].strip() if lines else ""
    if not value:
        raise ShopsFileError(f"shop {shop}: {key} {path} is empty")
    return value


def _refuse_shared_keys(entries: list[ShopEntry]) -> None:
    """Two shops on one Postscript key would drain one shop twice, at twice its key's rate."""
    seen: dict[str, str] = {}
    for entry in entries:
        first = seen.setdefault(entry.secret_key, entry.name)
        if first != entry.name:
            raise ShopsFileError(
                f"shops {first} and {entry.name} have the same Postscript key; a key is one shop,"
                " and its 15 requests/s cannot be shared by two drains"
            )
