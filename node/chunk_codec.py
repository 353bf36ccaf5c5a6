"""How a chunk's bytes are kept on disk: raw, or one zstd frame when that saves enough.

The node compresses, not the gateway: every writer (the gateway's streaming upload, a
repair's FetchChunkFrom, direct client writes) gets it, the gateway's CPU (the cluster's
bottleneck) pays nothing, and the wire stays plaintext (chunk ids, sizes and ranges all
speak of the plaintext). Already-compressed data (photos, video, archives) must cost next
to nothing, so a chunk is first judged by a small sample compressed at the fastest level;
only when the sample shrinks by at least ``MIN_SAVING`` is the whole chunk compressed, and
the frame is kept only when it saves ``MIN_SAVING`` of the whole chunk too.

Decoding treats the file as hostile (a corrupt disk, or someone who can write the store):
the frame must state its plaintext size, that size must fit a chunk (``max_plain_bytes``),
the window must fit too, and no dictionary is accepted; only then is one buffer of the
stated size allocated. The caller still proves the plaintext against its SHA-256.
"""

from __future__ import annotations

import threading

import zstandard

MiB = 1024 * 1024
# The largest plaintext a node ever holds: a chunk travels in one gRPC message, which the
# node caps at 64 MiB (node.service.MAX_MESSAGE_BYTES), so no valid chunk is larger.
MAX_CHUNK_BYTES = 64 * MiB
MIN_SAVING = 0.10  # keep a compressed form only when it is at least a tenth smaller
SAMPLE_BYTES = 64 * 1024  # judged first, spread over the chunk
SAMPLE_PIECES = 4
SAMPLE_LEVEL = 1  # the fastest level: only a verdict is wanted from the sample
# The fastest level: measured on source code, level 1 keeps 24 % of the bytes at ~280 MB/s
# of one core, level 3 (zstd's own default) 22 % at ~180 MB/s; the nodes' CPU is shared
# with the gateway on small set-ups, so the default buys speed (CHUNK_COMPRESSION_LEVEL).
DEFAULT_LEVEL = 1
MAX_LEVEL = 19  # beyond this zstd's "ultra" levels need windows no chunk has use for
# Contexts up to this level are kept per thread (about 1.4 MB at level 1, 3.7 MB at 3);
# higher levels take 15-70 MB each, so those are made per chunk and freed right after.
CACHED_LEVEL_MAX = 3
# zstd frame header: at most 18 bytes (magic 4, descriptor 1, window 1, dict id 4, size 8)
FRAME_HEADER_MAX = 18
ZSTD_MAGIC = zstandard.FRAME_HEADER  # b"\x28\xb5\x2f\xfd"


class FrameRefused(ValueError):
    """The stored bytes are not a frame this node wrote (corrupt, hostile or oversized)."""


def _window_limit(max_plain_bytes: int) -> int:
    """The largest window a frame of a chunk can need: the chunk size, as a power of two."""
    limit = 1 << 10  # zstd's smallest window
    while limit < max_plain_bytes:
        limit <<= 1
    return limit


