"""Turn a downloaded audio source into one flat folder of audio files, atomically.

MMAU test-mini audio may arrive as a tar/zip archive, as parquet shards with an audio column
(`{"bytes", "path"}` cells), or as loose audio files. `build_audio_dir` handles all three and
writes the result under a hidden `.NAME.partial` folder that is renamed to `dest` only when
complete: an interrupted extraction or conversion leaves `dest` untouched, and the next run
starts the partial folder afresh, giving the same result as one clean run.

Files land flat, by base name (`read_mmau` resolves `audio_id` by file name).

Example:
    >>> from pathlib import Path
    >>> from local.hub_unpack import build_audio_dir
    >>> build_audio_dir(Path("test-mini-audios.tar.gz"), Path("data/mmau/test-mini-audios"))
    ... # doctest: +SKIP
    'extracted 1000 audio files from 1 archive(s)'
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from local.hub import replace_dir

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus"}
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


class UnpackError(RuntimeError):
    """The source holds no usable audio, or an archive is corrupt; the message says which."""


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith("._")


def _extract(archive: Path, into: Path) -> None:
    """Extract safely (no absolute paths, no `..`, no links outside `into`)."""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in tqdm(zf.infolist(), desc=f"extract {archive.name}", unit="file"):
                    zf.extract(member, into)  # zipfile strips absolute and '..' parts
        else:
            with tarfile.open(archive) as tf:
                for member in tqdm(tf, desc=f"extract {archive.name}", unit="file"):
                    tf.extract(member, into, filter="data")
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


def _audio_cells(parquet: Path) -> Iterator[tuple[str, bytes]]:
    """(file name, encoded bytes) for each row of a parquet shard with an audio column."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(parquet)
    names = pf.schema_arrow.names
    column = next((c for c in ("audio", "audio_path", "wav") if c in names), None)
    if column is None:
        raise UnpackError(f"{parquet}: no audio column (has {names}).")
    id_column = next((c for c in ("audio_id", "id", "key") if c in names), None)
    for batch in pf.iter_batches(batch_size=64, columns=[c for c in (column, id_column) if c]):
        rows = batch.to_pylist()
        for row in rows:
            cell = row[column]
            data = cell.get("bytes") if isinstance(cell, dict) else None
            path = cell.get("path") if isinstance(cell, dict) else None
            if not data:
                raise UnpackError(f"{parquet}: a row has no embedded audio bytes ({path!r}).")
            ident = row.get(id_column) if id_column else None
            if path:
                name = Path(path).name
            elif ident:
                name = Path(str(ident)).name
                name = name if Path(name).suffix else f"{name}.wav"
            else:
                raise UnpackError(f"{parquet}: a row has neither an audio path nor an id.")
            yield name, data


def _convert(parquet: Path, tmp: Path, seen: dict[str, Path]) -> int:
    count = 0
    for name, data in tqdm(_audio_cells(parquet), desc=f"convert {parquet.name}", unit="clip"):
        if name in seen:
            raise UnpackError(f"two audio rows share the name {name!r}; names must be unique.")
        seen[name] = parquet
        with open(tmp / name, "wb") as out:
            out.write(data)
        count += 1
    return count


def build_audio_dir(source: Path, dest: Path) -> str:
    """Make `dest` a flat folder of the audio in `source`; returns what was done, in words.

    `source` is an archive file, or a folder with archives, parquet shards and/or audio files.
    Extracted and converted files are written; loose audio files are symlinked (not copied).
    """
    source = Path(source)
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted run
    tmp.mkdir(parents=True)
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
        converted = sum(_convert(p, tmp, seen) for p in parquets)
        done.append(f"converted {converted} clips from {len(parquets)} parquet file(s)")
    if loose:
        for file in loose:
            _place(file, tmp, seen, move=False)
        done.append(f"linked {len(loose)} audio files (symlinks, not copied)")
    if not seen:
        shutil.rmtree(tmp)
        raise UnpackError(f"{source}: no audio found (looked for archives {ARCHIVE_SUFFIXES}, "
                          f".parquet with an audio column, and {sorted(AUDIO_SUFFIXES)} files).")
    replace_dir(tmp, dest)
    return "; ".join(done)
