#!/usr/bin/python3
"""An independent SMS codec for cross-checks: Debian's python3-gammu.

Reads a JSON list of requests on stdin and prints a JSON list of answers:
  {"op": "encode", "text", "to", "smsc", "unicode", "layout": "Submit"|"Deliver",
   "time": "YYYY-MM-DD HH:MM:SS"}  -> {"pdus": [hex, ...]}
  {"op": "decode", "pdu": hex, "smsc": bool} -> {"type", "number", "text", "udh",
   "part", "parts", "mr", "status", "smsc_time", "time", "class"}
"""
import datetime
import json
import sys

import gammu


def encode(r):
    info = {
        "Class": -1,
        "Unicode": bool(r.get("unicode", False)),
        "Entries": [{"ID": "ConcatenatedTextLong", "Buffer": r["text"]}],
    }
    out = []
    for m in gammu.EncodeSMS(info):
        m["SMSC"] = {"Location": 0, "Number": r.get("smsc", "")}
        m["Number"] = r["to"]
        # EncodeSMS makes submits; the message type, not only the layout, sets TP-MTI.
        m["Type"] = r.get("layout", "Submit")
        if r.get("time"):
            t = datetime.datetime.strptime(r["time"], "%Y-%m-%d %H:%M:%S")
            m["DateTime"] = t
            m["SMSCDateTime"] = t
        out.append(gammu.EncodePDU(m, r.get("layout", "Submit")).hex().upper())
    return {"pdus": out}


def decode(r):
    d = gammu.DecodePDU(bytes.fromhex(r["pdu"]), SMSC=bool(r.get("smsc", True)))
    udh = d.get("UDH") or {}
    return {
        "type": d.get("PDU") or d.get("Type"),
        "number": d.get("Number"),
        "text": d.get("Text"),
        "udh": udh.get("Type"),
        "part": udh.get("PartNumber"),
        "parts": udh.get("AllParts"),
        "mr": d.get("MessageReference"),
        "status": d.get("DeliveryStatus"),
        "smsc_time": str(d.get("SMSCDateTime")),
        "time": str(d.get("DateTime")),
        "class": d.get("Class"),
    }


def main():
    answers = []
    for r in json.load(sys.stdin):
        try:
            answers.append(encode(r) if r["op"] == "encode" else decode(r))
        except Exception as e:  # report per request; the test decides
            answers.append({"error": repr(e)})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()
