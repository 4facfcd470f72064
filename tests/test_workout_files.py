from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fit_tool.fit_file_builder import FitFileBuilder
from fit_tool.profile.messages.file_id_message import FileIdMessage
from fit_tool.profile.messages.record_message import RecordMessage
from fit_tool.profile.messages.session_message import SessionMessage
from fit_tool.profile.profile_type import FileType, Manufacturer, Sport

from connectors import workout_files
from connectors.workout_files import MAX_FILE_BYTES, BadWorkoutFile, fingerprint, parse_workout_file
from engine.training.tracks import summarize

START = datetime(2024, 5, 1, 6, 30, tzinfo=UTC).timestamp()
METRES_PER_DEGREE_LAT = 111_195.0


@dataclass(frozen=True)
class Sample:
    t: float
    lat: float
    lon: float
    ele: float
    distance: float
    hr: int
    cadence: int
    power: int


def _run(points: int = 400, step_s: int = 3, speed: float = 10 / 3, start: float = START, lat0: float = 52.52):
    """A run heading north-east over a gentle hill, with the streams a watch records."""
    samples = []
    for i in range(points):
        metres = i * step_s * speed
        samples.append(
            Sample(
                t=start + i * step_s,
                lat=round(lat0 + metres * math.cos(math.pi / 4) / METRES_PER_DEGREE_LAT, 7),
                lon=round(
                    13.405 + metres * math.sin(math.pi / 4) / (METRES_PER_DEGREE_LAT * math.cos(math.radians(lat0))), 7
                ),
                ele=round(34.0 + 20.0 * math.sin(math.pi * i / points), 1),
                distance=metres,
                hr=130 + (i * 40) // points,
                cadence=84 + i % 7,
                power=230 + (i * 13) % 41,
            )
        )
    return samples


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _gpx(samples: list[Sample], name: str = "Morning Run", sport: str = "running", prolog: str = "") -> bytes:
    points = "\n".join(
        f'<trkpt lat="{s.lat}" lon="{s.lon}"><ele>{s.ele}</ele><time>{_iso(s.t)}</time>'
        "<extensions><gpxtpx:TrackPointExtension>"
        f"<gpxtpx:hr>{s.hr}</gpxtpx:hr><gpxtpx:cad>{s.cadence}</gpxtpx:cad>"
        f"</gpxtpx:TrackPointExtension><power>{s.power}</power></extensions></trkpt>"
        for s in samples
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}'
        '<gpx version="1.1" creator="Arena tests" xmlns="http://www.topografix.com/GPX/1/1"'
        ' xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n'
        f"<metadata><time>{_iso(samples[0].t if samples else START)}</time></metadata>\n"
        f"<trk><name>{name}</name><type>{sport}</type><trkseg>\n{points}\n</trkseg></trk>\n</gpx>\n"
    ).encode()


def _tcx(samples: list[Sample], sport: str = "Running", prolog: str = "", notes: str = "") -> bytes:
    points = "\n".join(
        f"<Trackpoint><Time>{_iso(s.t)}</Time>"
        f"<Position><LatitudeDegrees>{s.lat}</LatitudeDegrees><LongitudeDegrees>{s.lon}</LongitudeDegrees></Position>"
        f"<AltitudeMeters>{s.ele}</AltitudeMeters><DistanceMeters>{s.distance:.2f}</DistanceMeters>"
        f"<HeartRateBpm><Value>{s.hr}</Value></HeartRateBpm>"
        f"<Extensions><ns3:TPX><ns3:RunCadence>{s.cadence}</ns3:RunCadence><ns3:Watts>{s.power}</ns3:Watts></ns3:TPX>"
        "</Extensions></Trackpoint>"
        for s in samples
    )
    first, last = samples[0], samples[-1]
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}'
        '<TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"'
        ' xmlns:ns3="http://www.garmin.com/xmlschemas/ActivityExtension/v2">\n'
        f'<Activities><Activity Sport="{sport}"><Id>{_iso(first.t)}</Id>\n'
        f'<Lap StartTime="{_iso(first.t)}"><TotalTimeSeconds>{last.t - first.t}</TotalTimeSeconds>'
        f"<DistanceMeters>{last.distance:.1f}</DistanceMeters><Calories>312</Calories>"
        f"<Intensity>Active</Intensity><TriggerMethod>Manual</TriggerMethod>\n<Track>\n{points}\n</Track></Lap>"
        f"<Notes>{notes}</Notes></Activity></Activities>\n</TrainingCenterDatabase>\n"
    ).encode()


