"""The inbound router as a table: (state, message, settings) -> effects and the state after."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.conversations.keywords import Keyword
from flows.conversations.router import (
    Answer,
    Ask,
    Comply,
    Conversation,
    Drop,
    Message,
    NotUnderstood,
    Option,
    Release,
    State,
    ToMerchant,
    choice_question,
    step,
)
from flows.shops.settings import ConversationSettings

A, B = 1, 2
BUTTONS = (
    Option("confirm", "Confirm", "verify:10:confirm"),
    Option("cancel", "Cancel", "verify:10:cancel"),
    Option("callback", "Call me", "verify:10:callback"),
)
ASKING = Conversation(A, 10, "Acme order #1001", BUTTONS)
ASKING_B = Conversation(B, 20, "Bolt order #2001", ())
SMS_ONLY = Conversation(A, 10, "Acme order #1001", ())
OWN = State(shared=False, senders=(A,))
OWN_ASKING = State(shared=False, senders=(A,), awaiting=(ASKING,), question_open=True)
SHARED = State(shared=True, senders=(B, A))
SHARED_BOTH = State(shared=True, senders=(B, A), awaiting=(ASKING_B, ASKING), question_open=True)
CHOOSING = replace(SHARED_BOTH, choice=(ASKING_B, ASKING))
NOBODY = State(shared=True, senders=())

PLAIN = ConversationSettings()
TOLD = ConversationSettings(not_understood=True)
HINDI = ConversationSettings(stop_words=["रोकें"], help_words=["मदद"])
OPTING = ConversationSettings(opt_out_on_flag=True)
NOT_UNDERSTOOD = (
    "Sorry, we did not understand your reply. Please answer 1 (Confirm), 2 (Cancel), 3 (Call me)."
)

STOP, START, HELP = Keyword.STOP, Keyword.START, Keyword.HELP

ROWS = [
    # 1. Compliance keywords win, whatever else is open.
    ("stop on the shop's line", OWN, Message("Stop."), PLAIN, [Comply(STOP, (A,), A)]),
    (
        "stop while a verification asks",
        OWN_ASKING,
        Message("STOP"),
        PLAIN,
        [Comply(STOP, (A,), A)],
    ),
    ("cancel typed is stop", OWN_ASKING, Message("cancel"), PLAIN, [Comply(STOP, (A,), A)]),
    (
        "stop on a shared line: every shop that wrote, one answer",
        SHARED,
        Message("unsubscribe"),
        PLAIN,
        [Comply(STOP, (B, A), B)],
    ),
    (
        "stop while a choice is open",
        CHOOSING,
        Message("STOP"),
        PLAIN,
        [Comply(STOP, (B, A), B)],
    ),
    ("start", OWN, Message("unstop"), PLAIN, [Comply(START, (A,), A)]),
    ("yes with no question open is start", OWN, Message("Yes"), PLAIN, [Comply(START, (A,), A)]),
    (
        "help on a shared line names one shop",
        SHARED,
        Message("INFO"),
        PLAIN,
        [Comply(HELP, (B,), B)],
    ),
    ("the shop's own stop word", OWN, Message(" रोकें "), HINDI, [Comply(STOP, (A,), A)]),
    ("the shop's own help word", OWN, Message("मदद"), HINDI, [Comply(HELP, (A,), A)]),
    (
        "advanced opt-out: recorded, not answered",
        OWN,
        Message("STOP", opt_out_type="STOP"),
        PLAIN,
        [Comply(STOP, (A,), 0)],
    ),
    (
        "a keyword from a number no shop wrote to",
        NOBODY,
        Message("STOP"),
        PLAIN,
        [Comply(STOP, (), 0)],
    ),
    (
        "a button titled Cancel is no keyword",
        OWN_ASKING,
        Message("Cancel", button="Cancel"),
        PLAIN,
        [Answer(A, 10, "cancel")],
    ),
    # 2. The "which order?" question.
    ("a digit names the order", CHOOSING, Message(" 2 "), PLAIN, [Release(A)]),
    (
        "a digit out of range asks again, holding nothing",
        CHOOSING,
        Message("7"),
        PLAIN,
        [Ask((ASKING_B, ASKING), hold=False)],
    ),
    # 3. A shared line with two shops awaiting: nobody guesses.
    (
        "two shops await: held, the customer asked",
        SHARED_BOTH,
        Message("1"),
        PLAIN,
        [Ask((ASKING_B, ASKING))],
    ),
    (
        "a postback names its conversation",
        replace(SHARED_BOTH, awaiting=(ASKING,)),
        Message("Confirm", button="verify:10:confirm", pinned=True),
        PLAIN,
        [Answer(A, 10, "confirm")],
    ),
    (
        "one shop awaits on a shared line: its conversation",
        replace(SHARED, awaiting=(ASKING,), question_open=True),
        Message("1"),
        PLAIN,
        [Answer(A, 10, "confirm")],
    ),
    # 4. Flagged phrases.
    (
        "a flagged phrase goes to the merchant",
        OWN_ASKING,
        Message("Sorry, WRONG number!"),
        PLAIN,
        [ToMerchant(A, "flagged: wrong number")],
    ),
    (
        "and opts out when the shop says so",
        OWN,
        Message("Dont text me."),
        OPTING,
        [ToMerchant(A, "flagged: don't text me"), Comply(STOP, (A,), A)],
    ),
    # 5. The open conversation.
    ("a digit in button order", OWN_ASKING, Message("3"), PLAIN, [Answer(A, 10, "callback")]),
    ("a typed title", OWN_ASKING, Message("call me!"), PLAIN, [Answer(A, 10, "callback")]),
    (
        "yes answers the open question",
        OWN_ASKING,
        Message("yes"),
        PLAIN,
        [Answer(A, 10, "confirm")],
    ),
    (
        "not understood, the shop tells: first time",
        OWN_ASKING,
        Message("maybe"),
        TOLD,
        [NotUnderstood(A, 10, NOT_UNDERSTOOD, 1)],
    ),
    (
        "not understood, second time",
        replace(OWN_ASKING, awaiting=(replace(ASKING, not_understood=1),)),
        Message("4"),
        TOLD,
        [NotUnderstood(A, 10, NOT_UNDERSTOOD, 2)],
    ),
    (
        "not understood a third time: handed over",
        replace(OWN_ASKING, awaiting=(replace(ASKING, not_understood=2),)),
        Message("hmm"),
        TOLD,
        [ToMerchant(A, "not_understood", 10)],
    ),
    (
        "not understood, the shop does not tell: handed over at once",
        OWN_ASKING,
        Message("maybe"),
        PLAIN,
        [ToMerchant(A, "not_understood", 10)],
    ),
    (
        "a conversation with no typed answers: the merchant's",
        replace(OWN_ASKING, awaiting=(SMS_ONLY,)),
        Message("1"),
        TOLD,
        [ToMerchant(A)],
    ),
    # 6. Otherwise the merchant's, or nobody's.
    ("free text", OWN, Message("Where is my parcel?"), PLAIN, [ToMerchant(A)]),
    ("free text on a shared line: the latest shop", SHARED, Message("hi"), PLAIN, [ToMerchant(B)]),
    (
        "free text nobody wrote for",
        NOBODY,
        Message("hi"),
        PLAIN,
        [Drop("no shop wrote to this phone from this line")],
    ),
]


@pytest.mark.parametrize(
    ("state", "message", "section", "effects"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_router_table(state, message, section, effects):
    settings = {A: section, B: section}
    assert step(state, message, settings)[1] == effects


def test_not_understood_is_counted_in_the_state():
    state, _ = step(OWN_ASKING, Message("maybe"), {A: TOLD})
    assert state.awaiting[0].not_understood == 1
    state, _ = step(state, Message("maybe"), {A: TOLD})
    state, effects = step(state, Message("maybe"), {A: TOLD})
    assert state.awaiting[0].not_understood == 2
    assert effects == [ToMerchant(A, "not_understood", 10)]


def test_asking_remembers_the_choice():
    state, _ = step(SHARED_BOTH, Message("1"), {})
    assert state.choice == (ASKING_B, ASKING)


def test_the_choice_question_numbers_each_shop_and_order():
    assert choice_question((ASKING_B, ASKING)) == (
        "Which order is your message about? Reply with its number: "
        "1) Bolt order #2001 2) Acme order #1001"
    )
