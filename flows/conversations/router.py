"""Where a customer's message goes, as a pure transition table: `step(state, event, settings)`
returns the state after the message and the effects to perform.

The rows, in order (the first that matches decides):

1. A compliance keyword always wins (STOP, START, HELP, their families and the shop's own
   words). STOP and START apply to every shop that sent to the phone from this line (a
   number shared by shops is one sender to the carrier); HELP answers for one shop. A
   provider that answered the keyword itself (Twilio's Advanced Opt-Out) gets no reply.
2. A digit answering the open "which order?" question releases the held message to the
   shop it names.
3. On a number shared by shops, when two or more of them await this phone's answer and the
   message does not name its conversation (a button's postback does), nobody guesses: the
   message is held and the customer asked which order it is about.
4. A phrase the shop flags ("wrong number") goes to the merchant, flagged, and opts the number
   out when the shop says so.
5. The open conversation takes an answer it offers (a button, its digit, its title, YES for
   confirm). A reply it does not understand gets the shop's "reply not understood" message
   listing the answers, when the shop turned it on, at most twice; then, or at once when it
   is off, the conversation is handed over to the merchant's thread.
6. Anything else is a message for the merchant (the shop that last wrote to this phone from
   this line); with no such shop it is dropped.

A duplicate delivery never reaches the table: the runtime stops it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from flows.conversations.keywords import Keyword, classify, contains_phrase, normal
from flows.shops.settings import ConversationSettings

MAX_NOT_UNDERSTOOD = 2
NOT_UNDERSTOOD, FLAGGED = "not_understood", "flagged"
_DEFAULTS = ConversationSettings()


@dataclass(frozen=True)
class Option:
    """An answer a conversation offers: its action, the button's title and postback."""

    action: str
    title: str
    postback: str = ""


@dataclass(frozen=True)
class Conversation:
    """A shop's open conversation awaiting this phone's answer (a verification, `ref` its id)."""

    shop_id: int
    ref: int
    label: str  # "{shop} order {name}", what the customer is asked to choose from
    options: tuple[Option, ...] = ()  # the answers it takes on this channel; () none typed
    not_understood: int = 0  # "reply not understood" messages sent so far


@dataclass(frozen=True)
class State:
    """What is known about the phone on the line the message came in on."""

    shared: bool  # the platform's number, shared by shops
    senders: tuple[int, ...]  # shops that wrote to the phone from this line, latest first
    awaiting: tuple[Conversation, ...] = ()  # open conversations, one per shop, latest first
    choice: tuple[Conversation, ...] = ()  # the options of the "which order?" question asked
    question_open: bool = False  # some question awaits the phone's answer (YES is no START)


@dataclass(frozen=True)
class Message:
    text: str
    button: str = ""  # a pressed button's postback or title
    opt_out_type: str = ""  # STOP | START | HELP: the provider answered the keyword itself
    pinned: bool = False  # the button's postback names its conversation (`awaiting` is it)


# Effects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comply:
    """Apply a compliance keyword for `shops` (consent), answered once through `reply_shop`
    (0: no answer)."""

    keyword: Keyword
    shops: tuple[int, ...]
    reply_shop: int


@dataclass(frozen=True)
class Ask:
    """Hold the message (unless `hold` is False) and ask which of `options` it is about."""

    options: tuple[Conversation, ...]
    hold: bool = True


@dataclass(frozen=True)
class Release:
    """The held message goes to the conversation of `shop_id`."""

    shop_id: int


@dataclass(frozen=True)
class Answer:
    shop_id: int
    ref: int
    action: str


@dataclass(frozen=True)
class NotUnderstood:
    shop_id: int
    ref: int
    text: str  # the shop's message, with the valid answers
    count: int  # how many have been sent, this one included


@dataclass(frozen=True)
class ToMerchant:
    """The message goes into the shop's thread; `reason` why it was handed over ("" none)."""

    shop_id: int
    reason: str = ""
    ref: int = 0  # the conversation handed over, 0 none


@dataclass(frozen=True)
class Drop:
    reason: str


Effect = Comply | Ask | Release | Answer | NotUnderstood | ToMerchant | Drop
Result = tuple[State, list[Effect]]