def _fit(samples: list[Sample], sport: Sport = Sport.RUNNING, calories: int = 312, session_only: bool = False) -> bytes:
    builder = FitFileBuilder(auto_define=True)
    file_id = FileIdMessage()
    file_id.type = FileType.ACTIVITY
    file_id.manufacturer = Manufacturer.DEVELOPMENT.value
    file_id.product = 1
    file_id.serial_number = 0x1234
    file_id.time_created = round(samples[0].t * 1000)
    builder.add(file_id)
    if not session_only:
        for s in samples:
            record = RecordMessage()
            record.timestamp = round(s.t * 1000)
            record.position_lat = s.lat
            record.position_long = s.lon
            record.altitude = s.ele
            record.distance = s.distance
            record.heart_rate = s.hr
            record.cadence = s.cadence
            record.power = s.power
            builder.add(record)
    session = SessionMessage()
    session.timestamp = round(samples[-1].t * 1000)
    session.start_time = round(samples[0].t * 1000)
    session.total_elapsed_time = samples[-1].t - samples[0].t
    session.total_distance = samples[-1].distance
    session.sport = sport
    session.total_calories = calories
    builder.add(session)
    return builder.build().to_bytes()


def _assert_streams(parsed, samples: list[Sample], *, power: bool = True) -> None:
    assert len(parsed.points) == len(samples)
    assert parsed.start == samples[0].t
    assert [p.t for p in parsed.points] == [s.t for s in samples]
    assert [p.hr for p in parsed.points] == [s.hr for s in samples]
    assert [p.cadence for p in parsed.points] == [s.cadence for s in samples]
    if power:
        assert [p.power for p in parsed.points] == [s.power for s in samples]
    assert parsed.points[0].lat == pytest.approx(samples[0].lat, abs=1e-6)
    assert parsed.points[-1].lon == pytest.approx(samples[-1].lon, abs=1e-6)
    assert parsed.points[200].ele == pytest.approx(samples[200].ele, abs=0.25)


def test_gpx_run_with_heart_rate_extensions_is_read():
    samples = _run()

    parsed = parse_workout_file(_gpx(samples), "morning.gpx")

    assert (parsed.format, parsed.sport, parsed.name, parsed.calories) == ("gpx", "run", "Morning Run", None)
    _assert_streams(parsed, samples)
    assert summarize(parsed.points).distance_m == pytest.approx(samples[-1].distance, rel=0.005)


def test_tcx_run_with_laps_and_extensions_is_read():
    samples = _run()

    parsed = parse_workout_file(_tcx(samples), "morning.tcx")

    assert (parsed.format, parsed.sport, parsed.calories) == ("tcx", "run", 312.0)
    _assert_streams(parsed, samples)
    assert parsed.points[10].distance == pytest.approx(samples[10].distance, abs=0.01)
    assert summarize(parsed.points).distance_m == pytest.approx(samples[-1].distance, abs=0.01)


def test_fit_run_is_read_with_semicircles_as_degrees():
    samples = _run()

    parsed = parse_workout_file(_fit(samples), "morning.fit")

    assert (parsed.format, parsed.sport, parsed.calories) == ("fit", "run", 312.0)
    _assert_streams(parsed, samples)
    assert summarize(parsed.points).distance_m == pytest.approx(samples[-1].distance, abs=0.01)


