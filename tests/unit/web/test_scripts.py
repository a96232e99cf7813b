"""Scripts as the console shows them: filling in the customer's data, validation messages."""

from web.scripts import SCRIPT_ID, fill, validate


def test_placeholders_get_the_customers_data_and_unknown_ones_a_visible_gap():
    assert fill("{surname}{title}您好，这里是{store}", {"surname": "王", "title": "先生", "store": "一店"}) == "王先生您好，这里是一店"
    assert fill("${model}保养到期：{due}", {"model": "凯美瑞"}) == "凯美瑞保养到期：____"


def test_broken_templates_are_shown_as_written():
    assert fill("价格{", {}) == "价格{"


def test_a_broken_script_is_reported_with_its_line():
    problems = validate("id: post_service\nsteps: [unclosed\n", "post_service.yaml")
    assert problems and "line" in problems[0] and "post_service.yaml" in problems[0]


def test_script_ids_cannot_be_paths():
    for bad in ("../etc/passwd", "a/b", "UPPER", "x.yaml", "", "-x"):
        assert not SCRIPT_ID.fullmatch(bad)
    assert SCRIPT_ID.fullmatch("post_service")
