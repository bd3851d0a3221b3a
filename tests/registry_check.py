#!/usr/bin/python3
"""registry_check.py SCHEMA REGISTRY [EVENT ...]

Validates every line of a registry file against the JSON Schema
(docs/registry.schema.json) and, when EVENT names are given, checks that the
event types appear in exactly that order. Prints one line per record; exit
status 1 on any invalid line or a different sequence.
"""
import json
import sys

import jsonschema


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    schema = json.load(open(sys.argv[1]))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    bad = 0
    types = []
    for n, line in enumerate(open(sys.argv[2]), 1):
        try:
            rec = json.loads(line)
        except ValueError as err:
            print(f"line {n}: not JSON: {err}")
            bad += 1
            continue
        errors = sorted(validator.iter_errors(rec), key=lambda e: list(e.path))
        for err in errors:
            where = "/".join(str(p) for p in err.path)
            print(f"line {n} ({rec.get('eventType')}): {where}: {err.message[:300]}")
        bad += bool(errors)
        types.append(rec.get("eventType"))
        model = rec.get("model") or {}
        print(f"line {n}: {rec.get('eventType')}"
              + (f" {model.get('name')}:{model.get('version')}" if model else "")
              + (" invalid" if errors else " valid"))
    want = sys.argv[3:]
    if want and types != want:
        print(f"event sequence {types}, expected {want}")
        bad += 1
    print(f"registry_check: {len(types)} records, {bad} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
