"""Import of workout files (GPX, TCX, FIT) into track points, refusing hostile or broken input.

The format is read from the content, never trusted from the file name. XML goes through
defusedxml, so DTDs, entity expansion and external entities are refused before anything
is expanded or fetched, and its elements stream past a reader that keeps only the values
a workout needs: no tree is built, so a large file costs little more than its points.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree.ElementTree import ParseError

import fitdecode
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from engine import dates
from engine.training.tracks import TrackPoint

__all__ = ["MAX_FILE_BYTES", "MAX_POINTS", "BadWorkoutFile", "ParsedWorkout", "fingerprint", "parse_workout_file"]

MAX_FILE_BYTES = 25 * 1024 * 1024
# A day of 1 Hz recording is 86,400 points; more is a broken or hostile file.
MAX_POINTS = 200_000

_SPORTS = {
    "run": ("run", "running", "trail_running", "treadmill", "track_running", "virtual_run"),
    "ride": (
        "ride",
        "cycling",
        "biking",
        "bike",
        "road",
        "mountain",
        "mountain_biking",
        "gravel",
        "virtual_ride",
        "e_bike",
    ),
    "swim": ("swim", "swimming", "lap_swimming", "open_water"),
    "walk": ("walk", "walking"),
    "hike": ("hike", "hiking"),
    "row": ("row", "rowing", "indoor_rowing"),
}
_SPORT_OF = {alias: sport for sport, aliases in _SPORTS.items() for alias in aliases}
_SEMICIRCLE_DEGREES = 180.0 / 2**31
# Heart rate, cadence and power are 8- and 16-bit fields in every device format.
_MAX_SENSOR_VALUE = 65_535
_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive (upload the .gpx, .tcx or .fit file inside it)"),
    (b"\x1f\x8b", "gzip-compressed (decompress it first)"),
)


class BadWorkoutFile(ValueError):
    """The upload is not a workout file we can read; the message says why."""


@dataclass(frozen=True)
class ParsedWorkout:
    format: str
    sport: str | None
    start: float
    name: str | None
    calories: float | None
    points: tuple[TrackPoint, ...] = field(repr=False)


def parse_workout_file(data: bytes, filename: str | None = None) -> ParsedWorkout:
    what = f"{filename[:100]!r}" if filename else "the file"
    if len(data) == 0:
        raise BadWorkoutFile(f"{what} is empty")
    if len(data) > MAX_FILE_BYTES:
        raise BadWorkoutFile(f"{what} is {len(data):,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for workout files")
    if len(data) >= 12 and data[8:12] == b".FIT":
        return _parse_fit(data)
    if data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _parse_xml(data, what)
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            raise BadWorkoutFile(f"{what} is {kind}, not a GPX, TCX or FIT workout file")
    raise BadWorkoutFile(f"{what} is not a GPX, TCX or FIT workout file: its content matches none of them")


def fingerprint(parsed: ParsedWorkout) -> str:
    """Equal for the same activity however it was exported: start second, point count and
    the first and last points' time and position (to ~1 m, below any format's rounding)."""
    ends = [(round(p.t), _round(p.lat), _round(p.lon)) for p in (parsed.points[:1] + parsed.points[-1:])]
    key = json.dumps([round(parsed.start), len(parsed.points), ends])
    return hashlib.sha256(key.encode()).hexdigest()


def _round(degrees: float | None) -> float | None:
    return None if degrees is None else round(degrees, 5)


class _Track:
    """What a reader collects; ``finish`` turns it into a ParsedWorkout or says what is missing."""

    def __init__(self, format: str):
        self.format = format
        self.points: list[TrackPoint] = []
        self.sport: str | None = None
        self.name: str | None = None
        self.calories: float | None = None
        # (start, elapsed seconds, metres) of laps or sessions, for files without points.
        self.laps: list[tuple[float, float | None, float | None]] = []

    def add(self, point: TrackPoint) -> None:
        if len(self.points) >= MAX_POINTS:
            raise BadWorkoutFile(f"the {self.format.upper()} file has more than {MAX_POINTS:,} track points")
        self.points.append(point)

    def add_calories(self, calories: float | None) -> None:
        if calories is not None:
            self.calories = (self.calories or 0.0) + calories

    def finish(self) -> ParsedWorkout:
        points = sorted(self.points, key=lambda p: p.t) or self._points_from_laps()
        if not points:
            raise BadWorkoutFile(f"the {self.format.upper()} file has no track points and no lap or session summary")
        try:
            dates.recorded(points[0].t, "its first timestamp")
            dates.recorded(max(p.t for p in points), "its last timestamp")
        except ValueError as error:
            raise BadWorkoutFile(f"the {self.format.upper()} file is misdated: {error}") from None
        return ParsedWorkout(
            format=self.format,
            sport=_sport(self.sport),
            start=points[0].t,
            name=self.name,
            calories=self.calories,
            points=tuple(points),
        )

    def _points_from_laps(self) -> list[TrackPoint]:
        """A manual entry or a summary-only export still says when, how long and how far:
        a straight line from its start (0 m) to its end carries that into the summary."""
        points: list[TrackPoint] = []
        covered = 0.0
        for start, elapsed, metres in sorted(self.laps, key=lambda lap: lap[0]):
            points.append(TrackPoint(t=start, distance=None if metres is None else covered))
            if elapsed and elapsed > 0:
                covered += metres or 0.0
                points.append(TrackPoint(t=start + elapsed, distance=None if metres is None else covered))
        return points


def _sport(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    return _SPORT_OF.get(raw.strip().lower().replace(" ", "_").replace("-", "_"), "other")


# XML: GPX and TCX


class _SafeXMLParser(DefusedXMLParser):
    """Entities and external references are refused as they are declared; a DTD without
    them is refused once it closes, so each attack gets the message that names it."""

    def __init__(self, target: _XmlWorkout) -> None:
        super().__init__(target=target, forbid_dtd=False, forbid_entities=True, forbid_external=True)
        self.parser.EndDoctypeDeclHandler = self._refuse_dtd

    def _refuse_dtd(self) -> None:
        raise DTDForbidden(None, None, None)


def _parse_xml(data: bytes, what: str) -> ParsedWorkout:
    try:
        return _read_xml(data, what)
    except EntitiesForbidden as refused:
        if refused.sysid or refused.pubid:
            raise BadWorkoutFile(
                f"{what} declares an external entity ({refused.sysid or refused.pubid}); "
                "workout files never need one, so it is refused"
            ) from None
        raise BadWorkoutFile(
            f"{what} declares XML entities, which can expand without bound; workout files never need them"
        ) from None
    except ExternalReferenceForbidden as refused:
        raise BadWorkoutFile(f"{what} refers to an external resource ({refused.sysid}); it is refused") from None
    except DTDForbidden:
        raise BadWorkoutFile(f"{what} contains a DTD (<!DOCTYPE>); workout files never need one") from None
    except ParseError as error:
        line, column = error.position
        problem = str(error).split(":")[0]
        raise BadWorkoutFile(
            f"{what} is not well-formed XML ({problem} at line {line}, column {column}); is it truncated?"
        ) from None


def _read_xml(data: bytes, what: str) -> ParsedWorkout:
    target = _XmlWorkout(what)
    parser = _SafeXMLParser(target)
    parser.feed(data)
    parser.close()
    return target.finish()


# The element names (lower case, namespace dropped) that GPX, TCX and the device
# extensions inside them (Garmin, Strava, others) use for each value of a track point.
_XML_POINT_FIELDS = {
    "time": "t",
    "lat": "lat",
    "latitudedegrees": "lat",
    "lon": "lon",
    "longitudedegrees": "lon",
    "ele": "ele",
    "altitudemeters": "ele",
    "distancemeters": "distance",
    "hr": "hr",
    "heartrate": "hr",
    "value": "hr",  # TCX: <HeartRateBpm><Value>
    "cad": "cadence",
    "cadence": "cadence",
    "runcadence": "cadence",
    "power": "power",
    "powerinwatts": "power",
    "watts": "power",
}
# Root element → (format, the element that holds one track point).
_XML_ROOTS = {"gpx": ("gpx", "trkpt"), "TrainingCenterDatabase": ("tcx", "Trackpoint")}


class _XmlWorkout:
    """The XML parser's target: it sees each element's name, attributes and text as they
    stream past and keeps only what a workout needs, so no tree is ever built."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.track: _Track | None = None
        self._point_tag = ""
        self._path: list[str] = []
        self._text: list[str] = []
        self._point: dict[str, str] | None = None
        self._lap: dict[str, str] = {}

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        name = _local(tag)
        if self.track is None:
            if name not in _XML_ROOTS:
                raise BadWorkoutFile(f"{self.what} is XML with root <{name}>, not a GPX or TCX workout file")
            format, self._point_tag = _XML_ROOTS[name]
            self.track = _Track(format)
        self._path.append(name)
        self._text.clear()
        if name == self._point_tag:
            self._point = {key: attrib[key] for key in ("lat", "lon") if key in attrib}
        elif name == "Lap":
            self._lap = {"StartTime": attrib.get("StartTime", "")}
        elif name == "Activity" and self.opened.sport is None:
            self.opened.sport = attrib.get("Sport")

    @property
    def opened(self) -> _Track:
        """The track, which exists from the root element on (``start`` refuses any other root)."""
        assert self.track is not None, "an element ended or had text before the root started"
        return self.track

    def data(self, text: str) -> None:
        self._text.append(text)

    def end(self, tag: str) -> None:
        name = self._path.pop()
        parent = self._path[-1] if self._path else ""
        text = "".join(self._text).strip()
        self._text.clear()
        if name == self._point_tag:
            if self._point is None:  # <trkpt><trkpt/></trkpt>: the inner one ended the point
                raise BadWorkoutFile(f"{self.what} has a track point inside another track point")
            self.opened.add(_xml_point(self._point, self.opened.format))
            self._point = None
        elif self._point is not None:
            field = _XML_POINT_FIELDS.get(name.lower())
            if field is not None and text:
                self._point.setdefault(field, text)
        elif parent == "Lap" and text:
            self._lap[name] = text
        elif name == "Lap":
            self.opened.laps.append(
                (
                    _time(self._lap["StartTime"] or None, "TCX lap"),
                    _number(self._lap.get("TotalTimeSeconds"), "lap time"),
                    _number(self._lap.get("DistanceMeters"), "lap distance"),
                )
            )
            self.opened.add_calories(_number(self._lap.get("Calories"), "calorie count"))
        elif parent == "trk" and name == "name" and text:
            self.opened.name = self.opened.name or text
        elif parent == "trk" and name == "type" and text:
            self.opened.sport = self.opened.sport or text

    def finish(self) -> ParsedWorkout:
        return self.opened.finish()


