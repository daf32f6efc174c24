"""Frames on the wire: ULEB128(len) ‖ payload ‖ zero padding to 4 bytes.

Sans-io: bytes in, bytes out, no reactor.  See PROTOCOL.md section 2.
"""

from __future__ import annotations

from smarkets_twisted.errors import DecodeError, FrameTooLarge

#: Default cap on one payload.  The protocol sets none; the largest messages
#: (a market_quotes snapshot of a deep market) stay well under this.
DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024

#: A ULEB128 of a 64-bit length takes at most 10 bytes.
MAX_HEADER_SIZE = 10

MIN_FRAME_SIZE = 4


def encode_uleb128(value: int) -> bytes:
    """Encode a non-negative integer as ULEB128 (300 → ``ac 02``)."""
    if value < 0:
        raise ValueError("ULEB128 encodes non-negative integers only")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


#: The header of each payload length that needs one byte and no padding.
_ONE_BYTE_HEADERS = [bytes((length,)) for length in range(0x80)]


def encode_frame(payload: bytes) -> bytes:
    """Frame one serialized payload for the wire."""
    size = len(payload)
    if MIN_FRAME_SIZE - 1 <= size < 0x80:
        # Most payloads: what the general case below gives, without its loop.
        return _ONE_BYTE_HEADERS[size] + payload
    header = encode_uleb128(size)
    padding = MIN_FRAME_SIZE - len(header) - len(payload)
    if padding > 0:
        return header + payload + b"\x00" * padding
    return header + payload


class Deframer:
    """Splits a byte stream into payloads, whatever the chunking.

    Work is linear in the bytes fed.  Each call walks the bytes it has from
    an offset, slicing out every complete payload (one copy per payload) and
    keeping the incomplete tail.  A tail is joined with what follows only
    once enough has arrived to complete its frame, so a large frame arriving
    in many small chunks is copied once, not once per chunk.  An announced
    length over ``max_frame_size`` fails as soon as its header is read,
    before any of the body is buffered.  After an error the deframer stays
    failed: the stream can no longer be trusted, but the good frames before
    the bad header are not lost (see `_fail`).
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._max_frame_size = max_frame_size
        #: Lengths that take the short path: a one-byte header, no padding, under the cap.
        self._short = min(0x80, max_frame_size + 1)
        #: The incomplete frame's bytes, as they came, and how many they are.
        self._held: list[bytes] = []
        self._held_size = 0
        #: Bytes that complete the held frame (0 while its header is incomplete).
        self._wanted = 0
        #: Padding bytes still to come after the last payload.
        self._skip = 0
        self._error: DecodeError | None = None

    @property
    def max_frame_size(self) -> int:
        """The largest payload accepted, fixed when the deframer is made."""
        return self._max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held, e.g. when the connection drops."""
        return self._held_size

    def feed(self, data: bytes) -> list[bytes]:
        """Take more stream bytes; return the payloads now complete, in order."""
        if self._error is not None:
            raise self._error
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        held = self._held
        if held:
            held.append(data)
            self._held_size += len(data)
            if self._held_size < self._wanted:
                return []
            data = b"".join(held)
            held.clear()
        frames: list[bytes] = []
        append = frames.append
        short = self._short
        end = len(data)
        pos = 0
        while pos < end:
            # The common case: a one-byte header, no padding, and a frame that
            # starts far enough from the end to be whole.  The general path
            # below does the same for these; this loop only does less per frame.
            limit = end - short
            while pos < limit:
                length = data[pos]
                if not 2 < length < short:
                    break
                start = pos + 1
                pos = start + length
                append(data[start:pos])
            if pos >= end:
                break
            # Read the ULEB128 header.
            length = 0
            shift = 0
            header_end = pos
            while True:
                if header_end == end:
                    self._hold(data, pos, 0)
                    return frames
                byte = data[header_end]
                header_end += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if header_end - pos >= MAX_HEADER_SIZE:
                    return self._fail(DecodeError("frame header longer than 10 bytes"), frames)
            if length > self._max_frame_size:
                return self._fail(FrameTooLarge(length, self._max_frame_size), frames)
            body_end = header_end + length
            if body_end > end:
                self._hold(data, pos, body_end - pos)
                return frames
            append(data[header_end:body_end])
            padding = MIN_FRAME_SIZE - (header_end - pos) - length
            pos = body_end
            if padding > 0:
                available = min(padding, end - pos)
                pos += available
                self._skip = padding - available
        self._held_size = 0
        return frames

    def _hold(self, data: bytes, pos: int, wanted: int) -> None:
        """Keep the incomplete frame starting at ``pos`` until ``wanted`` bytes of it are here."""
        tail = data[pos:]
        self._held.append(tail)
        self._held_size = len(tail)
        self._wanted = wanted

    @property
    def error(self) -> DecodeError | None:
        """The error that stopped this deframer, once it has failed."""
        return self._error

    def _fail(self, error: DecodeError, frames: list[bytes]) -> list[bytes]:
        """Fail for good; good frames read before the bad header are still returned.

        With such frames the caller gets them first and finds the failure in
        `error` (and the next `feed` raises it); with none, it is raised now.
        """
        self._error = error
        self._held.clear()
        self._held_size = 0
        if frames:
            return frames
        raise error