class ChunkCodec:
    """Chooses and applies a chunk's on-disk form. Thread-safe (contexts are per thread)."""

    def __init__(self, enabled: bool = True, level: int = DEFAULT_LEVEL,
                 max_plain_bytes: int = MAX_CHUNK_BYTES) -> None:
        if not 1 <= level <= MAX_LEVEL:
            raise ValueError(f"compression level must be 1..{MAX_LEVEL}, got {level}")
        if max_plain_bytes <= 0:
            raise ValueError("max_plain_bytes must be positive")
        self.enabled = enabled
        self.level = level
        self.max_plain_bytes = max_plain_bytes
        self._max_window = _window_limit(max_plain_bytes)
        self._local = threading.local()

    @property
    def name(self) -> str:
        """How the settings are spoken of in the banner and logs."""
        return f"zstd level {self.level}" if self.enabled else "off"

    # -- contexts (zstd contexts are not thread-safe; reusing one per thread saves setup) --

    def _compressor(self, level: int) -> zstandard.ZstdCompressor:
        cache: dict[int, zstandard.ZstdCompressor] = self._local.__dict__.setdefault("c", {})
        ctx = cache.get(level)
        if ctx is None:
            # The plaintext size goes in the header (decoding relies on it); no zstd
            # checksum: every read already proves the plaintext against its SHA-256.
            ctx = zstandard.ZstdCompressor(level=level, write_content_size=True,
                                           write_checksum=False)
            if level <= CACHED_LEVEL_MAX:
                cache[level] = ctx
        return ctx

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        ctx = getattr(self._local, "d", None)
        if ctx is None:
            ctx = self._local.d = zstandard.ZstdDecompressor(max_window_size=self._max_window)
        return ctx

    # -- encoding -------------------------------------------------------------------------

    def worth_trying(self, data: bytes) -> bool:
        """A cheap verdict from a sample: does this chunk look like it would shrink?

        Pieces from the start, middle and end (not only the start: a chunk of a tar or a
        document with an embedded image is not uniform), compressed at the fastest level.
        """
        size = len(data)
        if size < 64:
            return False  # a frame's own overhead eats any saving
        if size <= SAMPLE_BYTES:
            sample = data
        else:
            piece = SAMPLE_BYTES // SAMPLE_PIECES
            step = (size - piece) // (SAMPLE_PIECES - 1)
            view = memoryview(data)
            sample = b"".join(view[i * step:i * step + piece] for i in range(SAMPLE_PIECES))
        squeezed = self._compressor(SAMPLE_LEVEL).compress(sample)
        return len(squeezed) <= (1.0 - MIN_SAVING) * len(sample)

    def encode(self, data: bytes) -> bytes | None:
        """The zstd frame to store instead of ``data``, or None to store it raw.

        None when compression is off, when the sample says it would not pay, or when the
        whole chunk does not shrink by at least ``MIN_SAVING``.
        """
        if not self.enabled or len(data) > self.max_plain_bytes or not self.worth_trying(data):
            return None
        frame = self._compressor(self.level).compress(data)
        if len(frame) > (1.0 - MIN_SAVING) * len(data):
            return None
        return frame

    # -- decoding -------------------------------------------------------------------------

    def plain_size(self, header: bytes) -> int:
        """The plaintext size a frame header states; FrameRefused if unusable.

        ``header`` needs only the first ``FRAME_HEADER_MAX`` bytes of the file.
        """
        if header[:4] != ZSTD_MAGIC:
            raise FrameRefused("not a zstd frame")
        try:
            params = zstandard.get_frame_parameters(header)
        except zstandard.ZstdError as exc:
            raise FrameRefused(f"unreadable frame header: {exc}") from None
        size = params.content_size
        if size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
            raise FrameRefused("frame does not state its plaintext size")
        if size > self.max_plain_bytes:
            raise FrameRefused(f"frame claims {size} bytes, more than a chunk "
                               f"({self.max_plain_bytes})")
        if params.window_size > self._max_window:
            raise FrameRefused(f"frame wants a {params.window_size}-byte window")
        if params.dict_id:
            raise FrameRefused("frame needs a dictionary")
        return size

    def decode(self, frame: bytes) -> bytes:
        """The plaintext of a stored frame; FrameRefused when it is not one we would write.

        Memory stays bounded by ``max_plain_bytes``: the stated size is checked before the
        one output buffer is allocated, and output past it is an error, not a realloc.
        """
        size = self.plain_size(frame[:FRAME_HEADER_MAX])
        try:
            plain = self._decompressor().decompress(frame, max_output_size=size)
        except zstandard.ZstdError as exc:
            raise FrameRefused(f"frame does not decode: {exc}") from None
        if len(plain) != size:
            raise FrameRefused(f"frame decoded to {len(plain)} bytes, header said {size}")
        return plain
