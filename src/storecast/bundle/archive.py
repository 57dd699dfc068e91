"""Deterministic tar writing and safe tar reading (standard library only).

Writing: members sorted by name, regular files only, mtime 0, uid/gid 0, no user or
group names, mode 0644, USTAR format, no compression; the bytes depend on member names
and contents alone.

Reading: every header is checked before any content is read or anything is written.
A member is refused when its name is absolute, contains ``..`` or a backslash, or is
not a plain file (links, devices, fifos, directories); when it repeats a name, is larger
than ``Limits.member_bytes``, or the members add up to more than ``Limits.total_bytes``.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from storecast.common.errors import DataError
from storecast.common.files import atomic_write_bytes


class BundleError(DataError):
    """A bundle is malformed, unsafe, or does not match its metadata."""


@dataclass(frozen=True)
class Limits:
    """What a bundle may hold."""

    member_bytes: int = 256 * 1024 * 1024  # bytes, per member
    total_bytes: int = 512 * 1024 * 1024  # bytes, all members together
    members: int = 16  # count


_TAR_OVERHEAD = 64 * 1024  # bytes of headers and padding allowed beyond the member limit


def write_tar(members: Mapping[str, bytes], out: Path) -> Path:
    """Write ``members`` as a deterministic tar at ``out`` (atomically)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            _check_name(name)
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    atomic_write_bytes(out, buf.getvalue())
    return out


def _check_name(name: str) -> None:
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or ".." in path.parts
        or name != str(path)
    ):
        raise BundleError(f"unsafe member name {name!r}")


def read_members(
    source: Path | bytes, limits: Limits | None = None, *, label: str | None = None
) -> dict[str, bytes]:
    """Every member of a bundle tar, after all headers passed the safety checks.

    ``label`` names the bundle in error messages (default: its path, or "bundle").
    """
    limits = limits or Limits()
    if isinstance(source, bytes):
        raw, label = source, label or "bundle"
    else:
        label = label or str(source)
        try:
            size = Path(source).stat().st_size
            if size > limits.total_bytes + _TAR_OVERHEAD:
                raise BundleError(
                    f"{label}: {size} bytes, over the {limits.total_bytes}-byte limit"
                )
            raw = Path(source).read_bytes()
        except FileNotFoundError:
            raise BundleError(f"{label}: no such file") from None
        except IsADirectoryError:
            raise BundleError(f"{label}: is a directory, not a bundle") from None
    try:
        tar = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{label}: not a tar archive ({exc})") from exc
    with tar:
        try:
            infos = tar.getmembers()
        except (tarfile.TarError, OSError) as exc:
            raise BundleError(f"{label}: corrupt tar archive ({exc})") from exc
        if len(infos) > limits.members:
            raise BundleError(f"{label}: {len(infos)} members, at most {limits.members} allowed")
        seen: set[str] = set()
        total = 0
        for info in infos:
            try:
                _check_name(info.name)
            except BundleError as exc:
                raise BundleError(f"{label}: {exc}") from None
            if not info.isreg():
                kind = "link" if info.issym() or info.islnk() else "non-regular file"
                raise BundleError(f"{label}: member {info.name!r} is a {kind}")
            if info.name in seen:
                raise BundleError(f"{label}: member {info.name!r} appears twice")
            seen.add(info.name)
            if info.size > limits.member_bytes:
                raise BundleError(
                    f"{label}: member {info.name!r} is {info.size} bytes, "
                    f"over the {limits.member_bytes}-byte limit"
                )
            total += info.size
            if total > limits.total_bytes:
                raise BundleError(f"{label}: members exceed {limits.total_bytes} bytes")
        out: dict[str, bytes] = {}
        for info in infos:
            fh = tar.extractfile(info)
            if fh is None:  # pragma: no cover - regular files always have content
                raise BundleError(f"{label}: member {info.name!r} has no content")
            data = fh.read(info.size + 1)
            if len(data) != info.size:
                raise BundleError(f"{label}: member {info.name!r} is truncated")
            out[info.name] = data
        return out
