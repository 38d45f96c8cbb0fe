"""Reads an iCalendar file (stdin) with a real calendar library (`icalendar`) and prints what a
calendar would import, as JSON: each event's fields, its start and end as UTC instants, and —
from the file's own VTIMEZONE, read as a time zone — the UTC offset it gives at the start.

    python3 tests/calendar/read.py < event.ics
"""

import json
import sys
from datetime import timezone

import icalendar


def main():
    calendar = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
    zones = {str(z["TZID"]): z.to_tz() for z in calendar.walk("VTIMEZONE")}
    events = []
    for event in calendar.walk("VEVENT"):
        start, end = event["DTSTART"], event["DTEND"]
        tzid = start.params.get("TZID")
        own = None
        if tzid:
            # The same wall time, read with the file's VTIMEZONE instead of the library's zone.
            wall = start.dt.replace(tzinfo=None)
            own = zones[tzid].utcoffset(wall).total_seconds() if tzid in zones else None
        events.append({
            "uid": str(event["UID"]),
            "sequence": int(event.get("SEQUENCE", 0)),
            "status": str(event.get("STATUS", "")),
            "summary": str(event.get("SUMMARY", "")),
            "location": str(event.get("LOCATION", "")),
            "description": str(event.get("DESCRIPTION", "")),
            "url": str(event.get("URL", "")),
            "tzid": tzid,
            "local_start": start.dt.strftime("%Y-%m-%dT%H:%M:%S"),
            "start": start.dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": end.dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "start_offset_by_library": start.dt.utcoffset().total_seconds(),
            "start_offset_by_file": own,
        })
    print(json.dumps({"name": str(calendar.get("X-WR-CALNAME", "")), "zones": sorted(zones), "events": events}))


if __name__ == "__main__":
    main()
