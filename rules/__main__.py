"""``python -m rules --readme``: regenerate the README's rule table from the catalogue (without: print it)."""
from rules.catalogue import main

main()
