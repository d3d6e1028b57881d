"""Every action by key: the generated ones (actions.py), the special ones (special.py) and the reports
(reports.py).

    from qbflow.connector.registry import ACTIONS, action
    result = await action("create_invoice").run(ctx, {...})
"""

from __future__ import annotations

import difflib

from qbflow.catalog.entities import Kind
from qbflow.connector.actions import ROWS, generate
from qbflow.connector.base import Action
from qbflow.connector.reports import generate_reports
from qbflow.connector.special import generate_special
from qbflow.errors import QBFlowError

__all__ = ["ACTIONS", "UnknownAction", "action", "actions_for"]


class UnknownAction(QBFlowError, LookupError):
    """No action has this key; the message suggests the nearest ones."""

    def __init__(self, key: str, message: str, suggestions: list[str]) -> None:
        self.key = key
        self.suggestions = suggestions
        super().__init__(message)


def _build() -> dict[str, Action]:
    generated = generate()
    special = {**generate_special(), **generate_reports()}
    clash = sorted(set(generated) & set(special))
    if clash:
        raise AssertionError(f"special actions clash with generated ones: {clash}")
    merged = {**generated, **special}
    titles: dict[str, str] = {}
    for a in merged.values():
        if a.title in titles:
            raise AssertionError(f"two actions are titled {a.title!r}: {titles[a.title]} and {a.key}")
        titles[a.title] = a.key
    return dict(sorted(merged.items()))


ACTIONS: dict[str, Action] = _build()

# delete_<name list> is a natural guess; QBO never deletes name-list records, so the answer says what to do.
_NAME_LIST_DELETES = {f"delete_{r.key}": f"deactivate_{r.key}" for r in ROWS
                      if r.definition.kind is Kind.NAME_LIST and "deactivate" in r.offers}


def action(key: str) -> Action:
    """The action with this key, or UnknownAction naming the nearest keys."""
    try:
        return ACTIONS[key]
    except (KeyError, TypeError):
        pass
    text = str(key)
    if text in _NAME_LIST_DELETES:
        instead = _NAME_LIST_DELETES[text]
        noun = ACTIONS[instead].title.removeprefix("Deactivate ")
        raise UnknownAction(text, f"QuickBooks never deletes a {noun.lower()} ({noun} is a list record): deactivate "
                                  f"instead, with the action {instead!r}.", [instead])
    by_title = {a.title.lower(): a.key for a in ACTIONS.values()}
    if text.strip().lower() in by_title:
        found = by_title[text.strip().lower()]
        raise UnknownAction(text, f"unknown action key {text!r}; that is the title of {found!r}, use its key",
                            [found])
    suggestions = difflib.get_close_matches(text.lower().replace(" ", "_"), list(ACTIONS), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else \
        " (`qbflow catalog` lists them)"
    raise UnknownAction(text, f"unknown action {text!r}{hint}", suggestions)


def actions_for(entity: str) -> list[Action]:
    """The actions working on one entity (wire name), in key order."""
    return [a for a in ACTIONS.values() if a.entity == entity]
