"""Atom and RSS feeds of incidents, and SVG badges per component (status, and uptime over a period).

All XML is built with ElementTree, so incident text is escaped wherever it appears.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from email.utils import format_datetime

from ..timeutil import as_utc

ATOM = "http://www.w3.org/2005/Atom"
COLORS = {"operational": "#2e7d32", "degraded_performance": "#f9a825", "partial_outage": "#ef6c00",
          "major_outage": "#c62828", "under_maintenance": "#1565c0"}
UPTIME_COLORS = {"nodata": "#9e9e9e", "up": "#2e7d32", "minor": "#f9a825", "down": "#c62828"}
LABELS = {"operational": "operational", "degraded_performance": "degraded", "partial_outage": "partial outage",
          "major_outage": "major outage", "under_maintenance": "maintenance"}


def _text(incident: dict) -> str:
    return "\n\n".join(f"{u['status']} ({u['created_at']}): {u['body']}" for u in incident["incident_updates"])


def atom(page: dict, incidents: list[dict], base: str) -> bytes:
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"{base}/history"
    ET.SubElement(feed, f"{{{ATOM}}}title").text = f"{page['name']} status: incident history"
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = page["updated_at"]
    ET.SubElement(feed, f"{{{ATOM}}}link", href=f"{base}/history.atom", rel="self")
    ET.SubElement(feed, f"{{{ATOM}}}link", href=f"{base}/status", rel="alternate")
    for incident in incidents:
        entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
        ET.SubElement(entry, f"{{{ATOM}}}id").text = f"{base}/incidents/{incident['id']}"
        ET.SubElement(entry, f"{{{ATOM}}}title").text = incident["name"]
        ET.SubElement(entry, f"{{{ATOM}}}updated").text = incident["updated_at"]
        ET.SubElement(entry, f"{{{ATOM}}}published").text = incident["created_at"]
        ET.SubElement(entry, f"{{{ATOM}}}link", href=f"{base}/status", rel="alternate")
        ET.SubElement(entry, f"{{{ATOM}}}content", type="text").text = _text(incident)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def rss(page: dict, incidents: list[dict], base: str) -> bytes:
    root = ET.Element("rss", version="2.0")
    channel = ET.SubElement(root, "channel")
    ET.SubElement(channel, "title").text = f"{page['name']} status: incident history"
    ET.SubElement(channel, "link").text = f"{base}/status"
    ET.SubElement(channel, "description").text = f"Incidents affecting {page['name']}"
    for incident in incidents:
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = incident["name"]
        ET.SubElement(item, "guid", isPermaLink="false").text = f"{base}/incidents/{incident['id']}"
        ET.SubElement(item, "link").text = f"{base}/status"
        ET.SubElement(item, "pubDate").text = format_datetime(as_utc(datetime.fromisoformat(incident["created_at"])),
                                                              usegmt=True)
        ET.SubElement(item, "description").text = _text(incident)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def badge(label: str, message: str, color: str) -> bytes:
    """A flat badge: grey label, coloured message, widths from a rough glyph width."""
    left, right = 6 * len(label) + 12, 6 * len(message) + 12
    svg = ET.Element("svg", xmlns="http://www.w3.org/2000/svg", width=str(left + right), height="20",
                     role="img", **{"aria-label": f"{label}: {message}"})
    ET.SubElement(svg, "title").text = f"{label}: {message}"
    ET.SubElement(svg, "rect", width=str(left), height="20", fill="#555")
    ET.SubElement(svg, "rect", x=str(left), width=str(right), height="20", fill=color)
    group = ET.SubElement(svg, "g", fill="#fff", **{"font-family": "Verdana,DejaVu Sans,sans-serif",
                                                     "font-size": "11", "text-anchor": "middle"})
    ET.SubElement(group, "text", x=str(left // 2), y="14").text = label
    ET.SubElement(group, "text", x=str(left + right // 2), y="14").text = message
    return ET.tostring(svg, encoding="utf-8")

