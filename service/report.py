"""``azathioprine-cds report``: feedback analytics (storage arrives with the feedback store)."""
from __future__ import annotations

import sys


def main(args) -> int:
    print("No feedback store is configured in this version: feedback is validated but not yet stored.",
          file=sys.stderr)
    return 1
