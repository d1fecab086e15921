"""Turn a downloaded audio source into one flat folder of audio files, atomically.

MMAU test-mini audio may arrive as a tar/zip archive, as parquet with embedded clips, or as
loose audio files. `build_audio_dir` handles all three and writes the result under a hidden
`.NAME.partial` folder that is renamed to `dest` only when complete (`local.util.fsio.building`):
an interrupted extraction or conversion leaves `dest` untouched, and the next run starts the
partial folder afresh, giving the same result as one clean run.

Parquet comes in two layouts:

* the hub's (`gamma-lab-umd/MMAU-test-mini`): one root file `test_mini.parquet`, the clip in
  a `context` struct `{bytes, path: null}`, the item id inside `other_attributes`, a JSON
  string (public loaders read it so, e.g. sgl-project/sgl-eval's `sgl_eval/evals/_mmau.py`:
  `row["context"]["bytes"]`, `json.loads(row["other_attributes"])`). Each clip is written as
  the file the question file names for that id (`names`: id -> file name, from `audio_id`),
  else as `<id>.wav`; payloads are written byte for byte (some are MP3 streams in files named
  `.wav`: `local.core.audio` decodes by content, not by name);
* a datasets Audio column (`audio`/`audio_path`/`wav`, cells `{bytes, path}`), named by the
  cell's path or an `audio_id`/`id`/`key` column.

Files land flat, by base name (`read_mmau` resolves `audio_id` by file name).

Example:
    >>> from pathlib import Path
    >>> from local.prepare.unpack import build_audio_dir
    >>> build_audio_dir(Path("test-mini-audios.tar.gz"), Path("data/mmau/test-mini-audios"))
    ... # doctest: +SKIP
    'extracted 1000 audio files from 1 archive(s)'
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from local.util.fsio import building

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus"}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


class UnpackError(RuntimeError):
    """The source holds no usable audio, or an archive is corrupt; the message says which."""


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("._")


def _extract(archive: Path, into: Path) -> None:
    """Extract safely (no absolute paths, no `..`, no links outside `into`), with a progress bar
    of known total (rate and ETA): a zip's members, a tar's bytes read from the archive (a
    compressed tar's member count is only known once it has been read through)."""
    desc = f"extract {archive.name}"
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in tqdm(zf.infolist(), desc=desc, unit="file"):
                    zf.extract(member, into)  # zipfile strips absolute and '..' parts
        else:
            with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tf, \
                    tqdm(total=archive.stat().st_size, desc=desc, unit="B", unit_scale=True,
                         unit_divisor=1024) as bar:
                for member in tf:
                    tf.extract(member, into, filter="data")
                    bar.update(raw.tell() - bar.n)
                bar.update(bar.total - bar.n)  # the end-of-archive blocks
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise UnpackError(f"{archive}: cannot extract ({err}); the archive is corrupt or "
                          "truncated: delete it (or its HF cache entry) and re-run "
                          "prepare.") from err


def _place(file: Path, tmp: Path, seen: dict[str, Path], move: bool) -> None:
    """Put one audio file at tmp/<name>: moved (extracted) or symlinked (already on disk)."""
    name = file.name
    if name in seen:
        raise UnpackError(f"two audio files share the name {name!r} ({seen[name]} and {file}); "
                          "audio is looked up by file name, so names must be unique.")
    seen[name] = file
    target = tmp / name
    if move:
        os.replace(file, target)
    else:
        os.symlink(os.path.realpath(file), target)


HUB_AUDIO_COLUMN = "context"  # the MMAU hub parquet: the clip as {bytes, path: null}
HUB_ID_COLUMN = "other_attributes"  # a JSON string holding "id"


def _hub_item_id(parquet: Path, index: int, cell: Any) -> str:
    """The item id inside one row's `other_attributes` JSON string (or dict)."""
    try:
        attrs = json.loads(cell) if isinstance(cell, str) else cell
        ident = attrs["id"]
    except (TypeError, ValueError, KeyError) as err:
        raise UnpackError(f"{parquet}: row {index}: {HUB_ID_COLUMN} {str(cell)[:80]!r} holds no "
                          f"JSON object with an 'id' ({err}); is this gamma-lab-umd/"
                          "MMAU-test-mini's test_mini.parquet?") from None
    if not isinstance(ident, str) or not ident or Path(ident).name != ident:
        raise UnpackError(f"{parquet}: row {index}: id {ident!r} is not a usable file stem.")
    return ident


def _audio_cells(parquet: Path, names: Mapping[str, str]
                 ) -> Iterator[tuple[str, bytes | None, str]]:
    """(file name, encoded bytes or None, row label) per row of a parquet file with clips."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(parquet)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise UnpackError(f"{parquet}: not a readable parquet file ({err}); re-download it, or "
                          "remove it from the audio source.") from None
    columns = pf.schema_arrow.names
    hub = HUB_AUDIO_COLUMN in columns and HUB_ID_COLUMN in columns
    column = HUB_AUDIO_COLUMN if hub else next(
        (c for c in ("audio", "audio_path", "wav") if c in columns), None)
    if column is None:
        raise UnpackError(f"{parquet}: no audio column (has {columns}); expected the hub's "
                          f"'{HUB_AUDIO_COLUMN}' + '{HUB_ID_COLUMN}' or an 'audio' column.")
    id_column = HUB_ID_COLUMN if hub else next(
        (c for c in ("audio_id", "id", "key") if c in columns), None)
    index = 0
    for batch in pf.iter_batches(batch_size=64, columns=[c for c in (column, id_column) if c]):
        for row in batch.to_pylist():
            cell = row[column]
            data = cell.get("bytes") if isinstance(cell, dict) else None
            path = cell.get("path") if isinstance(cell, dict) else None
            if hub:
                ident = _hub_item_id(parquet, index, row[id_column])
                name, label = names.get(ident, f"{ident}.wav"), f"id {ident}"
            else:
                ident = row.get(id_column) if id_column else None
                if path:
                    name = Path(path).name
                elif ident:
                    name = Path(str(ident)).name
                    name = name if Path(name).suffix else f"{name}.wav"
                else:
                    raise UnpackError(f"{parquet}: row {index} has neither an audio path nor "
                                      "an id.")
                label = f"row {index} ({name})"
            yield name, data or None, label
            index += 1


def _row_count(parquet: Path) -> int | None:
    """Rows in a parquet file, from its footer (None if unreadable: `_audio_cells` says why)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(parquet).metadata.num_rows
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return None


def _convert(parquet: Path, tmp: Path, seen: dict[str, Path], names: Mapping[str, str],
             empty: list[str]) -> int:
    """Write each row's clip to tmp/<name>; rows without bytes go to `empty` (reported)."""
    count = 0
    for name, data, label in tqdm(_audio_cells(parquet, names), desc=f"convert {parquet.name}",
                                  unit="clip", total=_row_count(parquet)):
        if data is None:
            empty.append(label)
            continue
        if name in seen:
            raise UnpackError(f"{parquet}: two audio rows share the name {name!r} ({label}); "
                              "names must be unique.")
        seen[name] = parquet
        with open(tmp / name, "wb") as out:
            out.write(data)
        count += 1
    return count


def build_audio_dir(source: Path, dest: Path, names: Mapping[str, str] | None = None) -> str:
    """Make `dest` a flat folder of the audio in `source`; returns what was done, in words.

    `source` is an archive file, or a folder with archives, parquet files and/or audio files.
    Extracted and converted files are written; loose audio files are symlinked (not copied).
    `names` maps item ids to file names for the hub parquet layout (see the module doc).
    """
    source = Path(source)
    with building(dest) as tmp:  # no .done inside: readers take every file of the folder
        return _fill(source, tmp, names or {})


def _fill(source: Path, tmp: Path, names: Mapping[str, str]) -> str:
    """Put the audio of `source` into the empty folder `tmp`; what was done, in words."""
    files = [source] if source.is_file() else sorted(
        p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
    archives = [p for p in files if is_archive(p)]
    parquets = [p for p in files if p.suffix == ".parquet"]
    loose = [p for p in files if _is_audio(p)]
    seen: dict[str, Path] = {}
    done: list[str] = []
    if archives:
        staging = tmp / ".extract"
        for archive in archives:
            _extract(archive, staging)
        extracted = sorted(p for p in staging.rglob("*") if p.is_file() and _is_audio(p))
        for file in extracted:
            _place(file, tmp, seen, move=True)
        shutil.rmtree(staging)
        done.append(f"extracted {len(extracted)} audio files from {len(archives)} archive(s)")
    if parquets:
        empty: list[str] = []
        converted = sum(_convert(p, tmp, seen, names, empty) for p in parquets)
        done.append(f"converted {converted} clips from {len(parquets)} parquet file(s)")
        if empty:
            done.append(f"{len(empty)} row(s) without audio bytes skipped "
                        f"({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''})")
    if loose:
        for file in loose:
            _place(file, tmp, seen, move=False)
        done.append(f"linked {len(loose)} audio files (symlinks, not copied)")
    if not seen:
        shutil.rmtree(tmp)  # nothing to resume: leave no partial folder behind
        raise UnpackError(f"{source}: no audio found (looked for archives {ARCHIVE_SUFFIXES}, "
                          f".parquet with an audio column, and {sorted(AUDIO_SUFFIXES)} files).")
    return "; ".join(done)
