"""Hub access for `local.prepare.cli`: snapshots, one-file URLs, disk checks, atomic link trees.

Each prepared part is a folder built aside and swapped into place, with a `.done` marker of where
it came from (`local.util.fsio`); `already_prepared` decides whether a re-run skips it.

Everything here turns the expected failures (offline, not cached, gated, disk full, bad
revision) into a `SourceError` whose message is ONE actionable line naming the source and how
to supply it, so `prepare` can print one line per missing source and never a stack trace.

Downloads go through `huggingface_hub.snapshot_download` into the Hugging Face cache and honour
HF_HOME / HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE. After an interruption a
re-run keeps every file that finished and fetches the rest; a file cut off midway starts over
(huggingface_hub 2.4 writes each file to a process-unique temporary file and deletes it on
failure: `file_download._download_to_tmp_and_move`). The prepared folders under data/ and
models/ are trees of symlinks into that cache (nothing is copied).

Example:
    >>> from local.prepare.hub import Source, hub_snapshot
    >>> src = Source("mmsu", "yuantuo666/MMSU-full_5k_hf_format.v0", "dataset", "--mmsu", 0.6)
    >>> folder = hub_snapshot(src)                                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.util.fsio import DONE, atomic_path, building, is_done, read_done

logger = logging.getLogger("prepare")
GB = 1024**3
DISK_MARGIN = 1 * GB  # kept free on top of what a download needs
HOW_TO = ("run on a node with internet access (set HF_ENDPOINT / HF_TOKEN if your site needs "
          "them), point HF_HOME at a cache that holds it, or pass {option} PATH")


class SourceError(RuntimeError):
    """A source that could not be supplied; str() is one actionable line."""


@dataclass(frozen=True)
class Source:
    """A hub repository the recipe needs, and the prepare option that replaces it locally."""

    key: str  # avqa | mmsu | mmau | mmau_test | mmar | model
    repo_id: str
    repo_type: str  # dataset | model
    option: str  # e.g. --avqa: the local-path alternative
    approx_gb: float  # for messages when the hub cannot be asked
    revision: str | None = None
    label: str = ""  # how messages name it (default: key)
    allow_patterns: tuple[str, ...] | None = None  # the files of the repo needed (default: all)


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The cache snapshot_download uses: `cache_dir`, else HF_HUB_CACHE (from HF_HOME)."""
    if cache_dir is not None:
        return Path(cache_dir)
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(folder: Path, need_bytes: int, what: str, option: str) -> None:
    """Raise a SourceError when `folder`'s filesystem has less than need + 1 GB free."""
    free = shutil.disk_usage(_existing_ancestor(folder)).free
    if need_bytes + DISK_MARGIN > free:
        raise SourceError(
            f"{what}: needs {need_bytes / GB:.1f} GB (+{DISK_MARGIN / GB:.0f} GB margin) in "
            f"{folder}, only {free / GB:.1f} GB free. Free space, set HF_HOME (or --cache_dir) "
            f"to a larger disk, or pass {option} PATH.")


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _describe(src: Source) -> str:
    rev = f"@{src.revision}" if src.revision else ""
    return f"{src.label or src.key} ({src.repo_type} {src.repo_id}{rev}, ~{src.approx_gb:g} GB)"


