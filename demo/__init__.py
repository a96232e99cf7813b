"""Demo tools around the product (STYLE.md layers: above ``web`` and ``campaigns``; the product
never imports this package). :mod:`demo.history` seeds a year of revisit work for the demo group.
"""
