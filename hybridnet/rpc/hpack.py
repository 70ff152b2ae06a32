"""HPACK (RFC 7541), as much as the plugin's one-call HTTP/2 client needs.

Encoding sends every request header as a literal that the server must not index, so the
server's decoder state never depends on ours. Decoding is complete: the static and dynamic
tables, size updates and Huffman-coded strings, because a conforming server may use any of them.
Header names and values are handled as latin-1 text, which is lossless for any octets.
"""

from __future__ import annotations

STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
)
"""RFC 7541 Appendix A; index 1 is the first entry."""

# RFC 7541 Appendix B: the code length of each symbol 0..255 and EOS (256), one base-36 digit
# each. The code is canonical (codes of one length are consecutive, in symbol order, and shorter
# codes come first), so the lengths alone determine every code.
_CODE_LENGTHS = (
    "dnsssssssoussussssssssusssssssss6aacd68baa8b8666555666666678f6cad67777777777777777777777878"
    "djde6f56565666577666567655677777fbedskmkkmmmnmnnnnnonoomnonnnnlmnmnnomlkmmnnlnmmolmnnllmlnm"
    "nnkmmmnmmnqqkjmnmpqqqrrqopjlqrrqrollqqsrrrkoklmllnmmppooqnqrqqrrrrrsrrrrrqu"
)
EOS = 256
ENTRY_OVERHEAD = 32
"""Octets an entry costs in the dynamic table beyond its name and value (RFC 7541 4.1)."""


class HpackError(Exception):
    """The peer sent a header block that cannot be decoded (a connection error)."""


def _huffman_codes() -> dict[tuple[int, int], int]:
    """(length, code) -> symbol, built from the canonical code lengths."""
    lengths = [int(digit, 36) for digit in _CODE_LENGTHS]
    codes: dict[tuple[int, int], int] = {}
    code, previous = 0, 0
    for symbol in sorted(range(len(lengths)), key=lambda s: (lengths[s], s)):
        code <<= lengths[symbol] - previous
        previous = lengths[symbol]
        codes[(previous, code)] = symbol
        code += 1
    return codes


_HUFFMAN = _huffman_codes()


def huffman_decode(data: bytes) -> bytes:
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            symbol = _HUFFMAN.get((length, code))
            if symbol is None:  # the code is complete: some symbol matches within 30 bits
                continue
            if symbol == EOS:
                raise HpackError("EOS inside a Huffman-coded string")
            out.append(symbol)
            code = length = 0
    # What is left must be padding: fewer than 8 bits, all ones (the start of EOS).
    if length >= 8 or code != (1 << length) - 1:
        raise HpackError("invalid Huffman padding")
    return bytes(out)


def encode_integer(value: int, prefix_bits: int, first_byte_flags: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_string(text: str) -> bytes:
    raw = text.encode("latin-1")
    return encode_integer(len(raw), 7, 0x00) + raw


def encode(headers: list[tuple[str, str]]) -> bytes:
    """A header block: exact static matches indexed, everything else a literal never indexed
    (names from the static table where it has them)."""
    out = bytearray()
    for name, value in headers:
        exact = _STATIC_EXACT.get((name, value))
        if exact is not None:
            out += encode_integer(exact, 7, 0x80)
            continue
        name_index = _STATIC_NAMES.get(name, 0)
        out += encode_integer(name_index, 4, 0x10)
        if not name_index:
            out += _encode_string(name)
        out += _encode_string(value)
    return bytes(out)


_STATIC_EXACT = {entry: index for index, entry in enumerate(STATIC_TABLE, 1)}
_STATIC_NAMES: dict[str, int] = {}
for _index, (_name, _) in enumerate(STATIC_TABLE, 1):
    _STATIC_NAMES.setdefault(_name, _index)


class Decoder:
    """Decodes the header blocks of one connection, in order (they share the dynamic table)."""

    def __init__(self, max_table_size: int = 4096):
        self._limit = max_table_size
        """The most the peer may use: our SETTINGS_HEADER_TABLE_SIZE."""
        self._max_size = max_table_size
        self._size = 0
        self._entries: list[tuple[str, str]] = []
        """Newest first, so dynamic index 62 is entries[0]."""

    @property
    def table(self) -> tuple[list[tuple[str, str]], int]:
        """The dynamic table, newest entry first, and its size in octets (for inspection)."""
        return list(self._entries), self._size

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        reader = _Reader(block)
        while not reader.done():
            first = reader.peek()
            if first & 0x80:  # indexed field
                headers.append(self._lookup(reader.integer(7)))
            elif first & 0x40:  # literal, added to the table
                field = self._literal(reader, 6)
                self._add(field)
                headers.append(field)
            elif first & 0x20:  # table size update, allowed only before the first field
                if headers:
                    raise HpackError("table size update after a header field")
                size = reader.integer(5)
                if size > self._limit:
                    raise HpackError(f"table size update to {size} beyond {self._limit}")
                self._max_size = size
                self._evict(0)
            else:  # literal without indexing / never indexed
                headers.append(self._literal(reader, 4))
        return headers

    def _literal(self, reader: _Reader, prefix_bits: int) -> tuple[str, str]:
        index = reader.integer(prefix_bits)
        name = self._lookup(index)[0] if index else reader.string()
        return name, reader.string()

    def _lookup(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dynamic = index - len(STATIC_TABLE) - 1
        if 0 <= dynamic < len(self._entries):
            return self._entries[dynamic]
        raise HpackError(f"header index {index} is not in the tables")

    def _add(self, field: tuple[str, str]) -> None:
        size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        self._evict(size)
        if size <= self._max_size:  # an entry larger than the table just empties it
            self._entries.insert(0, field)
            self._size += size

    def _evict(self, room: int) -> None:
        while self._entries and self._size + room > self._max_size:
            name, value = self._entries.pop()
            self._size -= len(name) + len(value) + ENTRY_OVERHEAD


class _Reader:
    def __init__(self, data: bytes):
        self._data = data
        self._at = 0

    def done(self) -> bool:
        return self._at >= len(self._data)

    def peek(self) -> int:
        if self._at >= len(self._data):
            raise HpackError("header block ends in the middle of a field")
        return self._data[self._at]

    def _byte(self) -> int:
        if self._at >= len(self._data):
            raise HpackError("header block ends in the middle of a field")
        byte = self._data[self._at]
        self._at += 1
        return byte

    def integer(self, prefix_bits: int) -> int:
        limit = (1 << prefix_bits) - 1
        value = self._byte() & limit
        if value < limit:
            return value
        shift = 0
        while True:
            byte = self._byte()
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
            if shift > 28:  # nothing sane needs more than 2^28
                raise HpackError("header integer too large")

    def string(self) -> str:
        huffman = bool(self.peek() & 0x80)
        length = self.integer(7)
        if self._at + length > len(self._data):
            raise HpackError("header string runs past the block")
        raw = self._data[self._at : self._at + length]
        self._at += length
        return (huffman_decode(raw) if huffman else raw).decode("latin-1")
