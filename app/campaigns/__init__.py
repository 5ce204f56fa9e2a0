"""Campaign measurement: telling machine opens and clicks from people (machine.py), and
honest A/B figures from the counts (stats.py). Pure functions; the routes and the store
feed them."""
