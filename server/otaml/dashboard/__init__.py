"""The fleet dashboard: server-rendered pages (Jinja2) that update themselves with htmx."""
