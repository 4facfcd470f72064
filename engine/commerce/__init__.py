"""The shop's pure rules: gear wear, the product feed, signatures and click ids, suggestions."""
