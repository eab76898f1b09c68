"""CDS Hooks feedback items → validated, normalised records with an idempotency key.

The JSON Schema check in ``service/validation.py`` comes first; this adds what a schema cannot
say (a parseable ``outcomeTimestamp``, sizes that fit the columns) and names the offending field
as a JSONPath, so the endpoint can answer 400 with an OperationOutcome.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, overload

MAX_ITEMS = 1000  # per request
MAX_ID = 255  # card uuid, suggestion id, reason code
MAX_URI = 1024  # reason system, reason display
MAX_COMMENT = 1000  # characters of a userComment (issue 18 R5: 4,000 let one token store gigabytes)
MAX_SUGGESTIONS = 100
FUTURE_SLACK = timedelta(days=1)  # clock skew between the EHR and us
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)  # also keeps week arithmetic far from year 1


class FeedbackInvalid(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


Outcome = Literal["accepted", "overridden"]  # CDS Hooks feedback outcome


@dataclass(frozen=True)
class FeedbackRecord:
    card: str
    outcome: Outcome
    outcome_at: datetime  # aware, UTC
    accepted_suggestions: tuple[str, ...] = ()
    reason_code: str | None = None
    reason_system: str | None = None
    reason_display: str | None = None
    comment: str | None = None

    def dedup_key(self, service_id: str) -> str:
        """The same item posted twice (a retry, a replay) has the same key and is stored once.

        Made of the item's meaning, not its bytes: timestamp normalised to UTC, suggestion ids
        sorted, the reason's display left out (it only names the code).
        """
        parts = [service_id, self.card, self.outcome, self.outcome_at.isoformat(),
                 sorted(self.accepted_suggestions), self.reason_system or "", self.reason_code or "",
                 self.comment or ""]
        return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


@overload
def _text(value, field: str, limit: int) -> str: ...
@overload
def _text(value, field: str, limit: int, *, required: bool) -> str | None: ...
def _text(value, field: str, limit: int, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FeedbackInvalid(f"{field}: must be a non-empty string", field)
    if len(value) > limit:
        raise FeedbackInvalid(f"{field}: longer than {limit} characters", field)
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise FeedbackInvalid(f"{field}: contains a NUL character", field)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise FeedbackInvalid(f"{field}: is not valid Unicode text", field) from None
    return value


def parse_timestamp(value, field: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601 / RFC 3339 date-time → aware UTC datetime (a missing offset is read as UTC)."""
    if not isinstance(value, str) or len(value) < 16 or value[10:11] not in ("T", "t", " "):
        raise FeedbackInvalid(f"{field}: must be a date-time such as 2021-12-11T10:05:31Z", field)
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise FeedbackInvalid(f"{field}: {value[:40]!r} is not an ISO 8601 date-time", field) from None
    if parsed > (now or datetime.now(timezone.utc)) + FUTURE_SLACK:
        raise FeedbackInvalid(f"{field}: lies in the future", field)
    if parsed < EARLIEST:
        raise FeedbackInvalid(f"{field}: before {EARLIEST.year}, not a time a card was acted on", field)
    return parsed


def parse_item(item, where: str, *, now: datetime | None = None) -> FeedbackRecord:
    if not isinstance(item, dict):
        raise FeedbackInvalid(f"{where}: must be an object", where)
    card = _text(item.get("card"), f"{where}.card", MAX_ID)
    outcome = item.get("outcome")
    if outcome not in ("accepted", "overridden"):
        raise FeedbackInvalid(f"{where}.outcome: must be 'accepted' or 'overridden'", f"{where}.outcome")
    outcome_at = parse_timestamp(item.get("outcomeTimestamp"), f"{where}.outcomeTimestamp", now=now)

    accepted: list[str] = []
    raw = item.get("acceptedSuggestions")
    if raw is not None:
        if not isinstance(raw, list) or not raw:
            raise FeedbackInvalid(f"{where}.acceptedSuggestions: must be a non-empty array",
                                  f"{where}.acceptedSuggestions")
        if len(raw) > MAX_SUGGESTIONS:
            raise FeedbackInvalid(f"{where}.acceptedSuggestions: more than {MAX_SUGGESTIONS} entries",
                                  f"{where}.acceptedSuggestions")
        for j, s in enumerate(raw):
            field = f"{where}.acceptedSuggestions[{j}].id"
            accepted.append(_text(s.get("id") if isinstance(s, dict) else None, field, MAX_ID))
    if outcome == "accepted" and not accepted:
        raise FeedbackInvalid(f"{where}.acceptedSuggestions: required when the outcome is 'accepted'",
                              f"{where}.acceptedSuggestions")

    code = system = display = comment = None
    reason = item.get("overrideReason")
    if reason is not None:
        if not isinstance(reason, dict):
            raise FeedbackInvalid(f"{where}.overrideReason: must be an object", f"{where}.overrideReason")
        coding = reason.get("reason")
        if coding is not None:
            base = f"{where}.overrideReason.reason"
            if not isinstance(coding, dict):
                raise FeedbackInvalid(f"{base}: must be a Coding", base)
            code = _text(coding.get("code"), f"{base}.code", MAX_ID)
            system = _text(coding.get("system"), f"{base}.system", MAX_URI)
            display = _text(coding.get("display"), f"{base}.display", MAX_URI, required=False)
        comment = _text(reason.get("userComment"), f"{where}.overrideReason.userComment", MAX_COMMENT,
                        required=False)
    return FeedbackRecord(card=card, outcome=outcome, outcome_at=outcome_at, accepted_suggestions=tuple(accepted),
                          reason_code=code, reason_system=system, reason_display=display, comment=comment)


def parse_feedback(items, *, now: datetime | None = None) -> list[FeedbackRecord]:
    """The ``feedback`` array of a FeedbackRequest; raises FeedbackInvalid naming the field."""
    if not isinstance(items, list) or not items:
        raise FeedbackInvalid("$.feedback: must be a non-empty array", "$.feedback")
    if len(items) > MAX_ITEMS:
        raise FeedbackInvalid(f"$.feedback: at most {MAX_ITEMS} items per request", "$.feedback")
    return [parse_item(item, f"$.feedback[{i}]", now=now) for i, item in enumerate(items)]