def hub_snapshot(src: Source, cache_dir: str | Path | None = None) -> Path:
    """Download (or find in the cache) a whole repo snapshot; its folder in the HF cache.

    Online: a dry run lists what is missing, the free disk is checked, then the missing files
    are fetched (finished files are kept across runs; a file cut off midway starts over).
    Offline (HF_HUB_OFFLINE=1), unreachable, or refused by the hub: the cached snapshot for the
    revision is used, or a SourceError says what to do, telling "unreachable" from "no such
    repository" (401/404: a typo, or a private repo without HF_TOKEN) and "gated" (accept the
    licence page).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        DryRunError,
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what, cache = _describe(src), hub_cache_dir(cache_dir)
    kwargs = {"repo_id": src.repo_id, "repo_type": src.repo_type, "revision": src.revision,
              "cache_dir": str(cache)}
    if src.allow_patterns is not None:
        kwargs["allow_patterns"] = list(src.allow_patterns)
    local_only = _offline()
    refused: BaseException | None = None  # the hub's answer when it refused the dry run
    try:
        if not local_only:
            try:
                plan = snapshot_download(**kwargs, dry_run=True)
            except DryRunError as err:
                # huggingface_hub 2.4 wraps every failure of the dry run's listing into
                # DryRunError, chaining the cause (`_snapshot_download.py`: `raise DryRunError(
                # ...) from api_call_error`): a connection error means unreachable, an
                # HfHubHTTPError means the hub answered (401/404, gated, 5xx). Either way the
                # cache may still hold the snapshot; if not, the cause picks the message.
                if isinstance(err.__cause__, HfHubHTTPError):
                    refused = err.__cause__
                local_only = True
            else:
                need = sum(f.file_size or 0 for f in plan if f.will_download)
                check_disk(cache, need, what, src.option)
        return Path(snapshot_download(**kwargs, local_files_only=local_only))
    except SourceError:
        raise
    except IncompleteSnapshotError as err:
        raise SourceError(f"{what}: the cached snapshot in {cache} is incomplete (an interrupted "
                          f"download); re-run prepare with internet access to finish it, or "
                          f"pass {src.option} PATH. ({_first_line(err)})") from None
    except GatedRepoError:
        raise SourceError(f"{what}: the repository is gated; accept its terms on the hub "
                          f"and set HF_TOKEN, or pass {src.option} PATH.") from None
    except RepositoryNotFoundError:
        raise SourceError(f"{what}: repository not found or private (check HF_ENDPOINT and "
                          f"HF_TOKEN), or pass {src.option} PATH.") from None
    except RevisionNotFoundError:
        raise SourceError(f"{what}: revision {src.revision!r} does not exist; fix "
                          f"--revision {src.key}=REV, or pass {src.option} PATH.") from None
    except LocalEntryNotFoundError:
        if refused is not None:
            raise SourceError(_refusal(src, what, refused)) from None
        reason = "HF_HUB_OFFLINE=1" if _offline() else "the hub is unreachable"
        raise SourceError(f"{what}: not in the Hugging Face cache {cache} and {reason}; "
                          + HOW_TO.format(option=src.option) + ".") from None
    except HfHubHTTPError as err:
        raise SourceError(f"{what}: the hub answered with an error ({_first_line(err)}); "
                          "retry later, " + HOW_TO.format(option=src.option) + ".") from None
    except OSError as err:  # disk full, permissions, ... while writing the cache
        raise SourceError(f"{what}: cannot write the download to {cache} ({err}); free space or "
                          f"set HF_HOME to a writable disk, or pass {src.option} PATH.") from None


def _refusal(src: Source, what: str, err: BaseException) -> str:
    """One line for a hub that answered the listing with an error and has no cached copy."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    page = f"https://huggingface.co/{'datasets/' if src.repo_type == 'dataset' else ''}" \
        f"{src.repo_id}"
    if isinstance(err, GatedRepoError):
        return (f"{what}: the repository is gated and your token has no access: accept its "
                f"licence on {page} while logged in, set HF_TOKEN (or run `hf auth login`), "
                f"or pass {src.option} PATH.")
    if isinstance(err, RepositoryNotFoundError):
        return (f"{what}: the hub has no repository {src.repo_id!r} visible to you (HTTP "
                f"{_status(err)}): check the id for a typo; if it is private, set HF_TOKEN; "
                f"or pass {src.option} PATH.")
    return (f"{what}: the hub answered with an error (HTTP {_status(err)}: {_first_line(err)}) "
            f"and the cache holds no copy; retry later, or pass {src.option} PATH.")


def _status(err: BaseException) -> str:
    response = getattr(err, "response", None)
    return str(getattr(response, "status_code", "?"))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_url(url: str, dest: Path, option: str, what: str, timeout: float = 60.0) -> str:
    """Download one small file to `dest` atomically (`atomic_path`); returns its sha256."""
    if _offline():
        raise SourceError(f"{what}: not downloaded from {url} because HF_HUB_OFFLINE=1; run on "
                          f"a node with internet access, or pass {option} PATH.")
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise SourceError(f"{what}: cannot download {url} ({err}); run on a node with "
                              f"internet access, or pass {option} PATH.") from None
        return sha256_of(tmp)


def link_tree(src: Path, dest: Path) -> int:
    """Mirror `src` (a folder or a file) at `dest` as real folders + symlinks to the files.

    Built beside `dest` and renamed into place (`local.util.fsio.building`), so an interrupted
    run leaves no half tree at `dest`. Symlinks point at the resolved files (HF cache blobs), so
    chains stay short. Git and hub bookkeeping (.git*, .cache) and a source's own `.done` marker
    are left out. Returns the number of files linked.
    """
    src = Path(src).resolve()
    count = 0
    with building(dest) as tmp:
        if src.is_file():
            os.symlink(src, tmp / src.name)
            count = 1
        for root, dirs, files in os.walk(src, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".git", ".cache")))
            rel = Path(root).relative_to(src)
            (tmp / rel).mkdir(parents=True, exist_ok=True)
            for name in sorted(files):
                if name.startswith(".git") or name == DONE:
                    continue
                os.symlink(os.path.realpath(Path(root) / name), tmp / rel / name)
                count += 1
    return count


def already_prepared(folder: Path, wanted: dict[str, Any], overwrite: bool,
                     marker: str | None = None) -> bool:
    """True (and logged) when `folder`'s `.done` (or `marker`) records the same source/revision
    and no --overwrite was given; a part made from another source is logged and redone."""
    done = read_done(folder, marker)
    if overwrite or done is None:
        return False
    if not is_done(folder, wanted, marker):
        logger.info("%s: prepared from %s before; redoing it for %s", folder, done, wanted)
        return False
    logger.info("%s: already prepared (%s); skipping (--overwrite redoes it)", folder,
                done.get("how", "done"))
    return True


def local_path(path: str, option: str, what: str) -> Path:
    local = Path(path).expanduser()
    if not local.exists():
        raise SourceError(f"{what}: {option} {local} does not exist; give an existing path, or "
                          f"drop {option} to download from the hub.")
    return local
