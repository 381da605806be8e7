#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Validates JSON trigger events against schemas/trigger.schema.json.

    validate_trigger.py SCHEMA FILE...          exit 0 iff every FILE is valid
    validate_trigger.py --selftest SCHEMA DIR   ctest: trigger-valid*.json in
                                                DIR must pass and
                                                trigger-invalid-*.json fail

Uses Debian's python3-jsonschema (Draft 2020-12); run with /usr/bin/python3.
"""
import glob
import json
import os
import sys

try:
    from jsonschema import Draft202012Validator, FormatChecker
except ImportError:
    sys.exit("validate_trigger: python3-jsonschema is missing "
             "(scripts/install-deps.sh installs it)")


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def validator(schema_path):
    schema = load(schema_path)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def errors(v, path):
    try:
        doc = load(path)
    except (OSError, ValueError) as e:
        return ["not JSON: %s" % e]
    return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(root)",
                        e.message)
            for e in sorted(v.iter_errors(doc), key=lambda e: e.path)]


def selftest(v, fixtures):
    valid = sorted(glob.glob(os.path.join(fixtures, "trigger-valid*.json")))
    invalid = sorted(glob.glob(os.path.join(fixtures, "trigger-invalid-*.json")))
    if not valid or not invalid:
        print("no fixtures under %s" % fixtures)
        return 1
    failed = 0
    for p in valid:
        errs = errors(v, p)
        print("%s %s" % ("ok  " if not errs else "FAIL", os.path.basename(p)))
        for e in errs:
            print("     " + e)
        failed += bool(errs)
    for p in invalid:
        errs = errors(v, p)
        # Every reason is printed so a reader can see that the fixture fails
        # for the rule it was written to break, not by accident.
        print("%s %s %s" % ("ok  " if errs else "FAIL", os.path.basename(p),
                            "rejected" if errs else "ACCEPTED"))
        for e in errs:
            print("     " + e)
        failed += not errs
    print("%d valid, %d invalid fixtures, %d failures"
          % (len(valid), len(invalid), failed))
    return 1 if failed else 0


def main(argv):
    if len(argv) == 3 and argv[0] == "--selftest":
        return selftest(validator(argv[1]), argv[2])
    if len(argv) >= 2 and not argv[0].startswith("-"):
        v = validator(argv[0])
        bad = 0
        for p in argv[1:]:
            for e in errors(v, p):
                print("%s: %s" % (p, e))
                bad = 1
        return bad
    print(__doc__.strip())
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
