"""The designer's studio: previews, blocks and tests sent while templates are written."""