def step(state: State, event: Message, settings: Mapping[int, ConversationSettings]) -> Result:
    """The state after `event` and its effects; `settings` holds each shop's section."""
    keyword = _keyword(state, event, settings)
    if keyword is not None:
        return state, [_comply(state, event, keyword)]
    if state.choice and not event.pinned:
        chosen = _digit(event.text, len(state.choice))
        if chosen:
            return state, [Release(state.choice[chosen - 1].shop_id)]
        if normal(event.text).isdecimal():
            return state, [Ask(state.choice, hold=False)]
    if state.shared and len(state.awaiting) > 1 and not event.pinned:
        return replace(state, choice=state.awaiting), [Ask(state.awaiting)]
    shop_id = state.awaiting[0].shop_id if state.awaiting else _first(state.senders)
    if not shop_id:
        return state, [Drop("no shop wrote to this phone from this line")]
    section = settings.get(shop_id, _DEFAULTS)
    phrase = contains_phrase(event.text, section.flag_phrases) if not event.button else ""
    if phrase:
        effects: list[Effect] = [ToMerchant(shop_id, f"{FLAGGED}: {phrase}")]
        if section.opt_out_on_flag:
            effects.append(Comply(Keyword.STOP, (shop_id,), shop_id))
        return state, effects
    if not state.awaiting or not state.awaiting[0].options:
        return state, [ToMerchant(shop_id)]
    return _conversation(state, event, section)


def _keyword(
    state: State, event: Message, settings: Mapping[int, ConversationSettings]
) -> Keyword | None:
    if event.opt_out_type:
        return Keyword[event.opt_out_type]
    if event.button:  # a pressed button never is one: its title may well be "Cancel"
        return None
    shops = state.senders or tuple(c.shop_id for c in state.awaiting)
    extra = {
        normal(word): family
        for shop_id in shops
        for family, word in _words(settings.get(shop_id, _DEFAULTS))
    }
    return classify(event.text, question_open=state.question_open, extra=extra)


def _words(section: ConversationSettings) -> list[tuple[Keyword, str]]:
    return [
        *((Keyword.STOP, w) for w in section.stop_words),
        *((Keyword.START, w) for w in section.start_words),
        *((Keyword.HELP, w) for w in section.help_words),
    ]


def _comply(state: State, event: Message, keyword: Keyword) -> Comply:
    senders = state.senders or tuple(c.shop_id for c in state.awaiting)
    # HELP names one shop's phone: the conversation's, else the latest to write.
    first = state.awaiting[0].shop_id if state.awaiting else _first(senders)
    shops = senders if keyword is not Keyword.HELP else (first,) if first else ()
    return Comply(keyword, shops, 0 if event.opt_out_type else first)


def _conversation(state: State, event: Message, section: ConversationSettings) -> Result:
    current = state.awaiting[0]
    action = _action(current.options, event, state.question_open)
    if action:
        return state, [Answer(current.shop_id, current.ref, action)]
    if section.not_understood and current.not_understood < MAX_NOT_UNDERSTOOD:
        count = current.not_understood + 1
        text = section.not_understood_text.replace("%options%", listing(current.options))
        after = replace(current, not_understood=count)
        state = replace(state, awaiting=(after, *state.awaiting[1:]))
        return state, [NotUnderstood(current.shop_id, current.ref, text, count)]
    # Each reply it does not understand from now on goes to the merchant, as handed over.
    return state, [ToMerchant(current.shop_id, NOT_UNDERSTOOD, current.ref)]


def _action(options: tuple[Option, ...], event: Message, question_open: bool) -> str:
    """The action the message picks among `options`: a postback, a digit in button order, a
    button's title, or YES for confirm; "" for none."""
    if event.button:
        pressed = [o for o in options if event.button in (o.postback, o.title)]
        if pressed:
            return pressed[0].action
    answer = normal(event.button or event.text)
    chosen = _digit(answer, len(options))
    if chosen:
        return options[chosen - 1].action
    titled = [o for o in options if normal(o.title) == answer]
    if titled:
        return titled[0].action
    if answer == "yes" and question_open:
        return next((o.action for o in options if o.action == "confirm"), "")
    return ""


def listing(options: tuple[Option, ...]) -> str:
    """The answers as the customer may type them: "1 (Confirm), 2 (Cancel)"."""
    return ", ".join(f"{n} ({o.title})" for n, o in enumerate(options, start=1))


def choice_question(options: tuple[Conversation, ...]) -> str:
    """The question put to a customer whose message several shops await."""
    numbered = " ".join(f"{n}) {o.label}" for n, o in enumerate(options, start=1))
    return f"Which order is your message about? Reply with its number: {numbered}"


def _digit(text: str, count: int) -> int:
    answer = normal(text)
    if answer.isdecimal() and len(answer) <= 2 and 1 <= int(answer) <= count:
        return int(answer)
    return 0


def _first(shops: tuple[int, ...]) -> int:
    return shops[0] if shops else 0
