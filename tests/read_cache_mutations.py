#!/usr/bin/env python3
"""Removes each read-cache invalidation in turn and runs the read-cache tests: every removal must
make a test fail (issue 9). Usage: [SPLIT=1 RSVP_TEST_TOPOLOGY=split] python3 tests/read_cache_mutations.py [test filter] [names...]"""
import os, subprocess, sys, re
only = None
muts = [
 ('src/modules/events/cache.rs', '                self.attendees.invalidate(&id.into());\n', 'listener attendees'),
 ('src/modules/events/cache.rs', '                self.details.invalidate_all();\n                self.attendees.invalidate_all();\n            }\n            Change::Everything', 'listener user attendees'),
 ('src/modules/events/service.rs', '            if !domain::may_manage(cached.organizer, caller.id, caller.is_admin()) {\n                return Err(EventsError::NotOrganizer);\n            }\n', 'cached attendees authorization'),
 ('src/platform/nats.rs', '                                Ok(m) => changes.apply(m.change),\n', 'fan-out'),
 ('src/modules/events/service.rs', '        for (id, listed) in changed {\n            self.announce(id, listed);\n        }\n', 'cascade'),
 ('src/modules/events/service.rs', '        self.announce(event.id, true);\n', 'create'),
 ('src/modules/events/service.rs', '        self.announce(id, true);\n        let (names, _)', 'update'),
 ('src/modules/events/service.rs', '        if changed {\n            self.announce(id, true);\n        }\n', 'cancel'),
 ('src/modules/events/service.rs', '        self.announce(event_id, false);\n        Ok(registration)', 'register'),
 ('src/modules/events/service.rs', '        self.announce(event_id, false);\n        Ok(())', 'withdraw'),
 ('src/modules/users/service.rs', '        if renamed {\n            self.changes.announce(Change::User { id });\n        }\n', 'rename'),
 ('src/modules/users/service.rs', '        self.changes.announce(Change::User { id });\n        self.outbox_wakeup', 'delete'),
 ('src/modules/events/cache.rs', '                self.details.invalidate(&id.into());\n', 'listener details'),
 ('src/modules/events/cache.rs', '                if listed {\n                    self.lists.invalidate_all();\n                }\n', 'listener lists'),
 ('src/modules/events/cache.rs', '                self.names.invalidate(&id);\n', 'listener names'),
 ('src/modules/events/cache.rs', '                self.names.invalidate(&id);\n                self.details.invalidate_all();\n', 'listener user details'),
]
filt = sys.argv[1] if len(sys.argv)>1 else 'read_cache::sqlite'
for path, text, name in muts:
    if len(sys.argv) > 2 and name not in sys.argv[2:]: continue
    src = open(path).read()
    assert src.count(text) == 1, (name, src.count(text))
    keep = {'listener user attendees': '                self.details.invalidate_all();\n            }\n            Change::Everything', 'fan-out': '                                Ok(_) => {}\n', 'update': '        let (names, _)', 'register': '        Ok(registration)', 'withdraw': '        Ok(())',
            'delete': '        self.outbox_wakeup', 'listener user details': '                self.names.invalidate(&id);\n'}.get(name, '')
    mutated = src.replace(text, keep)
    open(path,'w').write(mutated)
    try:
        b = subprocess.run(['cargo','build','--tests'] + (['--features','split'] if 'SPLIT' in os.environ else []), capture_output=True, text=True)
        if b.returncode != 0:
            print(f"{name}: DOES NOT BUILD"); continue
        r = subprocess.run(['cargo','nextest','run','--no-fail-fast'] + (['--features','split'] if 'SPLIT' in os.environ else []) + [filt], capture_output=True, text=True)
        fails = sorted(set(re.findall(r'FAIL \[.*?\] \(.*?\) rsvp::api (\S+)', r.stdout+r.stderr)))
        print(f"{name}: {'CAUGHT by ' + ', '.join(fails) if fails else 'MISSED'}", flush=True)
    finally:
        open(path,'w').write(src)
