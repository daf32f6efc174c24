"""Framing (PROTOCOL.md section 2): ULEB128 headers, padding, the Deframer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from smarkets_twisted.errors import DecodeError, FrameTooLarge, SmarketsError
from smarkets_twisted.framing import DEFAULT_MAX_FRAME_SIZE, Deframer, encode_frame, encode_uleb128


class ULEB128Tests(SynchronousTestCase):
    def test_examples(self) -> None:
        self.assertEqual(encode_uleb128(0), b"\x00")
        self.assertEqual(encode_uleb128(1), b"\x01")
        self.assertEqual(encode_uleb128(127), b"\x7f")
        self.assertEqual(encode_uleb128(128), b"\x80\x01")
        self.assertEqual(encode_uleb128(300), b"\xac\x02")
        self.assertEqual(encode_uleb128(16383), b"\xff\x7f")
        self.assertEqual(encode_uleb128(16384), b"\x80\x80\x01")
        self.assertEqual(encode_uleb128(2**64 - 1), b"\xff" * 9 + b"\x01")

    def test_negative_is_refused(self) -> None:
        self.assertRaises(ValueError, encode_uleb128, -1)


class EncodeFrameTests(SynchronousTestCase):
    def test_empty_payload_is_padded_to_four_bytes(self) -> None:
        self.assertEqual(encode_frame(b""), b"\x00\x00\x00\x00")

    def test_one_byte_payload(self) -> None:
        self.assertEqual(encode_frame(b"\xaa"), b"\x01\xaa\x00\x00")

    def test_two_byte_payload(self) -> None:
        self.assertEqual(encode_frame(b"\xaa\xbb"), b"\x02\xaa\xbb\x00")

    def test_three_byte_payload_needs_no_padding(self) -> None:
        self.assertEqual(encode_frame(b"abc"), b"\x03abc")

    def test_127_bytes_one_byte_header(self) -> None:
        payload = bytes(range(127))
        self.assertEqual(encode_frame(payload), b"\x7f" + payload)

    def test_128_bytes_two_byte_header(self) -> None:
        payload = b"x" * 128
        self.assertEqual(encode_frame(payload), b"\x80\x01" + payload)

    def test_16384_bytes_three_byte_header(self) -> None:
        payload = b"y" * 16384
        self.assertEqual(encode_frame(payload), b"\x80\x80\x01" + payload)


payloads_strategy = st.lists(st.binary(max_size=300), max_size=12)


class SliceCountingBytes(bytes):
    """Bytes that record the length of every slice taken of them."""

    copied: list[int]

    def __getitem__(self, key):  # type: ignore[no-untyped-def, override]
        result = super().__getitem__(key)
        if isinstance(key, slice):
            self.copied.append(len(result))
        return result


class DeframerTests(SynchronousTestCase):
    def test_default_limit(self) -> None:
        self.assertEqual(Deframer().max_frame_size, DEFAULT_MAX_FRAME_SIZE)

    def test_short_payloads_with_padding(self) -> None:
        deframer = Deframer()
        stream = b"".join(encode_frame(p) for p in [b"", b"a", b"ab", b"abc", b""])
        self.assertEqual(deframer.feed(stream), [b"", b"a", b"ab", b"abc", b""])
        self.assertEqual(deframer.buffered, 0)

    def test_byte_at_a_time(self) -> None:
        payloads = [b"", b"a", b"ab", b"abc", b"z" * 127, b"q" * 128, b"w" * 16384, b"e" * 3]
        stream = b"".join(encode_frame(p) for p in payloads)
        deframer = Deframer()
        out: list[bytes] = []
        for i in range(len(stream)):
            out.extend(deframer.feed(stream[i : i + 1]))
        self.assertEqual(out, payloads)
        self.assertEqual(deframer.buffered, 0)

    def test_padding_split_from_its_payload(self) -> None:
        # The padding of a 1-byte payload arrives with the next frame's start.
        deframer = Deframer()
        self.assertEqual(deframer.feed(b"\x01\xaa"), [b"\xaa"])
        self.assertEqual(deframer.feed(b"\x00"), [])
        self.assertEqual(deframer.feed(b"\x00\x03ab"), [])
        self.assertEqual(deframer.feed(b"c"), [b"abc"])

    def test_coalesced_frames(self) -> None:
        payloads = [b"first", b"", b"second" * 50, b"x"]
        stream = b"".join(encode_frame(p) for p in payloads)
        self.assertEqual(Deframer().feed(stream), payloads)

    def test_empty_feed(self) -> None:
        self.assertEqual(Deframer().feed(b""), [])

    @settings(max_examples=200, deadline=None)
    @given(payloads=payloads_strategy, data=st.data())
    def test_random_splits(self, payloads: list[bytes], data: st.DataObject) -> None:
        stream = b"".join(encode_frame(p) for p in payloads)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
        deframer = Deframer()
        out: list[bytes] = []
        start = 0
        for cut in [*cuts, len(stream)]:
            out.extend(deframer.feed(stream[start:cut]))
            start = cut
        self.assertEqual(out, payloads)
        self.assertEqual(deframer.buffered, 0)

    def test_buffered_reports_a_half_written_frame(self) -> None:
        deframer = Deframer()
        frame = encode_frame(b"p" * 200)
        self.assertEqual(deframer.feed(encode_frame(b"done") + frame[:50]), [b"done"])
        self.assertEqual(deframer.buffered, 50)
        self.assertEqual(deframer.feed(frame[50:]), [b"p" * 200])
        self.assertEqual(deframer.buffered, 0)

    def test_frame_exactly_at_the_limit(self) -> None:
        deframer = Deframer(max_frame_size=300)
        self.assertEqual(deframer.feed(encode_frame(b"m" * 300)), [b"m" * 300])

    def test_one_byte_over_the_limit_fails_on_the_header(self) -> None:
        deframer = Deframer(max_frame_size=300)
        header = encode_uleb128(301)
        error = self.assertRaises(FrameTooLarge, deframer.feed, header)
        self.assertEqual((error.announced, error.limit), (301, 300))
        self.assertEqual(deframer.buffered, 0)

    def test_huge_announced_length_is_not_allocated(self) -> None:
        deframer = Deframer()
        self.assertRaises(FrameTooLarge, deframer.feed, encode_uleb128(2**64 - 1))

    def test_oversized_frame_after_good_frames(self) -> None:
        # The good frame is not lost: it is returned, the failure is in `error`,
        # and the next feed raises it.
        deframer = Deframer(max_frame_size=10)
        self.assertEqual(deframer.feed(encode_frame(b"ok") + encode_uleb128(11)), [b"ok"])
        self.assertIsInstance(deframer.error, FrameTooLarge)
        self.assertEqual(deframer.buffered, 0)
        self.assertRaises(FrameTooLarge, deframer.feed, b"")

    def test_header_over_ten_bytes(self) -> None:
        deframer = Deframer(max_frame_size=2**80)
        self.assertRaises(DecodeError, deframer.feed, b"\x80" * 10 + b"\x01")

    def test_header_over_ten_bytes_fed_one_at_a_time(self) -> None:
        deframer = Deframer(max_frame_size=2**80)
        for _ in range(9):
            self.assertEqual(deframer.feed(b"\x80"), [])
        self.assertRaises(DecodeError, deframer.feed, b"\x80")

    def test_ten_byte_header_is_accepted(self) -> None:
        # A non-minimal but ten-byte ULEB128 for 3.
        deframer = Deframer()
        self.assertEqual(deframer.feed(b"\x83" + b"\x80" * 8 + b"\x00" + b"abc"), [b"abc"])

    def test_stays_failed_after_an_error(self) -> None:
        deframer = Deframer(max_frame_size=10)
        first = self.assertRaises(FrameTooLarge, deframer.feed, encode_uleb128(11))
        second = self.assertRaises(FrameTooLarge, deframer.feed, encode_frame(b"fine"))
        self.assertIs(second, first)
        self.assertRaises(DecodeError, deframer.feed, b"")

    def test_errors_are_smarkets_errors(self) -> None:
        self.assertTrue(issubclass(FrameTooLarge, DecodeError))
        self.assertTrue(issubclass(DecodeError, SmarketsError))

    def test_each_payload_is_copied_once(self) -> None:
        """The bytes sliced out of what is fed are the payload bytes, nothing more."""
        payloads = [b"x" * 100, b"y" * 3, b"z" * 300] * 200
        stream = SliceCountingBytes(b"".join(encode_frame(p) for p in payloads))
        stream.copied = []
        self.assertEqual(Deframer().feed(stream), payloads)
        self.assertEqual(sum(stream.copied), sum(map(len, payloads)))

    def test_large_frame_in_small_chunks_is_joined_once(self) -> None:
        """While a large frame arrives its chunks are held as they came, not joined
        again at each one (which would make buffering quadratic)."""
        payload = bytes(range(256)) * 400
        frame = encode_frame(b"first") + encode_frame(payload)
        chunks = [frame[i : i + 1400] for i in range(0, len(frame), 1400)]
        deframer = Deframer()
        self.assertEqual(deframer.feed(chunks[0]), [b"first"])
        for count, chunk in enumerate(chunks[1:-1], start=2):
            self.assertEqual(deframer.feed(chunk), [])
            self.assertEqual(len(deframer._held), count)
        self.assertEqual(deframer.buffered, len(frame) - len(chunks[-1]) - len(encode_frame(b"first")))
        self.assertEqual(deframer.feed(chunks[-1]), [payload])
        self.assertEqual((deframer.buffered, deframer._held), (0, []))
