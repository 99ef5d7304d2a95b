"""SMSC connections (issue 22): the SMPP_CONFIG file, checked strictly, and the router that picks
a connection for each destination: specificity, then priority, then weight."""

from __future__ import annotations

import random
import re
from collections import Counter

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from phonenumbers import carrier

from gateway.config import PROJECT_ROOT, ConfigError, load_settings
from gateway.messaging.connections import Connection, load_connections, parse_connections
from gateway.messaging.routing import Miss, Router, carrier_of

EXAMPLE = PROJECT_ROOT / "examples" / "smpp-connections.yaml"

CHINA_MOBILE = ("+8613912345678", "+8613812345678")
CHINA_UNICOM = ("+8613012345678", "+8618612345678")
CHINA_TELECOM = ("+8613312345678", "+8618912345678")


@pytest.fixture
def env(tmp_path):
    return lambda **values: load_settings({"VAR_DIR": str(tmp_path), **values}, environ={})


def connection(id: str, *routes: str, priority: int = 1, weight: int = 1) -> Connection:
    return Connection(id=id, host=f"{id}.example", port=2775, system_id="tvpay", password="pw",
                      system_type="", source_addr="10690000", binds=1, window=10, max_tps=10,
                      routes=routes, priority=priority, weight=weight)


def everyone(_: str) -> bool:
    return True


# --- the file ------------------------------------------------------------------------------------

def test_the_example_file_loads_with_defaults_from_smpp_settings(env):
    connections = load_connections(env(SMPP_CONFIG=str(EXAMPLE), SMPP_WINDOW="7",
                                       SMS_SERVICE_NUMBER="10691234"))
    by_id = {c.id: c for c in connections}
    assert list(by_id) == ["cmcc", "unicom", "telecom", "backup"]
    cmcc, telecom, backup = by_id["cmcc"], by_id["telecom"], by_id["backup"]
    assert (cmcc.host, cmcc.port, cmcc.binds, cmcc.window, cmcc.max_tps) == \
        ("smsc.cmcc.example", 2775, 2, 50, 300)
    assert cmcc.routes == ("carrier:China Mobile",) and cmcc.source_addr == "10690000"
    assert telecom.system_type == "CMT" and telecom.source_addr == "10691234"  # SMPP_SOURCE_ADDR
    assert (backup.priority, backup.weight, backup.binds, backup.routes[-1]) == (2, 1, 1, "*")
    assert by_id["unicom"].priority == 1
    assert "change-me" not in repr(cmcc)  # passwords stay out of logs


def test_without_smpp_config_the_smpp_settings_are_one_default_connection(env):
    (default,) = load_connections(env(SMPP_HOST="smsc.operator.example", SMPP_PORT="2776",
                                      SMPP_SYSTEM_ID="acct", SMPP_PASSWORD="pw12",
                                      SMPP_SYSTEM_TYPE="VMA", SMPP_SOURCE_ADDR="106900",
                                      SMPP_WINDOW="20", SMPP_MAX_TPS="80"))
    assert default == Connection(id="default", host="smsc.operator.example", port=2776,
                                 system_id="acct", password="pw12", system_type="VMA",
                                 source_addr="106900", binds=1, window=20, max_tps=80,
                                 routes=("*",), priority=1, weight=1)
    (built_in,) = load_connections(env())
    assert built_in.id == "default" and built_in.host is None  # the built-in SMSC, as today
    assert built_in.routes == ("*",)


def test_smpp_host_and_smpp_config_together_are_refused(env):
    with pytest.raises(ConfigError, match="SMPP_HOST must be unset when SMPP_CONFIG is set"):
        env(SMPP_CONFIG=str(EXAMPLE), SMPP_HOST="smsc.example")
    assert env(SMPP_CONFIG="").SMPP_CONFIG is None


def test_a_missing_file_is_named(env, tmp_path):
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=f"SMPP_CONFIG {missing}: cannot be read: No such"):
        load_connections(env(SMPP_CONFIG=str(missing)))


