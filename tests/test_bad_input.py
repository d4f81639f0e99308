"""Any input gives a result or a clear error, never another exception."""

from hypothesis import given, settings
from hypothesis import strategies as st

from agent import config
from agent.config import ConfigError
from devices.carddata import CardData, CardDataError

KEY = b"0123456789abcdef"
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
sections = st.sampled_from([*config.SECTIONS, "cassettes", "bogus"])
fields = st.sampled_from(
    sorted({f for spec in config.SECTIONS.values() for f in spec} | set(config.CASSETTE_FIELDS) | {"x"})
)
documents = st.dictionaries(
    sections,
    st.one_of(
        st.dictionaries(fields, values, max_size=4),
        st.lists(st.dictionaries(fields, values, max_size=4), max_size=2),
        values,
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_config_document_loads_or_names_a_field(raw):
    try:
        config.from_dict(raw)
    except ConfigError as exc:
        assert str(exc).split(":")[0].strip()


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=";=?0123456789D ab", max_size=40))
def test_any_track2_parses_or_is_refused(track2):
    try:
        card = CardData.from_track2(track2, KEY)
    except CardDataError:
        return
    assert card.masked[:6].isdigit() and len(card.token) == 64
