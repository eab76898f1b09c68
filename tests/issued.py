"""Feedback is stored only about cards the service issued (issue 18 R5): tests that post feedback
about made-up card ids first record those ids as issued, as a hook call would."""
from __future__ import annotations


def issue(store, *uuids: str, service_id: str = "thiopurine-order-sign") -> None:
    store.record_cards(service_id=service_id, hook="order-sign", hook_instance="test",
                       cards=[{"uuid": u, "indicator": "info", "source": {"topic": {"code": "test-card"}}}
                              for u in uuids])
    store.flush()
