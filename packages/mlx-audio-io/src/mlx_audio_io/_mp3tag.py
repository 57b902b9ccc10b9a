"""The end padding in the LAME tag of the MP3s we write.

libav's MP3 muxer takes the padding from the last packet's discard count, which it caps at one
frame plus the decoder delay (1681 at 1152 samples a frame): when the last frame holds none
of the input (a length of 1-47 samples past a frame boundary, 4% of all lengths) the tag
undercounts and every decoder, ffmpeg's own included, returns up to 46 samples too many. We
know the length written, so the tag is corrected (and its CRC recomputed) after the muxer is
done."""

from __future__ import annotations

import os

_HEAD = 1 << 16  # bytes read to find the first frame


def _crc16(data: bytes) -> int:
    """CRC-16/ARC, the LAME tag's checksum of the frame's first 190 bytes."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def fix_padding(head: bytearray, frames: int) -> bool:
    """Corrects the LAME tag's end padding in `head` (the file's first bytes) for a stream of
    `frames` samples per channel; True when something changed."""
    off = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        off = 10 + ((head[6] & 127) << 21 | (head[7] & 127) << 14 | (head[8] & 127) << 7)
        off += (head[9] & 127) + (10 if head[5] & 0x10 else 0)
    if off + 4 > len(head) or head[off] != 0xFF or head[off + 1] & 0xE0 != 0xE0:
        return False
    mpeg1, mono = (head[off + 1] >> 3) & 3 == 3, head[off + 3] >> 6 == 3
    per_frame = 1152 if mpeg1 else 576
    xing = off + 4 + (17 if mono else 32) if mpeg1 else off + 4 + (9 if mono else 17)
    if head[xing : xing + 4] not in (b"Info", b"Xing") or xing + 8 > len(head):
        return False
    flags = int.from_bytes(head[xing + 4 : xing + 8], "big")
    if not flags & 1:
        return False
    count = int.from_bytes(head[xing + 8 : xing + 12], "big")
    lame = xing + 8 + 4 * (flags & 1) + 4 * (flags >> 1 & 1) + 100 * (flags >> 2 & 1)
    lame += 4 * (flags >> 3 & 1)
    if lame + 36 > len(head) or off + 190 > len(head):
        return False
    d = head[lame + 21 : lame + 24]
    delay, padding = d[0] << 4 | d[1] >> 4, (d[1] & 15) << 8 | d[2]
    right = count * per_frame - delay - frames
    if right == padding or not 0 <= right < 4096:
        return False
    head[lame + 21 : lame + 24] = bytes([delay >> 4, (delay & 15) << 4 | right >> 8, right & 255])
    # as libav's muxer: over the frame's first 190 bytes, which for side information shorter
    # than MPEG-1 stereo's takes in the old CRC (the field sits before byte 190)
    head[lame + 34 : lame + 36] = _crc16(bytes(head[off : off + 190])).to_bytes(2, "big")
    return True


def fix_buffer(buf, frames: int) -> None:
    """fix_padding on a writable buffer holding a whole file (memory output)."""
    head = bytearray(buf[:_HEAD])
    if fix_padding(head, frames):
        buf[: len(head)] = head


def fix_file(path: str, frames: int) -> None:
    """fix_padding on a file written in place (a regular file we just wrote)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        head = bytearray(os.pread(fd, _HEAD, 0))
        if fix_padding(head, frames):
            os.pwrite(fd, bytes(head), 0)
    finally:
        os.close(fd)
