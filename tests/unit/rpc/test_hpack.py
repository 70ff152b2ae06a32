"""HPACK against RFC 7541's own examples (Appendix C), round trips and malformed blocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridnet.rpc import hpack


def dehex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


@pytest.mark.parametrize(
    ("value", "prefix", "encoded"),
    [(10, 5, "0a"), (1337, 5, "1f9a0a"), (42, 8, "2a")],  # RFC 7541 C.1
)
def test_integer_representation(value: int, prefix: int, encoded: str) -> None:
    assert hpack.encode_integer(value, prefix, 0).hex() == encoded


def test_requests_with_huffman_share_one_dynamic_table() -> None:
    """RFC 7541 C.4: three requests on one connection, Huffman-coded literals."""
    decoder = hpack.Decoder()
    first = decoder.decode(dehex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
    assert first == [(":method", "GET"), (":scheme", "http"), (":path", "/"),
                     (":authority", "www.example.com")]  # fmt: skip
    assert decoder.table == ([(":authority", "www.example.com")], 57)
    second = decoder.decode(dehex("8286 84be 5886 a8eb 1064 9cbf"))
    assert second[-1] == ("cache-control", "no-cache") and second[3][1] == "www.example.com"
    assert decoder.table[1] == 110
    third = decoder.decode(dehex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"))
    assert third == [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
                     (":authority", "www.example.com"), ("custom-key", "custom-value")]  # fmt: skip
    assert decoder.table[1] == 164


def test_responses_evict_from_a_small_table() -> None:
    """RFC 7541 C.6: a 256-octet table, Huffman literals, entries evicted oldest first."""
    decoder = hpack.Decoder(max_table_size=256)
    date = "Mon, 21 Oct 2013 20:13:21 GMT"
    location = ("location", "https://www.example.com")
    first = decoder.decode(
        dehex("""
        4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
        2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3""")
    )
    assert first == [(":status", "302"), ("cache-control", "private"), ("date", date), location]
    assert decoder.table[1] == 222
    second = decoder.decode(dehex("4883 640e ffc1 c0bf"))
    assert second == [(":status", "307"), ("cache-control", "private"), ("date", date), location]
    assert decoder.table == (
        [(":status", "307"), location, ("date", date), ("cache-control", "private")],
        222,
    )
    third = decoder.decode(
        dehex("""
        88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
        77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
        9587 3160 65c0 03ed 4ee5 b106 3d50 07""")
    )
    cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
    assert third[-2:] == [("content-encoding", "gzip"), ("set-cookie", cookie)]
    assert [name for name, _ in decoder.table[0]] == ["set-cookie", "content-encoding", "date"]
    assert decoder.table[1] == 215


def test_table_size_update_evicts_and_is_bounded() -> None:
    decoder = hpack.Decoder()
    decoder.decode(dehex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))
    decoder.decode(bytes([0x20]))  # size update to 0: the table empties
    assert decoder.table == ([], 0)
    with pytest.raises(hpack.HpackError, match="beyond"):
        decoder.decode(hpack.encode_integer(8192, 5, 0x20))


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)


@given(st.lists(st.tuples(header_text, header_text), max_size=12))
def test_what_we_encode_decodes_the_same(headers: list[tuple[str, str]]) -> None:
    decoder = hpack.Decoder()
    assert decoder.decode(hpack.encode(headers)) == headers
    assert decoder.table == ([], 0)  # never indexed: the peer's table is untouched


def test_known_headers_use_the_static_table() -> None:
    block = hpack.encode([(":method", "POST"), (":scheme", "http"), ("te", "trailers")])
    assert block[:2] == bytes([0x83, 0x86])  # indexed: static entries 3 and 6


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("be", "not in the tables"),  # dynamic index 62 of an empty table
        ("80", "not in the tables"),  # index 0
        ("0f", "middle of a field"),  # integer continues past the end
        ("0085f2b24a84", "runs past"),  # string longer than the block
        ("0084ffffffff", "EOS"),  # a Huffman name of 32 one-bits: EOS (30 ones) inside it
        ("40", "middle of a field"),  # a literal with its name string missing
        ("0f01", "middle of a field"),  # name index 16, then no value at all
        ("8220", "size update after"),  # table size updates come first in a block
    ],
)
def test_malformed_blocks_are_refused(block: str, problem: str) -> None:
    with pytest.raises(hpack.HpackError, match=problem):
        hpack.Decoder().decode(bytes.fromhex(block))


def test_huffman_padding_must_be_ones_and_short() -> None:
    assert hpack.huffman_decode(bytes([0x1F])) == b"a"  # 00011 + 111 padding
    with pytest.raises(hpack.HpackError, match="padding"):
        hpack.huffman_decode(bytes([0x18]))  # 00011 + 000: padding not all ones
    with pytest.raises(hpack.HpackError, match="padding"):
        hpack.huffman_decode(bytes([0x1F, 0xFF]))  # eight more padding bits
