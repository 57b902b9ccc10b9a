"""Saving without losing what was there: every write goes to a temporary file beside the
target, renamed over it only once the new file is complete."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat

from .errors import AudioDecodeError

_MAX_NAME = 200  # of the target's name kept in the temporary's, below NAME_MAX (255)


class OutputFile:
    """Where a save writes, and how the result reaches the path.

    A regular file (or a new one) is written to ``.<name>.<random>.part`` in the target's
    directory and renamed over the target by :meth:`commit`: readers see the old file or the
    new one, never a torn one, and a failed or killed save leaves the old file as it was. A
    symbolic link is followed: its target is replaced and the link stays. A device, FIFO or
    socket is written through (it cannot be replaced, and must never be deleted).

    A writable file in a folder that does not let us create the temporary file is written in
    place (not atomically); a read-only file is refused, as an in-place write would be.

    Attributes:
        write_path: The path the encoder opens (the target's, once committed).
        through: True when writing straight into the target (not a regular file, or no
            temporary file possible).
    """

    def __init__(self, path: str, what: str):
        self.path, self.what = path, what
        try:  # through links: /dev/stdout resolves to a pipe that has no path of its own
            self._old = os.stat(path)
        except FileNotFoundError:
            self._old = None
        except OSError as e:
            raise self._error(e) from e
        if self._old is not None and stat.S_ISDIR(self._old.st_mode):
            raise AudioDecodeError(f"{what} failed for '{path}': is a directory")
        self.through = self._old is not None and not stat.S_ISREG(self._old.st_mode)
        self.target = path if self.through else os.path.realpath(path)
        if self._old is not None and not self.through and not os.access(self.target, os.W_OK):
            # a read-only file stays read-only, as when it is opened for writing in place
            raise self._error(PermissionError(13, "Permission denied"))
        self.write_path = self.target if self.through else self._create_temporary()
        self.done = self.through

    def _error(self, e: OSError) -> AudioDecodeError:
        return AudioDecodeError(
            f"{self.what} failed for '{self.path}': cannot open for writing: {e.strerror or e}"
        )

    def _create_temporary(self) -> str:
        folder, name = os.path.split(self.target)
        short = os.fsdecode(os.fsencode(name)[:_MAX_NAME])  # NAME_MAX counts bytes
        for _ in range(100):
            tmp = os.path.join(folder, f".{short}.{secrets.token_hex(4)}.part")
            try:  # mode 0666 through the umask, as a new file gets
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                continue
            except PermissionError as e:
                if self._old is not None:  # a writable file in a folder we cannot write to:
                    self.through = True  # written in place, as before atomic saves
                    return self.target
                raise self._error(e) from e
            except OSError as e:
                raise self._error(e) from e
            os.close(fd)
            return tmp
        raise AudioDecodeError(f"{self.what} failed for '{self.path}': no free temporary name")

    def commit(self) -> None:
        """Puts the finished file at the path (keeping an old file's mode and owner)."""
        if self.done:
            return
        try:
            if self._old is not None:
                os.chmod(self.write_path, stat.S_IMODE(self._old.st_mode))
                if (self._old.st_uid, self._old.st_gid) != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(OSError):  # only root may give files away
                        os.chown(self.write_path, self._old.st_uid, self._old.st_gid)
            os.replace(self.write_path, self.target)
            self.write_path = self.target  # where the open file now is
        except OSError as e:
            self.discard()
            raise AudioDecodeError(
                f"{self.what} failed for '{self.path}': cannot replace the file: {e.strerror or e}"
            ) from e
        self.done = True

    def size(self) -> int | None:
        """Bytes in the file being written (None for a device or FIFO)."""
        return None if self.through else os.path.getsize(self.write_path)

    def truncate(self, size: int | None) -> None:
        """Cuts the file back to `size` bytes: a write that failed half-way leaves no torn
        packet after the last complete write."""
        if size is not None:
            with contextlib.suppress(OSError):
                os.truncate(self.write_path, size)

    def discard(self) -> None:
        """Removes the temporary file of a save that failed; the target is untouched."""
        if not self.done:
            self.done = True
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.write_path)
