"""Writers for tables (CSV, Markdown, LaTeX) with provenance."""
