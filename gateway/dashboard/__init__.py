"""The finance dashboard at /dashboard: server-rendered HTML and SVG, no script, nothing from a CDN."""
