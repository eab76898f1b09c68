"""Bounds on the work and the answer of one hook call (issue 18: bounded work).

``MAX_DRAFT_ORDERS``: a call with more draft orders than this is refused with a 400
OperationOutcome naming the field (no EHR signs hundreds of orders at once; thousands were an
attack that held a worker for seconds and answered with 55 MB).

``MAX_CARDS``: an answer with more cards than this has its cards merged, one card per rule and
indicator, never dropped: the merged card keeps the first card's wording and lists every merged
card's summary (each names its order and its advice) in its detail. A merged card offers no
suggestions (each would rewrite a different order; one click must not pick between them): the
detail says so and the advice stays in the summaries it lists.

The documented limits with their numbers are in ``docs/threats.md``.
"""
from __future__ import annotations

import uuid

MAX_DRAFT_ORDERS = 100
MAX_CARDS = 25
SUMMARY_MAX = 139  # CDS Hooks: "<140 characters"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def merge_cards(cards: list[dict], max_cards: int = MAX_CARDS) -> list[dict]:
    """``cards`` as they are when there are at most ``max_cards``; else one card per (rule, indicator),
    in the order the first card of each appeared. ``hooks.cards.render_cards`` merges so already, before
    wording the cards merged away; on its answer this changes nothing (one card per rule and indicator)."""
    if len(cards) <= max_cards:
        return cards
    groups: dict[tuple[str, str], list[dict]] = {}
    for card in cards:
        key = (str(card.get("source", {}).get("topic", {}).get("code", "")), str(card.get("indicator", "")))
        groups.setdefault(key, []).append(card)
    return [group[0] if len(group) == 1 else merged_of(group[0], [str(c.get("summary", "")) for c in group])
            for group in groups.values()]


def merged_of(first: dict, summaries: list[str]) -> dict:
    """The card that stands for ``len(summaries)`` cards of one rule: ``first`` (the first of them, as it is
    worded) without its suggestions, listing every card's summary (``summaries``, the first card's first)."""
    n = len(summaries)
    prefix = f"{n} orders: "
    lines = "\n".join(f"- {s}" for s in summaries)
    detail = (f"This card stands for {n} cards of the same rule (one per order), merged to keep the answer "
              f"small; each order's advice is listed here. Suggestions are not offered on a merged card: "
              f"apply the advice to each order.\n\n{lines}\n\n---\n\nAs worded for the first order:\n\n"
              f"{first.get('detail', '')}")
    merged = {k: v for k, v in first.items() if k not in ("suggestions", "selectionBehavior")}
    ext = dict((first.get("extension") or {}).get("azathioprine-cds") or {})
    ext["mergedCards"] = n
    merged.update(uuid=str(uuid.uuid4()), summary=prefix + _short(str(first.get("summary", "")), SUMMARY_MAX - len(prefix)),
                  detail=detail, extension={**(first.get("extension") or {}), "azathioprine-cds": ext})
    return merged
