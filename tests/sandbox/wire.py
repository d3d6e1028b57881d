"""Reading QBO's answers in tests."""

from __future__ import annotations


def fault_of(response, status: int = 400) -> dict:
    """The single Error of a Fault answer, with the fault's type folded in."""
    assert response.status_code == status, response.text
    body = response.json()
    # Every fault has a `time` except the few QBO sends without one (2030 Invalid ID).
    assert set(body) in ({"Fault", "time"}, {"Fault"}), body
    assert len(body["Fault"]["Error"]) == 1
    return body["Fault"]["Error"][0] | {"type": body["Fault"]["type"]}
