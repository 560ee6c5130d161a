"""A memory-backed file, because SEAL objects in ``tenseal.sealapi`` save and load only by path.

The seeded form of a symmetric ciphertext (half the bytes) exists only as SEAL's
``Serializable`` object, whose one method is ``save(path)``; secret keys and public keys load
the same way. A file on disk would cost I/O and, for keys, leave secrets on a disk. On Linux
``os.memfd_create`` gives an anonymous in-memory file and ``/proc/self/fd/N`` a path SEAL can
open; elsewhere we fall back to a temporary file in ``/dev/shm`` (memory) or the temp directory.
SEAL reopens the path on every call, truncating it when it saves, so one file serves any number
of objects: ciphertexts go through one file per thread (:meth:`MemoryFile.shared`, so a
simulation of a thousand clients does not hold a thousand descriptors), while key material
goes through a private file that is wiped and closed right after.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable

__all__ = ["MemoryFile"]


_PER_THREAD = threading.local()


class MemoryFile:
    """One reusable in-memory file: ``dump(obj.save)`` gives bytes, ``feed(data, obj.load)`` loads."""

    @classmethod
    def shared(cls) -> MemoryFile:
        """This thread's file for public material (ciphertexts, parameters)."""
        file = getattr(_PER_THREAD, "file", None)
        if file is None:
            file = _PER_THREAD.file = cls()
        return file

    def __init__(self) -> None:
        self._tmp = None
        memfd = getattr(os, "memfd_create", None)
        if memfd is not None and os.path.isdir("/proc/self/fd"):
            self._fd = memfd("privagg-he", getattr(os, "MFD_CLOEXEC", 0))
            self.path = f"/proc/self/fd/{self._fd}"
        else:  # pragma: no cover - non-Linux fallback
            directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self._tmp = tempfile.NamedTemporaryFile(prefix="privagg-he-", dir=directory)
            self._fd = self._tmp.fileno()
            self.path = self._tmp.name

    def dump(self, save: Callable[[str], None]) -> bytes:
        """Let ``save(path)`` write, and return what it wrote."""
        save(self.path)
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0)

    def feed(self, data: bytes, load: Callable[[str], None]) -> None:
        """Put ``data`` in the file and let ``load(path)`` read it."""
        os.pwrite(self._fd, data, 0)  # overwrite in place, then cut: no page freed and refaulted per call
        os.ftruncate(self._fd, len(data))
        load(self.path)

    def wipe(self) -> None:
        os.ftruncate(self._fd, 0)

    def close(self) -> None:
        if self._fd >= 0:
            self.wipe()
            if self._tmp is not None:  # pragma: no cover
                self._tmp.close()
            else:
                os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:  # pragma: no cover - interpreter shutdown
            pass

    def __reduce__(self) -> object:
        raise TypeError("a MemoryFile is a process-local file descriptor and cannot be pickled")

    def __repr__(self) -> str:
        return "MemoryFile()"