def _xml_point(fields: dict[str, str], format: str) -> TrackPoint:
    return _point(
        _time(fields.get("t"), f"{format.upper()} track point"),
        _number(fields.get("lat"), "latitude"),
        _number(fields.get("lon"), "longitude"),
        ele=_number(fields.get("ele"), "elevation"),
        distance=_number(fields.get("distance"), "distance"),
        hr=_sensor(fields.get("hr"), "heart rate"),
        power=_sensor(fields.get("power"), "power"),
        cadence=_sensor(fields.get("cadence"), "cadence"),
    )


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _number(text: str | None, what: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadWorkoutFile(f"a {what} of {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise BadWorkoutFile(f"a {what} of {text[:40]!r} is not a finite number")
    return value


def _sensor(text: str | None, what: str) -> int | None:
    value = _number(text, what)
    if value is not None and not 0 <= value <= _MAX_SENSOR_VALUE:
        raise BadWorkoutFile(f"a {what} of {value:g} is outside 0 to {_MAX_SENSOR_VALUE:,}")
    return None if value is None else round(value)


def _time(text: str | None, where: str) -> float:
    if text is None:
        raise BadWorkoutFile(f"a {where} has no timestamp; a recorded workout needs one on every point")
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):  # OverflowError: year 1 east of UTC falls before year 1
        raise BadWorkoutFile(f"a {where} has the timestamp {text[:40]!r}, which is not an ISO 8601 time") from None


def _point(
    t: float,
    lat: float | None,
    lon: float | None,
    *,
    ele: float | None = None,
    distance: float | None = None,
    hr: int | None = None,
    power: int | None = None,
    cadence: int | None = None,
) -> TrackPoint:
    if lat is None or lon is None:
        if (lat is None) != (lon is None):
            raise BadWorkoutFile("a track point has a latitude without a longitude, or the other way round")
    elif not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise BadWorkoutFile(f"a track point is at latitude {lat}, longitude {lon}, which is not on Earth")
    return TrackPoint(t=t, lat=lat, lon=lon, ele=ele, distance=distance, hr=hr, power=power, cadence=cadence)


# FIT


def _parse_fit(data: bytes) -> ParsedWorkout:
    try:
        return _read_fit(data)
    except BadWorkoutFile:
        raise
    except fitdecode.FitCRCError:
        raise BadWorkoutFile("the FIT file is corrupt: its CRC checksum does not match its content") from None
    except fitdecode.FitEOFError:
        raise BadWorkoutFile("the FIT file ends early: it is truncated") from None
    except fitdecode.FitHeaderError as error:
        raise BadWorkoutFile(f"the FIT file has a broken header ({error})") from None
    except (fitdecode.FitError, struct.error, LookupError, ValueError, TypeError) as error:
        # A crafted file can trip the decoder anywhere; none of that may escape as a 500.
        raise BadWorkoutFile(f"the FIT file is corrupt and cannot be decoded ({type(error).__name__})") from None


def _read_fit(data: bytes) -> ParsedWorkout:
    track = _Track("fit")
    reader = fitdecode.FitReader(
        io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE, error_handling=fitdecode.ErrorHandling.RAISE
    )
    with reader:
        for frame in reader:
            if not isinstance(frame, fitdecode.FitDataMessage) or frame.name not in ("record", "session", "sport"):
                continue
            message = _FitMessage(frame)
            if message.name == "record":
                track.add(message.point())
            elif message.name == "session":
                start = message.time("start_time") or message.time("timestamp")
                if start is not None:
                    track.laps.append((start, message.number("total_elapsed_time"), message.number("total_distance")))
                track.add_calories(message.number("total_calories"))
            track.sport = track.sport or message.text("sport")
    return track.finish()


class _FitMessage:
    """One data message's fields by name, read once. A damaged definition message can give
    a field the wrong type (an array for a number, a count for a date): that is refused."""

    def __init__(self, frame: fitdecode.FitDataMessage) -> None:
        self.name = frame.name
        self._values = {field.name: field.value for field in reversed(frame.fields)}

    def point(self) -> TrackPoint:
        timestamp = self.time("timestamp")
        if timestamp is None:
            raise BadWorkoutFile("a FIT record has no timestamp; a recorded workout needs one on every point")
        lat, lon = self.number("position_lat"), self.number("position_long")
        if lat is None or lon is None:
            lat = lon = None
        ele = self.number("enhanced_altitude")
        return _point(
            timestamp,
            lat * _SEMICIRCLE_DEGREES if lat is not None else None,
            lon * _SEMICIRCLE_DEGREES if lon is not None else None,
            ele=ele if ele is not None else self.number("altitude"),
            distance=self.number("distance"),
            hr=self.integer("heart_rate"),
            power=self.integer("power"),
            cadence=self.integer("cadence"),
        )

    def number(self, field: str) -> float | None:
        value = self._values.get(field)
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)):
            return value
        raise BadWorkoutFile(f"the FIT file is corrupt: the {field} of a {self.name} message is not a number")

    def integer(self, field: str) -> int | None:
        value = self.number(field)
        return None if value is None else round(value)

    def time(self, field: str) -> float | None:
        value = self._values.get(field)
        if value is None or isinstance(value, datetime):
            return None if value is None else value.timestamp()
        raise BadWorkoutFile(f"the FIT file is corrupt: the {field} of a {self.name} message is not a date")

    def text(self, field: str) -> str | None:
        value = self._values.get(field)
        return None if value is None else str(value)
