"""Challenges' pure rules (docs/challenges.md).

``goals``: what a workout contributes to a challenge and a participant's progress, in their own calendar.
``ranking``: the rank index a challenge of a million participants answers its boards from.
"""