GOOD = """\
connections:
  - id: cmcc
    host: smsc.example
    port: 2775
    system_id: tvpay
    password: pw
    routes: ["*"]
"""


def entry(extra: str = "", **replace: str) -> str:
    text = GOOD + extra
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("text, message", [
    (entry("    colour: red\n"),
     "connection 'cmcc' \\(connections\\[0\\]\\), field colour: Extra inputs are not permitted"),
    (entry(**{"port: 2775": "port: 70000"}),
     "field port: Input should be less than or equal to 65535"),
    (entry(**{"port: 2775": "port: '2775'"}), "field port: Input should be a valid integer"),
    (entry(**{"id: cmcc": "id: China-Mobile"}), "field id: String should match pattern"),
    (entry(**{"id: cmcc": f"id: {'a' * 33}"}), "field id: String should match pattern"),
    (entry("    binds: 0\n"), "field binds: Input should be greater than or equal to 1"),
    (entry("    binds: 33\n"), "field binds: Input should be less than or equal to 32"),
    (entry("    window: 0\n"), "field window: Input should be greater than or equal to 1"),
    (entry("    max_tps: 0\n"), "field max_tps: Input should be greater than or equal to 1"),
    (entry("    priority: 0\n"), "field priority: Input should be greater than or equal to 1"),
    (entry("    weight: 0\n"), "field weight: Input should be greater than or equal to 1"),
    (entry("    weight: true\n"), "field weight: Input should be a valid integer"),
    (entry(**{"    host: smsc.example\n": ""}), "field host: Field required"),
    (entry(**{'["*"]': "[]"}), "field routes: List should have at least 1 item"),
    (entry(**{'["*"]': "[+86139]"}), "field routes: 86139 must be quoted, as '\\+86139'"),
    (entry(**{'["*"]': '["86139"]'}), "field routes: '86139' is not a route"),
    (entry(**{'["*"]': '["+86 139"]'}), "field routes: '\\+86 139' is not a route"),
    (entry(**{'["*"]': '["+1234567890123456"]'}), "is not a route"),
    (entry(**{'["*"]': '["carrier:"]'}), "field routes: 'carrier:' is not a route"),
    (entry(**{'["*"]': '["carrier:China mobile"]'}),
     "phonenumbers knows no carrier 'China mobile'.*did you mean 'carrier:China Mobile'"),
    (entry(**{'["*"]': '["*", "*"]'}), "field routes: '\\*' appears more than once"),
    (entry(**{'["*"]': "[*]"}), "not YAML: line 7, .*quote '\\*'"),
    (entry(**{"password: pw": "password: 12345678"}), "field password: .*quote it"),
    (entry("    port: 2776\n"), "not YAML: line 8, column 5: 'port' is given twice"),
    (GOOD + GOOD.removeprefix("connections:\n"),
     "connection 'cmcc' \\(connections\\[1\\]\\), field id: another connection has this id"),
    ("connections: []\n", "connections: List should have at least 1 item"),
    ("connections:\n  - cmcc\n", "connections\\[0\\]: must be a mapping of a connection's"),
    ("", "must be a mapping with a list of 'connections'"),
    ("- id: cmcc\n", "must be a mapping with a list of 'connections'"),
    ("connections: [\n", "not YAML: line 2, column 1"),
])
def test_a_bad_file_is_refused_with_one_line_naming_file_connection_and_field(
        env, tmp_path, text, message):
    path = tmp_path / "connections.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^SMPP_CONFIG {path}: .*{message}") as refused:
        load_connections(env(SMPP_CONFIG=str(path)))
    assert "\n" not in str(refused.value) and "Traceback" not in str(refused.value)


def test_the_worker_start_says_it_in_its_own_words(env, tmp_path):
    """What ``python -m smpp`` prints for a ConfigError: one line, no traceback."""
    path = tmp_path / "c.yaml"
    path.write_text(entry("    binds: 0\n"))
    with pytest.raises(ConfigError) as refused:
        load_connections(env(SMPP_CONFIG=str(path)))
    assert refused.value.__suppress_context__ and refused.value.__cause__ is None


