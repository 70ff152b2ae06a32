"""Result conversion (hybridnet.cni.results): daemon reply -> each version's JSON -> back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridnet.cni import results, versions
from hybridnet.cni.errors import CniError
from tests.unit.cni.fake_daemon import standard_reply

NETNS = "/run/netns/pod1"


def without_mtu(result: results.Result) -> results.Result:
    return result._replace(interfaces=tuple(i._replace(mtu=0) for i in result.interfaces))


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_round_trip_through_every_version(version: str) -> None:
    ours = results.from_add_reply(standard_reply(NETNS))
    document = results.to_json(ours, version)
    assert document["cniVersion"] == version
    assert all(("version" in ip) == versions.is_legacy(version) for ip in document["ips"])
    assert ("mtu" in document["interfaces"][0]) == (version == "1.1.0")
    back = results.parse_result(document, version)
    assert back == (ours if version == "1.1.0" else without_mtu(ours))
    # ... and the daemon shape, as CHECK sends it, carries the same content.
    assert results.from_add_reply(results.to_add_reply(back)) == back


@pytest.mark.parametrize("source", versions.SUPPORTED)
@pytest.mark.parametrize("target", versions.SUPPORTED)
def test_a_prev_result_in_one_version_answers_in_another(source: str, target: str) -> None:
    ours = without_mtu(results.from_add_reply(standard_reply(NETNS)))
    parsed = results.parse_result(results.to_json(ours, source), source)
    assert results.parse_result(results.to_json(parsed, target), target) == parsed


def test_legacy_ip_entries_need_a_matching_version() -> None:
    entry = {"address": "198.19.0.5/24", "interface": 0}
    document: dict[str, Any] = {"interfaces": [{"name": "eth0"}], "ips": [entry]}
    for version, problem in [("0.4.0", "'version' is required"), ("0.3.1", "does not match")]:
        if problem == "does not match":
            entry["version"] = "6"
        with pytest.raises(CniError) as error:
            results.parse_result(document, version)
        assert error.value.code == 7 and problem in error.value.details
    assert results.parse_result(document, "1.0.0").ips[0].address == "198.19.0.5/24"


@pytest.mark.parametrize(
    "document",
    [
        {"interfaces": {}},
        {"interfaces": [{"mac": "x"}]},
        {"interfaces": [{"name": "eth0", "mtu": -1}]},
        {"ips": [{"address": "198.19.0.5"}]},
        {"ips": [{"address": "198.19.0.5/24", "interface": 0}]},  # no interfaces
        {"ips": [{"address": "198.19.0.5/24", "gateway": "gw"}]},
        {"routes": [{"gw": "1.2.3.4"}]},
        {"routes": [{"dst": "nope"}]},
        {"dns": []},
    ],
)
def test_bad_prev_results(document: dict[str, Any]) -> None:
    with pytest.raises(CniError) as error:
        results.parse_result(document, "1.0.0")
    assert error.value.code == 7


def test_chain_after_and_own_part() -> None:
    previous = results.Result(
        interfaces=(results.Interface("net0", sandbox=NETNS), results.Interface("host0")),
        ips=(results.IPConfig("10.0.0.2/24", interface=0),),
    )
    ours = results.from_add_reply(standard_reply(NETNS))
    chained = results.chain_after(previous, ours)
    assert [ip.interface for ip in chained.ips] == [0, 2, 2]
    assert results.own_part(chained, "eth0", NETNS) == ours
    assert results.own_part(chained, "eth0", "/run/netns/other").interfaces == ()


addresses = st.one_of(
    st.ip_addresses(v=4).map(lambda a: f"{a}/24"), st.ip_addresses(v=6).map(lambda a: f"{a}/64")
)


@given(
    interfaces=st.lists(
        st.builds(
            results.Interface,
            name=st.sampled_from(["eth0", "net1", "veth1"]),
            mac=st.sampled_from(["", "02:00:00:00:00:01"]),
            sandbox=st.sampled_from(["", NETNS]),
            mtu=st.just(0),  # results before 1.1.0 cannot carry it
        ),
        min_size=1,
        max_size=3,
    ),
    data=st.data(),
    version=st.sampled_from(versions.SUPPORTED),
)
def test_any_result_round_trips(
    interfaces: list[results.Interface], data: st.DataObject, version: str
) -> None:
    ips = data.draw(
        st.lists(
            st.builds(
                results.IPConfig,
                address=addresses,
                gateway=st.sampled_from(["", "169.254.1.1", "fe80::1"]),
                interface=st.none() | st.integers(0, len(interfaces) - 1),
            ),
            max_size=3,
        )
    )
    routes = data.draw(
        st.lists(
            st.builds(results.Route, dst=st.sampled_from(["0.0.0.0/0", "::/0"]), gw=st.just("")),
            max_size=2,
        )
    )
    result = results.Result(tuple(interfaces), tuple(ips), tuple(routes))
    assert results.parse_result(results.to_json(result, version), version) == result