def test_format_comes_from_the_content_not_the_name():
    samples = _run(50)

    assert parse_workout_file(_fit(samples), "ride.gpx").format == "fit"
    assert parse_workout_file(_gpx(samples), "ride.fit").format == "gpx"
    assert parse_workout_file(_tcx(samples)).format == "tcx"


@pytest.mark.parametrize(
    ("raw", "sport"),
    [
        ("Biking", "ride"),
        ("cycling", "ride"),
        ("Trail Running", "run"),
        ("hiking", "hike"),
        ("Other", "other"),
        ("", None),
    ],
)
def test_sport_is_normalised_to_the_small_vocabulary(raw, sport):
    assert parse_workout_file(_tcx(_run(20), sport=raw)).sport == sport


def test_fit_sports_are_normalised():
    assert parse_workout_file(_fit(_run(20), sport=Sport.CYCLING)).sport == "ride"
    assert parse_workout_file(_fit(_run(20), sport=Sport.ROWING)).sport == "row"
    assert parse_workout_file(_fit(_run(20), sport=Sport.TRAINING)).sport == "other"


def test_fit_session_without_records_becomes_a_summary_track():
    samples = _run()

    parsed = parse_workout_file(_fit(samples, session_only=True))

    summary = summarize(parsed.points)
    assert parsed.start == samples[0].t
    assert summary.distance_m == pytest.approx(samples[-1].distance, abs=0.01)
    assert summary.elapsed_s == samples[-1].t - samples[0].t


def test_tcx_manual_entry_with_a_lap_and_no_track_points_is_kept():
    samples = _run()
    data = _tcx(samples).replace(b"<Track>", b"<!--").replace(b"</Track>", b"-->")

    summary = summarize(parse_workout_file(data).points)

    assert summary.distance_m == pytest.approx(samples[-1].distance, abs=0.1)
    assert summary.moving_s == samples[-1].t - samples[0].t


def test_same_file_twice_has_the_same_fingerprint_and_another_run_does_not():
    data = _gpx(_run())

    assert fingerprint(parse_workout_file(data)) == fingerprint(parse_workout_file(data))
    assert len(fingerprint(parse_workout_file(data))) == 64
    assert fingerprint(parse_workout_file(data)) != fingerprint(parse_workout_file(_gpx(_run(start=START + 86_400))))
    assert fingerprint(parse_workout_file(data)) != fingerprint(parse_workout_file(_gpx(_run(points=399))))


def test_the_same_activity_exported_to_each_format_has_one_fingerprint():
    samples = _run()

    prints = {fingerprint(parse_workout_file(export(samples))) for export in (_gpx, _tcx, _fit)}

    assert len(prints) == 1


# Hostile and broken input

