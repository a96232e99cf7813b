"""Display names: codes of different enums that share a value keep their own names."""

from flask import Flask
from flask_babel import Babel

from callcenter.domain import CallDisposition, Department, FeedbackCategory, Role, Speaker
from callcenter.storage.live import LiveCallState
from callcenter.storage.models import CallOutcome, TaskState
from web.labels import label, of


def test_equal_codes_of_different_enums_do_not_share_a_name():
    app = Flask("t")
    Babel(app)
    with app.test_request_context():
        assert label(CallDisposition.ANSWERED) == "Answered"
        assert label(LiveCallState.ANSWERED) == "Talking"
        assert label(Department.INSURANCE) == "Insurance"
        assert label(FeedbackCategory.INSURANCE) == "Insurance / claims"
        assert label(Role.AGENT) == label(Speaker.AGENT) == "Agent"
        assert label(CallOutcome.COMPLETED) == label(TaskState.COMPLETED) == "Completed"


def test_plain_string_codes_and_unknown_codes():
    app = Flask("t")
    Babel(app)
    with app.test_request_context():
        assert of(FeedbackCategory, "wait_time") == "Waiting / delivery time"
        assert of(FeedbackCategory, "no_such_code") == "no_such_code"
        assert of(FeedbackCategory, None) == ""