# --- carriers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("numbers, name", [(CHINA_MOBILE, "China Mobile"),
                                           (CHINA_UNICOM, "China Unicom"),
                                           (CHINA_TELECOM, "China Telecom")])
def test_the_test_numbers_are_what_phonenumbers_says(numbers, name):
    for number in numbers:
        assert carrier.name_for_number(phonenumbers.parse(number), "en") == name
        assert carrier_of(number) == name


def mobile_numbers() -> st.SearchStrategy[str]:
    """Valid mobile numbers: Chinese ones by the million, and every region's example."""
    examples = [phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
                for region in sorted(phonenumbers.SUPPORTED_REGIONS)]
    chinese = st.from_regex(r"\+861[3-9][0-9]{9}", fullmatch=True)
    return st.one_of(chinese, st.sampled_from([
        phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
        for n in examples if n is not None]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(mobile_numbers())
def test_the_cached_carrier_is_phonenumbers_own(number):
    parsed = phonenumbers.parse(number)
    assume(phonenumbers.is_valid_number(parsed))
    assert carrier_of(number) == carrier.name_for_number(parsed, "en")


# --- routing -------------------------------------------------------------------------------------

def example_router(env) -> Router:
    return Router(load_connections(env(SMPP_CONFIG=str(EXAMPLE))))


@pytest.mark.parametrize("numbers, expected", [(CHINA_MOBILE, "cmcc"), (CHINA_UNICOM, "unicom"),
                                               (CHINA_TELECOM, "telecom")])
def test_each_carrier_s_numbers_go_to_its_connection_backed_by_the_aggregator(
        env, numbers, expected):
    router = example_router(env)
    for number in numbers:
        assert router.choose(number, everyone) == expected
        assert router.candidates(number) == [expected, "backup"]
        assert router.choose(number, lambda id: id != expected) == "backup"


def test_star_catches_what_no_carrier_route_matches(env):
    router = example_router(env)
    assert carrier_of("+8619212345678") == "China Broadnet"
    for number in ("+8619212345678", "+14155550100", "+85291234567"):
        assert router.candidates(number) == ["backup"]


def test_a_longer_prefix_beats_a_shorter_one_and_a_carrier():
    router = Router([connection("mobile", "carrier:China Mobile"),
                     connection("p8613", "+8613"), connection("p86139", "+86139"),
                     connection("rest", "*")])
    assert router.candidates("+8613912345678") == ["p86139"]
    assert router.candidates("+8613812345678") == ["p8613"]  # China Mobile, but +8613 wins
    assert router.candidates("+8619812345678") == ["mobile"]  # China Mobile, no prefix
    assert router.candidates("+8618912345678") == ["rest"]
    assert router.candidates("+86139") == ["p86139"]  # a number as long as the prefix


def test_less_specific_matches_are_no_fallback():
    router = Router([connection("p86139", "+86139"), connection("rest", "*", priority=2)])
    assert router.choose("+8613912345678", lambda id: id != "p86139") is Miss.NONE_USABLE


def test_priorities_in_order_an_unusable_one_skipped_for_the_next():
    router = Router([connection("third", "*", priority=3), connection("first", "*"),
                     connection("second", "*", priority=2)])
    assert router.candidates("+8613912345678") == ["first", "second", "third"]
    asked: list[str] = []

    def usable(id: str) -> bool:
        asked.append(id)
        return id == "third"

    assert router.choose("+8613912345678", usable) == "third"
    assert asked == ["first", "second", "third"]


def test_no_route_and_none_usable_are_different_misses():
    router = Router([connection("cn", "+86")])
    assert router.choose("+14155550100", everyone) is Miss.NO_ROUTE
    assert Miss.NO_ROUTE.value == "no_route"  # the SMS's failure reason
    assert router.candidates("+14155550100") == []
    assert router.choose("+8613912345678", lambda _: False) is Miss.NONE_USABLE
    assert Router([]).choose("+8613912345678", everyone) is Miss.NO_ROUTE


def test_weights_share_a_priority():
    router = Router([connection("light", "*", weight=1), connection("heavy", "*", weight=3),
                     connection("spare", "*", priority=2, weight=100)])
    rng = random.Random(22)
    chosen = Counter(router.choose("+8613912345678", everyone, rng) for _ in range(10_000))
    assert set(chosen) == {"light", "heavy"}
    assert 0.73 <= chosen["heavy"] / 10_000 <= 0.77
    firsts = Counter(router.candidates("+8613912345678", rng)[0] for _ in range(10_000))
    assert 0.73 <= firsts["heavy"] / 10_000 <= 0.77
    # an unusable heavy one leaves everything to the light one, not to the next priority
    assert {router.choose("+8613912345678", lambda id: id != "heavy", rng)
            for _ in range(100)} == {"light"}


def test_not_an_e164_number_is_a_caller_s_mistake():
    with pytest.raises(ValueError, match="not a number in E.164"):
        Router([connection("all", "*")]).choose("13912345678", everyone)
    with pytest.raises(ValueError, match="two connections have the id 'a'"):
        Router([connection("a", "*"), connection("a", "+86")])


ROUTES = st.one_of(
    st.just("*"),
    st.sampled_from(["carrier:China Mobile", "carrier:China Unicom", "carrier:China Telecom",
                     "carrier:China Broadnet", "carrier:3"]),
    st.from_regex(r"\+(86|852|1)[0-9]{0,4}", fullmatch=True))
CONNECTIONS = st.lists(
    st.tuples(st.lists(ROUTES, min_size=1, max_size=3, unique=True),
              st.integers(1, 3), st.integers(1, 5)),
    max_size=6).map(lambda specs: [connection(f"c{i}", *routes, priority=p, weight=w)
                                   for i, (routes, p, w) in enumerate(specs)])
NUMBERS = st.one_of(st.sampled_from(CHINA_MOBILE + CHINA_UNICOM + CHINA_TELECOM),
                    st.from_regex(r"\+(861[3-9][0-9]{9}|852[569][0-9]{7}|1[2-9][0-9]{9})",
                                  fullmatch=True))


def matches(route: str, number: str) -> bool:
    if route == "*":
        return True
    if route.startswith("carrier:"):
        return carrier.name_for_number(phonenumbers.parse(number), "en") == route[8:]
    return number.startswith(route)


@settings(max_examples=300, deadline=None)
@given(CONNECTIONS, NUMBERS, st.sets(st.integers(0, 5)), st.randoms(use_true_random=False))
def test_the_chosen_connection_matches_the_destination_and_is_usable(
        connections, number, down, rng):
    assume(phonenumbers.is_valid_number(phonenumbers.parse(number)))
    usable = {c.id for i, c in enumerate(connections) if i not in down}
    chosen = Router(connections).choose(number, usable.__contains__, rng)
    matching = [c for c in connections if any(matches(r, number) for r in c.routes)]
    if not matching:
        assert chosen is Miss.NO_ROUTE
    elif not any(c.id in usable for c in matching):
        assert chosen is Miss.NONE_USABLE
    if isinstance(chosen, str):
        assert chosen in usable
        (picked,) = [c for c in connections if c.id == chosen]
        assert any(matches(route, number) for route in picked.routes)
        # and no usable connection of its level has a lower priority
        order = Router(connections).candidates(number, rng)
        before = order[:order.index(chosen)]
        assert all(c.priority == picked.priority or c.id not in usable
                   for c in connections if c.id in before)


def test_the_readme_s_connections_are_the_example_file_s():
    """The README shows examples/smpp-connections.yaml in short: the same connections."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Several SMSC connections"):]
    shown = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert shown is not None
    defaults = load_settings(environ={})
    example = (PROJECT_ROOT / "examples" / "smpp-connections.yaml").read_text(encoding="utf-8")
    assert parse_connections(shown.group(1), defaults) == parse_connections(example, defaults)
