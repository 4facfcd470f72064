"""Synthetic GPX runs for load tests and API tests (standard library only: locust imports it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["synthetic_gpx"]


def synthetic_gpx(points: int = 120, start: datetime | None = None, lat0: float = 48.85, lon0: float = 2.35) -> bytes:
    """A run heading north at about 5:00/km (33 m every 10 s), with elevation and heart rate."""
    start = start or datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    rows = []
    for i in range(points):
        at = (start + timedelta(seconds=10 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(
            f'<trkpt lat="{lat0 + i * 0.0003:.6f}" lon="{lon0:.6f}"><ele>{35 + (i % 7)}</ele><time>{at}</time>'
            f"<extensions><gpxtpx:TrackPointExtension><gpxtpx:hr>{140 + i % 20}</gpxtpx:hr>"
            f"</gpxtpx:TrackPointExtension></extensions></trkpt>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<gpx version="1.1" creator="Arena" xmlns="http://www.topografix.com/GPX/1/1"'
        ' xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">'
        f"<trk><name>Morning run</name><type>running</type><trkseg>{''.join(rows)}</trkseg></trk></gpx>"
    ).encode()
