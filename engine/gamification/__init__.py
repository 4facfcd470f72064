"""Gamification's pure rules: points for effort, levels, badges (docs/gamification.md).

``intensity``: how hard a workout was, in METs, from heart rate, power or pace.
``points``: what a workout earns (moving time times intensity, weighted by source, capped per day),
and which workouts earn nothing because their figures are impossible.
``levels``: the curve from points to levels.
``badges``: badge rules as data, and the few measures that evaluate them.
"""
