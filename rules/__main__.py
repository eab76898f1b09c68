"""``python -m rules --readme``: regenerate docs/rules.md's rule table from the catalogue (without: print it)."""
from rules.catalogue import main

main()