BILLION_LAUGHS = """<!DOCTYPE gpx [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""


def _refusal(data: bytes, filename: str | None = None) -> str:
    with pytest.raises(BadWorkoutFile) as refused:
        parse_workout_file(data, filename)
    return str(refused.value)


def test_billion_laughs_gpx_is_refused():
    data = _gpx(_run(10), name="&lol9;", prolog=BILLION_LAUGHS)

    assert "entities" in _refusal(data, "laughs.gpx")


def test_external_entity_tcx_does_not_read_local_files():
    prolog = '<!DOCTYPE TrainingCenterDatabase [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    data = _tcx(_run(10), prolog=prolog, notes="&xxe;")

    message = _refusal(data, "xxe.tcx")

    assert "external entity" in message
    assert "root:" not in message


@pytest.mark.parametrize(
    "doctype",
    ["<!DOCTYPE gpx [<!ELEMENT gpx ANY>]>\n", '<!DOCTYPE gpx SYSTEM "http://127.0.0.1:9/gpx.dtd">\n'],
    ids=["internal", "external"],
)
def test_a_dtd_is_refused(doctype):
    assert "DTD" in _refusal(_gpx(_run(10), prolog=doctype))


def test_truncated_gpx_is_refused():
    data = _gpx(_run())

    assert "truncated" in _refusal(data[: len(data) // 2], "cut.gpx")


def test_truncated_fit_is_refused():
    data = _fit(_run())

    assert "truncated" in _refusal(data[: len(data) // 2], "cut.fit")


def test_fit_with_a_corrupted_crc_is_refused():
    data = bytearray(_fit(_run()))
    data[-1] ^= 0xFF

    assert "CRC" in _refusal(bytes(data))


def test_fit_with_a_corrupted_body_is_refused():
    data = bytearray(_fit(_run()))
    data[len(data) // 2] ^= 0x5A

    assert "FIT file" in _refusal(bytes(data))


def test_randomly_damaged_files_are_read_or_refused_never_crash():
    noise = random.Random(5)
    originals = [_fit(_run(60)), _gpx(_run(60)), _tcx(_run(60))]
    for _ in range(300):
        data = bytearray(noise.choice(originals))
        for _ in range(noise.randint(1, 4)):
            data[noise.randrange(len(data))] = noise.randrange(256)
        try:
            parse_workout_file(bytes(data[: noise.randint(1, len(data))]))
        except BadWorkoutFile as refused:
            assert str(refused)


@pytest.mark.parametrize(
    ("data", "word"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "PNG"),
        (b"PK\x03\x04" + bytes(200), "zip"),
        (random.Random(1).randbytes(4096), "not a GPX, TCX or FIT"),
        (b"", "empty"),
        (b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document/></kml>', "root <kml>"),
    ],
    ids=["png", "zip", "random", "empty", "kml"],
)
def test_files_of_the_wrong_kind_are_refused(data, word):
    assert word in _refusal(data, "upload.bin")


def test_oversized_xml_is_refused_before_parsing():
    point = _gpx(_run(1)).split(b"<trkseg>")[1].split(b"</trkseg>")[0]
    data = _gpx(_run(1)).replace(point, point * (26 * 1024 * 1024 // len(point)))

    assert len(data) > MAX_FILE_BYTES
    assert "limit" in _refusal(data, "huge.gpx")


def test_too_many_points_are_refused(monkeypatch):
    monkeypatch.setattr(workout_files, "MAX_POINTS", 100)

    assert "more than 100 track points" in _refusal(_gpx(_run(101)))
    assert "more than 100 track points" in _refusal(_fit(_run(101)))
    assert len(parse_workout_file(_tcx(_run(100))).points) == 100


def test_gpx_route_without_timestamps_is_refused():
    data = _gpx(_run(20)).replace(b"<time>", b"<!--").replace(b"</time>", b"-->")

    assert "timestamp" in _refusal(data, "route.gpx")


def test_a_track_point_inside_another_is_refused():
    data = _gpx(_run(5))
    first, end = data.index(b"<trkpt"), data.index(b"</trkpt>") + len(b"</trkpt>")
    nested = data[:first] + b'<trkpt lat="1" lon="1">' + data[first:end] + b"</trkpt>" + data[end:]

    assert "inside another track point" in _refusal(nested, "nested.gpx")


def test_gpx_without_track_points_is_refused():
    assert "no track points" in _refusal(_gpx([]), "empty.gpx")


@pytest.mark.parametrize(
    ("find", "replace", "word"),
    [
        (b'lat="52.52"', b'lat="north"', "latitude of 'north' is not a number"),
        (b'lat="52.52"', b'lat="152.52"', "not on Earth"),
        (b"<time>2024-05-01T06:30:03Z", b"<time>yesterday", "ISO 8601"),
        (b"<gpxtpx:hr>130<", b"<gpxtpx:hr>1e300<", "outside 0 to 65,535"),
    ],
)
def test_nonsense_values_in_a_point_are_refused(find, replace, word):
    data = _gpx(_run(20))
    assert find in data

    assert word in _refusal(data.replace(find, replace, 1))
