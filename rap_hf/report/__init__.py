"""Selection reports: ``summary`` (the report as JSON and Markdown) and ``plots`` (its figures; matplotlib)."""
