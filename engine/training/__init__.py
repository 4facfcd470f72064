"""Training maths: pure functions over recorded workouts.

``tracks``: a recorded track's distance, moving time, climb, splits and best efforts.
``analytics``: totals per week or month, personal records and streaks over workout summaries.
"""
