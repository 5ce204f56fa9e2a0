"""The designer's studio: the page, its live reload, previews with diagnostics, test sends."""
